"""Smaller promises of the rating page: a skip reason by keyboard, undo of an answer that never
reached the server, and a layout that fits a tablet without sideways scrolling."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from tests.browser.conftest import log_in, png, screenshot, wait_until

pytestmark = pytest.mark.browser


def stored(db: Any, annotator_id: int) -> list[tuple[int, str, str | None]]:
    rows = db.execute(text("SELECT assignment_id, label, skip_reason FROM rating WHERE annotator_id = :u "
                           "ORDER BY id"), {"u": annotator_id}).all()
    db.rollback()
    return [tuple(r) for r in rows]


def shown(page: Any, previous: str | None = None, root: str = "#rate-app") -> str:
    page.wait_for_function(
        "([sel, prev]) => { const v = document.querySelector(sel).dataset.shown; return v && v !== prev; }",
        arg=[root, previous])
    return page.get_attribute(root, "data-shown")


def images(api: Any, n: int) -> None:
    ps = api.prompt_set("set", [f"{i + 2} white swans on a lake" for i in range(n)])
    for i in range(n):
        api.image(ps, f"{i + 2} white swans on a lake", png((250, 250, 250 - 20 * i), i + 2))


def test_skip_with_a_reason_chosen_by_keyboard(page, researcher_api, make_user, db):
    images(researcher_api, 2)
    annotator = make_user("annotator")
    log_in(page, "/annotate", annotator)
    first = shown(page)
    page.focus("#skip-reason")
    page.keyboard.press("ArrowDown")  # "Unsure"
    page.keyboard.press("Enter")  # in the reason list, Enter skips with that reason
    second = shown(page, first)
    assert page.input_value("#skip-reason") == ""  # the reason does not stick to the next image
    page.keyboard.press("0")  # a plain skip, no reason
    page.wait_for_selector("#empty", state="visible")
    assert wait_until(lambda: len(stored(db, annotator.id)) == 2)
    assert stored(db, annotator.id) == [(int(first), "skip", "unsure"), (int(second), "skip", None)]


def test_undo_takes_back_an_answer_the_server_never_got(page, researcher_api, make_user, db):
    images(researcher_api, 1)
    annotator = make_user("annotator")
    page.route("**/api/v1/ratings", lambda route: route.abort("internetdisconnected"))
    log_in(page, "/annotate", annotator)
    first = shown(page)
    page.keyboard.press("g")
    page.wait_for_selector("#pending:has-text('1 answer pending')")
    page.keyboard.press("Control+z")
    assert shown(page) == first
    page.wait_for_selector("#pending:text-is('All answers saved')")
    page.unroute("**/api/v1/ratings")
    page.keyboard.press("b")
    page.wait_for_selector("#empty", state="visible")
    assert wait_until(lambda: stored(db, annotator.id)) == [(int(first), "bad", None)]


def test_pages_fit_a_tablet(page, researcher_api, make_user):
    images(researcher_api, 1)
    evaluation = researcher_api.prompt_set("pairs", ["a black horse on a beach"], purpose="evaluation")
    a = researcher_api.image(evaluation, "a black horse on a beach", png((20, 20, 20)))
    b = researcher_api.image(evaluation, "a black horse on a beach", png((40, 30, 20), size=(256, 256)))
    researcher_api.comparison(a, b)
    page.set_viewport_size({"width": 820, "height": 1180})
    log_in(page, "/annotate", make_user("annotator"))
    for path, root, last_control in (("/annotate", "#rate-app", ".answer.good"),
                                     ("/compare", "#compare-app", "#submit-vote")):
        if path != "/annotate":
            page.goto(path)
        shown(page, root=root)
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), path
        box = page.locator(last_control).bounding_box()
        assert box["y"] + box["height"] <= 1180, f"{path}: {last_control} is below the fold"
        screenshot(page, f"tablet{path.replace('/', '-')}")
