"""Visiting a page does not hoard work (issue 13, item 3): a tab that goes away hands its leases back,
and a viewer who does not annotate (an admin looking at /compare) takes none until they start."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from tests.browser.conftest import log_in, png, wait_until

pytestmark = pytest.mark.browser


def _leases(db: Any, table: str) -> dict[str, int]:
    rows = db.execute(text(f"SELECT state, count(*) FROM {table} GROUP BY state")).all()
    db.rollback()
    return dict(rows)


def test_leaving_the_page_hands_its_unanswered_leases_back(page, researcher_api, make_user, db):
    training = researcher_api.prompt_set("training", ["two green dogs", "one red car", "three blue birds"])
    for i, prompt in enumerate(["two green dogs", "one red car", "three blue birds"]):
        researcher_api.image(training, prompt, png((30 + 60 * i, 140, 60), i + 1))
    log_in(page, "/annotate", make_user("annotator"))
    page.wait_for_function("() => document.querySelector('#rate-app').dataset.shown")
    wait_until(lambda: _leases(db, "rating_assignment").get("leased") == 3, what="three leases (prefetch)")
    page.keyboard.press("g")
    wait_until(lambda: _leases(db, "rating_assignment").get("submitted") == 1, what="the answer")

    page.goto("/")  # pagehide: the page sends the release
    wait_until(lambda: _leases(db, "rating_assignment") == {"submitted": 1, "released": 2},
               what="the two unanswered leases released")
    opens = db.execute(text("SELECT sum(ratings_open) FROM image")).scalar_one()
    db.rollback()
    assert opens == 2


def test_an_admin_opening_compare_takes_no_lease_until_they_start(page, researcher_api, make_user, db):
    evaluation = researcher_api.prompt_set("eval", ["a yellow cat"], purpose="evaluation")
    a = researcher_api.image(evaluation, "a yellow cat", png((230, 190, 20), 1))
    b = researcher_api.image(evaluation, "a yellow cat", png((200, 160, 40), 1))
    researcher_api.comparison(a, b)
    log_in(page, "/compare", make_user("admin"))
    page.wait_for_selector("#idle", state="visible")
    page.wait_for_timeout(1500)
    assert _leases(db, "comparison_assignment") == {}
    assert page.is_hidden("#loading") and page.is_hidden("#task")

    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#compare-app').dataset.shown")
    assert _leases(db, "comparison_assignment") == {"leased": 1}
    assert page.is_hidden("#idle")


def _visibility(page: Any, hidden: bool) -> None:
    page.evaluate("""(hidden) => {
        Object.defineProperty(document, 'hidden', {value: hidden, configurable: true});
        Object.defineProperty(document, 'visibilityState', {value: hidden ? 'hidden' : 'visible', configurable: true});
        document.dispatchEvent(new Event('visibilitychange'));
    }""", hidden)


def test_a_tab_out_of_view_for_two_minutes_hands_its_leases_back_and_takes_work_again_when_back(
        page, researcher_api, make_user, db):
    training = researcher_api.prompt_set("training", ["two green dogs", "one red car"])
    for i, prompt in enumerate(["two green dogs", "one red car"]):
        researcher_api.image(training, prompt, png((30 + 60 * i, 140, 60), i + 1))
    page.clock.install()
    log_in(page, "/annotate", make_user("annotator"))
    page.wait_for_function("() => document.querySelector('#rate-app').dataset.shown")
    wait_until(lambda: _leases(db, "rating_assignment").get("leased") == 2, what="two leases")

    _visibility(page, True)
    page.clock.fast_forward("01:00")
    assert _leases(db, "rating_assignment") == {"leased": 2}  # a minute away keeps them
    page.clock.fast_forward("01:05")
    wait_until(lambda: _leases(db, "rating_assignment") == {"released": 2}, what="the leases handed back")

    _visibility(page, False)
    page.wait_for_function("() => document.querySelector('#rate-app').dataset.shown")
    wait_until(lambda: _leases(db, "rating_assignment") == {"leased": 2}, what="leased again")
