"""A page shows the answer the server stored (issue 13, item 4): a second tab, or a page restored by
Back / Forward, must not offer an image that was answered meanwhile, nor contradict the stored answer."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from tests.browser.conftest import log_in, png, wait_until

pytestmark = pytest.mark.browser

PROMPTS = {"two green dogs in a city": ((30, 140, 60), 2), "one red car on a beach": ((200, 30, 30), 1),
           "three blue birds in a forest": ((40, 70, 200), 3)}


def shown(page: Any, previous: str | None = None) -> str:
    page.wait_for_function(
        "(prev) => { const v = document.querySelector('#rate-app').dataset.shown; return v && v !== prev; }",
        arg=previous)
    return page.get_attribute("#rate-app", "data-shown")


def _labels(db: Any, annotator_id: int) -> dict[int, str]:
    rows = db.execute(text("SELECT assignment_id, label FROM rating WHERE annotator_id = :u"),
                      {"u": annotator_id}).all()
    db.rollback()
    return dict(rows)


@pytest.fixture
def three_images(researcher_api) -> None:
    training = researcher_api.prompt_set("training", list(PROMPTS))
    for prompt, (color, count) in PROMPTS.items():
        researcher_api.image(training, prompt, png(color, count))


def test_second_tab_shows_the_stored_answer_instead_of_contradicting_it(page, three_images, make_user, db):
    annotator = make_user("annotator")
    log_in(page, "/annotate", annotator)
    first = shown(page)
    other = page.context.new_page()
    other.goto("/annotate")
    assert shown(other) == first  # our live leases come back first: both tabs show the same image

    page.keyboard.press("g")
    wait_until(lambda: _labels(db, annotator.id).get(int(first)) == "good", what="the first tab's answer")

    # the second tab still shows it; a key press there must not end in "already answered" with
    # "Last: Bad" beside it: the page says what is stored, and moves on
    other.keyboard.press("b")
    other.wait_for_function("() => document.getElementById('last-answer').textContent.startsWith('Last: Good')")
    message = other.text_content("#message-text")
    assert "Good" in message and "stands" in message
    assert "'good'" not in message
    assert other.get_attribute("#rate-app", "data-shown") != first
    assert _labels(db, annotator.id) == {int(first): "good"}
    other.close()


def test_page_restored_by_back_forward_drops_what_another_tab_answered(page, three_images, make_user, db):
    annotator = make_user("annotator")
    log_in(page, "/annotate", annotator)
    first = shown(page)
    other = page.context.new_page()
    other.goto("/annotate")
    assert shown(other) == first
    other.keyboard.press("g")
    wait_until(lambda: _labels(db, annotator.id).get(int(first)) == "good", what="the other tab's answer")
    other.close()

    # what the browser does on Back / Forward from its cache: the frozen page shows again
    page.evaluate("() => window.dispatchEvent(new PageTransitionEvent('pageshow', {persisted: true}))")
    second = shown(page, first)
    assert second != first
    page.keyboard.press("b")
    wait_until(lambda: _labels(db, annotator.id) == {int(first): "good", int(second): "bad"}, what="both answers")
    assert page.is_hidden("#message") or "already" not in page.text_content("#message-text")
