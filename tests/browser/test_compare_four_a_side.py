"""The rater's page for a query of the paper's shape: 4 images of each model, side by side, blind."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app.db.models import ComparisonImage
from tests.browser.conftest import log_in, png, screenshot, wait_until

pytestmark = pytest.mark.browser


def test_a_four_against_four_query_shows_every_image_and_takes_a_vote(page, researcher_api, make_user, db):
    api = researcher_api
    ev = api.prompt_set("evaluation prompts", ["two red cars"], purpose="evaluation")
    side_a = [api.image(ev, "two red cars", png((200, 30 + 10 * i, 30), 2)) for i in range(4)]
    side_b = [api.image(ev, "two red cars", png((30, 30 + 10 * i, 200), 1 + i % 2)) for i in range(4)]
    comp = api.comparison(side_a[0], side_b[0])
    db.add_all([ComparisonImage(comparison_id=comp["id"], side=s, position=i, image_id=image)
                for s, images in (("a", side_a), ("b", side_b)) for i, image in enumerate(images)])
    db.commit()
    annotator = make_user("annotator")

    log_in(page, "/compare", annotator)
    page.wait_for_function("() => document.getElementById('compare-app').dataset.shown")
    assignment = int(page.get_attribute("#compare-app", "data-shown"))
    for side in ("left", "right"):
        srcs = page.eval_on_selector_all(f"#{side}-images img", "imgs => imgs.map(i => i.getAttribute('src'))")
        base = f"/api/v1/comparison-tasks/{assignment}/images/{side}"
        assert srcs == [base, f"{base}/1", f"{base}/2", f"{base}/3"]
        assert page.eval_on_selector_all(f"#{side}-images img", "imgs => imgs.every(i => i.naturalWidth > 0)")
    boxes = [page.locator(".pair-box").nth(i).bounding_box() for i in (0, 1)]
    assert (boxes[0]["width"], boxes[0]["height"]) == (boxes[1]["width"], boxes[1]["height"])
    # the four images of a side share its box in a 2 x 2 grid, none spilling out of it
    cells = [page.locator("#left-images img").nth(i).bounding_box() for i in range(4)]
    assert len({round(c["x"]) for c in cells}) == 2 and len({round(c["y"]) for c in cells}) == 2
    assert all(c["y"] + c["height"] <= boxes[0]["y"] + boxes[0]["height"] + 1 for c in cells)
    screenshot(page, "compare-four-a-side")

    page.keyboard.press("d")
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    page.wait_for_selector("#empty", state="visible")

    def stored():
        row = db.execute(text("SELECT v.alignment, v.fidelity, a.left_is_a FROM comparison_vote v "
                              "JOIN comparison_assignment a ON a.id = v.assignment_id")).mappings().first()
        db.rollback()
        return row

    row = wait_until(stored, what="the vote")
    assert (row["alignment"], row["fidelity"]) == (("b", "a") if row["left_is_a"] else ("a", "b"))
