"""Compare has undo like /annotate (issue 13, item 7): U withdraws the last vote, the same pair comes
back with the same sides, and the vote given again is the one stored."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from tests.browser.conftest import log_in, png, wait_until

pytestmark = pytest.mark.browser


def _votes(db: Any) -> list[tuple[int, str, str, bool]]:
    rows = db.execute(text("SELECT v.assignment_id, v.alignment, v.fidelity, a.left_is_a FROM comparison_vote v "
                           "JOIN comparison_assignment a ON a.id = v.assignment_id")).all()
    db.rollback()
    return [tuple(r) for r in rows]


def test_undo_the_last_vote_and_vote_again(page, researcher_api, make_user, db):
    evaluation = researcher_api.prompt_set("eval", ["a yellow cat"], purpose="evaluation")
    a = researcher_api.image(evaluation, "a yellow cat", png((230, 190, 20), 1))
    b = researcher_api.image(evaluation, "a yellow cat", png((200, 160, 40), 1))
    researcher_api.comparison(a, b)
    log_in(page, "/compare", make_user("annotator"))
    page.wait_for_function("() => document.querySelector('#compare-app').dataset.shown")
    assignment = page.get_attribute("#compare-app", "data-shown")
    left_src = page.get_attribute("#left-image", "src")
    for key in ("a", "l", "Enter"):
        page.keyboard.press(key)
    page.wait_for_selector("#empty", state="visible")
    wait_until(lambda: len(_votes(db)) == 1, what="the vote")

    page.keyboard.press("u")
    page.wait_for_function("(a) => document.querySelector('#compare-app').dataset.shown === a", arg=assignment)
    assert page.get_attribute("#left-image", "src") == left_src
    assert "undone" in page.text_content("#message-text")
    wait_until(lambda: _votes(db) == [], what="the vote withdrawn")

    for key in ("d", "k", "Enter"):
        page.keyboard.press(key)
    page.wait_for_selector("#empty", state="visible")
    row = wait_until(lambda: _votes(db) or None, what="the new vote")
    ((aid, alignment, fidelity, left_is_a),) = row
    assert aid == int(assignment)
    assert (alignment, fidelity) == ("a" if not left_is_a else "b", "tie")
