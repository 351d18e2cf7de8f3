"""The annotator's day in a real browser: log in, rate by keyboard, undo, compare a pair; then the
database must hold exactly what was answered."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from tests.browser.conftest import log_in, png, screenshot, wait_until

pytestmark = pytest.mark.browser

PROMPTS = {
    "two green dogs in a city": ((30, 140, 60), 2),
    "one red car on a beach": ((200, 30, 30), 1),
    "three blue birds in a forest": ((40, 70, 200), 3),
}


def ratings(db: Any, annotator_id: int) -> dict[int, dict[str, Any]]:
    rows = db.execute(text(
        "SELECT r.assignment_id, r.label, r.duration_ms, p.text AS prompt FROM rating r "
        "JOIN image i ON i.id = r.image_id JOIN prompt p ON p.id = i.prompt_id WHERE r.annotator_id = :u"
    ), {"u": annotator_id}).mappings().all()
    db.rollback()  # end the snapshot so the next poll sees new commits
    return {r["assignment_id"]: dict(r) for r in rows}


def ratings_if(db: Any, annotator_id: int, n: int) -> dict[int, dict[str, Any]] | None:
    found = ratings(db, annotator_id)
    return found if len(found) == n else None


def shown(page: Any, root: str, previous: str | None = None) -> str:
    """The assignment id whose image(s) are on screen and answerable, once it differs from `previous`."""
    page.wait_for_function(
        "([sel, prev]) => { const v = document.querySelector(sel).dataset.shown; return v && v !== prev; }",
        arg=[root, previous])
    return page.get_attribute(root, "data-shown")


def marks(page: Any) -> list[tuple[str, str]]:
    pairs = page.eval_on_selector_all("#prompt mark", "ms => ms.map(m => [m.className, m.textContent])")
    return [tuple(p) for p in pairs]


def test_rate_three_undo_one_and_compare_a_pair_by_keyboard(page, researcher_api, make_user, db):
    api = researcher_api
    training = api.prompt_set("training prompts", list(PROMPTS))
    for prompt, (color, count) in PROMPTS.items():
        api.image(training, prompt, png(color, count))
    evaluation = api.prompt_set("evaluation prompts", ["a yellow cat"], purpose="evaluation")
    image_a = api.image(evaluation, "a yellow cat", png((230, 190, 20), 1))
    image_b = api.image(evaluation, "a yellow cat", png((200, 160, 40), 1, size=(270, 360)))
    api.comparison(image_a, image_b)
    annotator = make_user("annotator")

    log_in(page, "/annotate", annotator)

    # three answers by keyboard alone: G, ← (bad), → (good)
    answered: list[tuple[int, str, str]] = []
    current = None
    for key, label in (("g", "good"), ("ArrowLeft", "bad"), ("ArrowRight", "good")):
        current = shown(page, "#rate-app", current)
        prompt = page.text_content("#prompt")
        if prompt == "two green dogs in a city":
            assert marks(page) == [("hl hl-count", "two"), ("hl hl-color", "green"), ("hl hl-object", "dogs"),
                                   ("hl hl-background", "city")]
        if not answered:
            screenshot(page, "annotate-task")
        answered.append((int(current), label, prompt))
        page.keyboard.press(key)
    assert sorted(p for _, _, p in answered) == sorted(PROMPTS)

    page.wait_for_selector("#empty", state="visible")
    wait_until(lambda: len(ratings(db, annotator.id)) == 3, what="three stored ratings")
    page.wait_for_function("() => document.getElementById('pending').textContent === 'All answers saved'")

    # undo the last answer: it is deleted on the server and its image comes back to the front
    third_id, _, third_prompt = answered[-1]
    page.keyboard.press("u")
    assert shown(page, "#rate-app") == str(third_id)
    assert page.text_content("#prompt") == third_prompt
    stored = wait_until(lambda: ratings_if(db, annotator.id, 2), what="the undo")
    assert third_id not in stored
    state = db.execute(text("SELECT state FROM rating_assignment WHERE id = :a"), {"a": third_id}).scalar()
    db.rollback()
    assert state == "leased"

    # answer it again, differently (the server would refuse that if the undo had not removed the first)
    page.keyboard.press("2")
    page.wait_for_selector("#empty", state="visible")
    stored = wait_until(lambda: ratings_if(db, annotator.id, 3), what="re-answer")
    assert {a: r["label"] for a, r in stored.items()} == {
        answered[0][0]: "good", answered[1][0]: "bad", third_id: "bad"}
    assert all(r["duration_ms"] is not None and r["duration_ms"] >= 0 for r in stored.values())
    page.wait_for_function("() => document.getElementById('today-count').textContent === '3'")
    screenshot(page, "annotate-done")

    # one pair: alignment left (A), fidelity right (L), Enter
    page.goto("/compare")
    assignment = int(shown(page, "#compare-app"))
    left_box, right_box = (page.locator(".pair-box").nth(i).bounding_box() for i in (0, 1))
    assert (left_box["width"], left_box["height"]) == (right_box["width"], right_box["height"])
    assert page.text_content("#prompt") == "a yellow cat"
    left_src = page.get_attribute("#left-image", "src")
    screenshot(page, "compare-task")
    page.keyboard.press("a")
    page.keyboard.press("l")
    assert page.is_checked("#alignment-left") and page.is_checked("#fidelity-right")
    page.keyboard.press("Enter")
    page.wait_for_selector("#empty", state="visible")

    def vote() -> Any:
        row = db.execute(text(
            "SELECT v.alignment, v.fidelity, v.duration_ms, a.left_is_a, c.image_a_id, c.image_b_id "
            "FROM comparison_vote v JOIN comparison_assignment a ON a.id = v.assignment_id "
            "JOIN comparison c ON c.id = v.comparison_id WHERE v.assignment_id = :a"), {"a": assignment}
        ).mappings().first()
        db.rollback()
        return row

    row = wait_until(vote, what="the stored vote")
    # the page showed the task's left side, which the server resolves by the recorded left_is_a
    # (tests/annotation/test_comparisons.py); no image id reaches the page
    assert left_src == f"/api/v1/comparison-tasks/{assignment}/images/left"
    assert (row["alignment"], row["fidelity"]) == (("a", "b") if row["left_is_a"] else ("b", "a"))
    assert row["duration_ms"] is not None
    assert db.execute(text("SELECT count(*) FROM comparison_vote")).scalar_one() == 1
    db.rollback()
    page.wait_for_function("() => document.getElementById('today-count').textContent === '1'")
    screenshot(page, "compare-done")
