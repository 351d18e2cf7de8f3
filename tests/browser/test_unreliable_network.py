"""Answers survive a bad network: retried with the same assignment id, shown as pending, kept across a
reload, and stored exactly once. Refusals from the server are shown in its own words."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from tests.browser.conftest import log_in, png, wait_until

pytestmark = pytest.mark.browser

PENDING = "#pending"


def labels(db: Any, annotator_id: int) -> list[tuple[int, str]]:
    rows = db.execute(text("SELECT assignment_id, label FROM rating WHERE annotator_id = :u ORDER BY id"),
                      {"u": annotator_id}).all()
    db.rollback()
    return [tuple(r) for r in rows]


def shown(page: Any, previous: str | None = None) -> str:
    page.wait_for_function(
        "(prev) => { const v = document.getElementById('rate-app').dataset.shown; return v && v !== prev; }",
        arg=previous)
    return page.get_attribute("#rate-app", "data-shown")


def setup_images(researcher_api: Any, n: int) -> None:
    ps = researcher_api.prompt_set("set", [f"{i + 1} red apples on a table" for i in range(n)])
    for i in range(n):
        researcher_api.image(ps, f"{i + 1} red apples on a table", png((190, 20 + 30 * i, 30), i + 1))


def test_a_lost_response_is_retried_shown_as_pending_and_stored_once(page, researcher_api, make_user, db):
    setup_images(researcher_api, 2)
    annotator = make_user("annotator")
    posts: list[str] = []

    def lose_first_response(route: Any) -> None:
        posts.append(route.request.post_data)
        if len(posts) == 1:
            route.fetch()  # the server stores the answer ...
            route.abort("connectionreset")  # ... and the reply never reaches the page
        else:
            route.continue_()

    page.route("**/api/v1/ratings", lose_first_response)
    log_in(page, "/annotate", annotator)
    first = shown(page)
    page.keyboard.press("g")
    page.wait_for_selector("#pending:has-text('1 answer pending')")
    # the user keeps rating while the first answer waits for its retry
    second = shown(page, first)
    assert second != first
    page.keyboard.press("b")
    page.wait_for_selector("#pending:text-is('All answers saved')")
    assert wait_until(lambda: len(labels(db, annotator.id)) == 2)
    assert labels(db, annotator.id) == [(int(first), "good"), (int(second), "bad")]
    assert posts.count(posts[0]) == 2  # the same body, same assignment id, sent twice
    assert page.evaluate("() => Object.keys(localStorage).filter(k => k.startsWith('t2if.outbox'))") == []


def test_answers_wait_in_local_storage_across_a_reload(page, researcher_api, make_user, db):
    setup_images(researcher_api, 2)
    annotator = make_user("annotator")
    page.route("**/api/v1/ratings", lambda route: route.abort("internetdisconnected"))
    log_in(page, "/annotate", annotator)
    first = shown(page)
    page.keyboard.press("ArrowRight")
    page.wait_for_selector("#pending:has-text('1 answer pending')")
    stored = page.evaluate(f"() => localStorage.getItem('t2if.outbox.ratings.{annotator.id}')")
    assert f'"assignment_id":{first}' in stored
    assert labels(db, annotator.id) == []

    page.unroute("**/api/v1/ratings")
    page.reload()
    # the kept answer is sent on load, and its image is not offered again
    assert shown(page) != first
    assert wait_until(lambda: labels(db, annotator.id)) == [(int(first), "good")]
    page.wait_for_selector("#pending:text-is('All answers saved')")


def test_refusals_are_shown_and_a_lost_session_offers_a_log_in(page, researcher_api, make_user, db):
    setup_images(researcher_api, 3)
    annotator = make_user("annotator")
    message = "Your time on this item ran out and it was handed to another annotator."
    replies = iter([
        (409, {"error": {"code": "lease_lost", "message": message}}),
        (401, {"error": {"code": "not_authenticated", "message": "Log in or send a valid bearer token."}}),
    ])

    def refuse(route: Any) -> None:
        status, body = next(replies)
        route.fulfill(status=status, json=body)

    page.route("**/api/v1/ratings", refuse)
    log_in(page, "/annotate", annotator)
    first = shown(page)
    page.keyboard.press("g")
    page.wait_for_selector("#message-text:has-text('ran out')")
    assert page.text_content("#message-text") == message
    second = shown(page, first)  # moved on; the refused answer is not retried
    page.keyboard.press("b")
    page.wait_for_selector("#login-link", state="visible")
    assert page.get_attribute("#login-link", "href") == "/login?next=%2Fannotate"
    assert "kept on this device" in page.text_content(PENDING)
    assert labels(db, annotator.id) == []
    assert second != first


def test_compare_retries_a_failed_vote_and_a_failed_next(page, researcher_api, make_user, db):
    evaluation = researcher_api.prompt_set("pairs", ["two white swans on a lake"], purpose="evaluation")
    a = researcher_api.image(evaluation, "two white swans on a lake", png((250, 250, 250), 2))
    b = researcher_api.image(evaluation, "two white swans on a lake", png((240, 240, 250), 2))
    researcher_api.comparison(a, b)
    annotator = make_user("annotator")
    failures = {"next": 1, "vote": 1}

    def fail_once(kind: str, status: int):
        def handler(route: Any) -> None:
            if failures[kind]:
                failures[kind] -= 1
                route.fulfill(status=status, json={"error": {"code": "unavailable", "message": "Down."}})
            else:
                route.continue_()
        return handler

    page.route("**/api/v1/comparison-tasks/next*", fail_once("next", 503))
    page.route("**/api/v1/comparison-votes", fail_once("vote", 502))
    log_in(page, "/compare", annotator)
    page.wait_for_selector("#message-text:has-text('Could not load pairs')")
    page.wait_for_selector("#compare-app[data-shown]")  # the retry of `next` brought the pair
    page.wait_for_selector("#message", state="hidden")
    page.keyboard.press("3")
    page.keyboard.press("8")
    page.keyboard.press("Enter")
    page.wait_for_selector("#pending:has-text('1 answer pending')")
    page.wait_for_selector("#pending:text-is('All answers saved')")
    rows = db.execute(text("SELECT v.alignment, v.fidelity, a.left_is_a FROM comparison_vote v "
                           "JOIN comparison_assignment a ON a.id = v.assignment_id")).all()
    db.rollback()
    assert len(rows) == 1
    alignment, fidelity, left_is_a = rows[0]
    assert (alignment, fidelity) == ("b" if left_is_a else "a", "tie")  # right side, tie
