"""Rater weighting through the service: annotators label over REST (three per image, one of them
answering against the truth every time), a real Celery worker trains the reward with
`rater_weighting`, and the stored reward version knows who is reliable; the admin page shows it.
The same job ranks the set for labelling (`label_order`), and a later one puts it back."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.db.models import Image, ModelVersion, RewardScore
from tests.conftest import bearer
from tests.jobs.conftest import wait_job

pytestmark = pytest.mark.slow


def test_reward_training_estimates_each_raters_reliability(loop_client, researcher, make_user, start_worker, db):
    c, h = loop_client, bearer(researcher)
    start_worker()
    ps = c.post("/api/v1/prompt-sets", headers=h, json={
        "name": "crowd", "template": {"size": 12, "seed": 5}, "labels_per_image": 3}).json()
    gen = c.post("/api/v1/jobs", headers=h, json={"kind": "generate", "params": {
        "prompt_set_id": ps["id"], "images_per_prompt": 2, "sampler": {"steps": 2, "batch_size": 8}}})
    assert wait_job(c, researcher, gen.json()["id"])["state"] == "succeeded"

    honest = [make_user("annotator") for _ in range(3)]
    liar = make_user("annotator")
    crowd = [*honest, liar]
    truth = lambda image_id: image_id % 2 == 0  # noqa: E731 - the world these raters see
    busy = True
    while busy:  # round-robin until no one gets a task: every image ends with exactly 3 labels
        busy = False
        for a in crowd:
            t = c.get("/api/v1/rating-tasks/next", headers=bearer(a), params={"prompt_set_id": ps["id"]})
            if t.status_code != 200:
                continue
            busy = True
            says = truth(t.json()["image_id"]) != (a is liar)
            r = c.post("/api/v1/ratings", headers=bearer(a), json={
                "assignment_id": t.json()["assignment_id"], "label": "good" if says else "bad"})
            assert r.status_code == 201, r.text

    bad = c.post("/api/v1/jobs", headers=h, json={"kind": "train_reward", "params": {
        "prompt_set_id": ps["id"], "reward": {"rater_weighting": "sometimes"}}})
    assert bad.status_code == 422 and "rater_weighting" in bad.text
    bad = c.post("/api/v1/jobs", headers=h, json={"kind": "train_reward", "params": {
        "prompt_set_id": ps["id"], "label_order": "best first"}})
    assert bad.status_code == 422 and "label_order" in bad.text

    job = c.post("/api/v1/jobs", headers=h, json={"kind": "train_reward", "params": {
        "prompt_set_id": ps["id"], "min_labels": 10, "label_order": "uncertain",
        "reward": {"rater_weighting": True, "max_epochs": 2, "min_steps": 0}}})
    assert job.status_code == 202, job.text
    done = wait_job(c, researcher, job.json()["id"])
    assert done["state"] == "succeeded", done
    version = db.scalar(select(ModelVersion).where(ModelVersion.id == done["result"]["reward_version_id"]))
    raters = version.metrics["raters"]
    assert raters["labels"] == 24 * 3 and raters["images"] == 24
    est = raters["annotators"]
    assert est[str(liar.id)]["sensitivity"] + est[str(liar.id)]["specificity"] - 1 < -0.3, est
    for a in honest:
        assert est[str(a.id)]["sensitivity"] + est[str(a.id)]["specificity"] - 1 > 0.5, est
    assert sum(e["labels"] for e in est.values()) == 72

    # the new model ranked every image of the set for labelling: certainty = 2·|score − ½| in permille
    scores = dict(db.execute(select(RewardScore.image_id, RewardScore.score)
                             .where(RewardScore.reward_version_id == version.id)).all())
    ranks = dict(db.execute(select(Image.id, Image.certainty).where(Image.prompt_set_id == ps["id"])).all())
    assert ranks.keys() == scores.keys() and len(ranks) == 24
    assert all(abs(ranks[i] - 2000 * abs(s - 0.5)) <= 0.51 for i, s in scores.items()), (ranks, scores)
    assert len(set(ranks.values())) > 1
    db.rollback()
    order = c.get(f"/api/v1/prompt-sets/{ps['id']}", headers=h).json()["label_order"]
    assert (order["order"], order["job_id"], order["reward_version_id"]) == ("uncertain", done["id"], version.id)
    assert order["ranked_images"] == sum(1 for r in ranks.values() if r > 0) and order["images"] == 24

    back = c.post("/api/v1/jobs", headers=h, json={"kind": "train_reward", "params": {
        "prompt_set_id": ps["id"], "label_order": "arrival", "reward": {"max_epochs": 1, "min_steps": 0}}})
    assert wait_job(c, researcher, back.json()["id"])["state"] == "succeeded"
    assert set(db.scalars(select(Image.certainty).where(Image.prompt_set_id == ps["id"]))) == {0}
    order = c.get(f"/api/v1/prompt-sets/{ps['id']}", headers=h).json()["label_order"]
    assert (order["order"], order["job_id"], order["ranked_images"]) == ("arrival", back.json()["id"], 0)
