"""Pages with nothing to show say what is true and pick up work by themselves (issue 13, item 2):
images still being generated, items held by other annotators, or nothing left at all."""

from __future__ import annotations

import httpx
import pytest

from app.db.models import Job
from tests.browser.conftest import log_in, png

pytestmark = pytest.mark.browser

PROMPTS = ["two green dogs in a city", "one red car on a beach", "three blue birds in a forest"]


def _generating(db, prompt_set_id: int, per_prompt: int) -> Job:
    job = Job(kind="generate", state="running", params={"prompt_set_id": prompt_set_id,
                                                        "images_per_prompt": per_prompt},
              prompt_set_id=prompt_set_id, scope_key=f"generate:{prompt_set_id}", progress=0)
    db.add(job)
    db.commit()
    return job


def test_annotate_before_images_exist_says_they_are_generated_and_shows_the_first_by_itself(
        page, researcher_api, make_user, db):
    training = researcher_api.prompt_set("training", PROMPTS)
    job = _generating(db, training, per_prompt=4)
    annotator = make_user("annotator")

    log_in(page, "/annotate", annotator)
    page.wait_for_selector("#empty", state="visible")
    page.wait_for_function("() => document.getElementById('empty-title').textContent"
                           " === '12 images are being generated'")
    assert "Nothing left" not in page.text_content("#empty")

    # the first image arrives; nobody presses anything and it is on screen within seconds
    researcher_api.image(training, PROMPTS[0], png((30, 140, 60), 2))
    page.wait_for_function("() => document.querySelector('#rate-app').dataset.shown", timeout=8_000)
    assert page.is_visible("#task") and not page.is_visible("#empty")

    # answered, and the job is over: then (and only then) nothing is left
    job.state = "succeeded"
    db.commit()
    page.keyboard.press("g")
    page.wait_for_function("() => document.getElementById('empty-title').textContent === 'Nothing left to rate'")


def test_items_leased_to_others_are_named_and_taken_over_when_freed(page, researcher_api, make_user, live_server):
    training = researcher_api.prompt_set("training", PROMPTS[:2])
    for prompt in PROMPTS[:2]:
        researcher_api.image(training, prompt, png((200, 30, 30), 1))
    other = make_user("annotator")
    with httpx.Client(base_url=live_server, headers={"Authorization": f"Bearer {other.token}"}) as c:
        held = c.get("/api/v1/rating-tasks/next?prefetch=2").json()
        tasks = [held, *held["prefetched"]]
        assert len(tasks) == 2
        annotator = make_user("annotator")
        log_in(page, "/annotate", annotator)
        page.wait_for_function("() => document.getElementById('empty-title').textContent"
                               " === '2 images are held by other annotators, back within 10 min if not answered'")

        # the other annotator skips one: its slot is free again and this page takes it by itself
        r = c.post("/api/v1/ratings", json={"assignment_id": tasks[0]["assignment_id"], "label": "skip"})
        assert r.status_code == 201, r.text
    page.wait_for_function("() => document.querySelector('#rate-app').dataset.shown", timeout=10_000)


def test_compare_while_an_evaluation_is_generated_says_so(page, researcher_api, make_user, db):
    evaluation = researcher_api.prompt_set("eval", ["a yellow cat"], purpose="evaluation")
    db.add(Job(kind="evaluate", state="running", params={"prompt_set_id": evaluation},
               prompt_set_id=evaluation, scope_key="evaluate:1", progress=10))
    db.commit()
    log_in(page, "/compare", make_user("annotator"))
    page.wait_for_function("() => document.getElementById('empty-title').textContent"
                           " === 'An evaluation’s pairs are being generated'")
    a = researcher_api.image(evaluation, "a yellow cat", png((230, 190, 20), 1))
    b = researcher_api.image(evaluation, "a yellow cat", png((200, 160, 40), 1))
    researcher_api.comparison(a, b)
    page.wait_for_function("() => document.querySelector('#compare-app').dataset.shown", timeout=8_000)
