"""Pairs as a training signal through the service: a prompt set's comparison votes reach the reward
model (`reward.pairs`, Bradley-Terry) and the fine-tune (`objective: dpo`) through a real Celery
worker; bad values are refused with the field named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from app.db.models import Comparison, ComparisonAssignment, ComparisonVote, Image, ModelVersion
from tests.conftest import bearer
from tests.jobs.conftest import wait_job

pytestmark = pytest.mark.slow


def _vote_on_pairs(db, ps_id, voters, truth, evaluation_id=None):
    """One comparison per prompt (its first two images), each voter answering the alignment question
    for the image `truth` calls aligned (the second image when both or neither are); returns pairs."""
    by_prompt: dict[int, list[int]] = {}
    for image_id, prompt_id in db.execute(select(Image.id, Image.prompt_id).where(Image.prompt_set_id == ps_id)
                                          .order_by(Image.id)):
        by_prompt.setdefault(prompt_id, []).append(image_id)
    now = datetime.now(UTC)
    n = 0
    for prompt_id, ids in by_prompt.items():
        a, b = ids[:2]
        c = Comparison(prompt_id=prompt_id, image_a_id=a, image_b_id=b, votes_wanted=len(voters), votes_open=0,
                       evaluation_id=evaluation_id)
        db.add(c)
        db.flush()
        side = "a" if truth(a) and not truth(b) else "b"
        for i, voter in enumerate(voters):
            asg = ComparisonAssignment(comparison_id=c.id, annotator_id=voter.id, left_is_a=True, state="submitted",
                                       leased_at=now, lease_expires_at=now + timedelta(minutes=5), submitted_at=now)
            db.add(asg)
            db.flush()
            answer = side if i < len(voters) - 2 else "tie"  # two voters of nine could not decide
            db.add(ComparisonVote(assignment_id=asg.id, comparison_id=c.id, annotator_id=voter.id,
                                  alignment=answer, fidelity="tie"))
        n += 1
    db.commit()
    return n


def test_reward_learns_from_votes_and_dpo_fine_tunes_on_them(loop_client, researcher, make_user, start_worker, db):
    c, h = loop_client, bearer(researcher)
    start_worker()
    ps = c.post("/api/v1/prompt-sets", headers=h, json={"name": "pairs", "template": {"size": 12, "seed": 5}}).json()
    gen = c.post("/api/v1/jobs", headers=h, json={"kind": "generate", "params": {
        "prompt_set_id": ps["id"], "images_per_prompt": 2, "sampler": {"steps": 2, "batch_size": 8}}})
    assert wait_job(c, researcher, gen.json()["id"])["state"] == "succeeded"

    truth = lambda image_id: image_id % 2 == 0  # noqa: E731 - the world these raters see
    rater = make_user("annotator")
    while True:
        t = c.get("/api/v1/rating-tasks/next", headers=bearer(rater), params={"prompt_set_id": ps["id"]})
        if t.status_code != 200:
            break
        r = c.post("/api/v1/ratings", headers=bearer(rater), json={
            "assignment_id": t.json()["assignment_id"], "label": "good" if truth(t.json()["image_id"]) else "bad"})
        assert r.status_code == 201, r.text

    # without votes, asking for pairs fails clearly; so does DPO
    job = c.post("/api/v1/jobs", headers=h, json={"kind": "train_reward", "params": {
        "prompt_set_id": ps["id"], "reward": {"pairs": True, "max_epochs": 2, "min_steps": 0}}})
    done = wait_job(c, researcher, job.json()["id"])
    assert done["state"] == "failed" and "reward.pairs" in done["error"], done

    n_pairs = _vote_on_pairs(db, ps["id"], [make_user("annotator") for _ in range(9)], truth)
    assert n_pairs == 12
    # an evaluation's pairs (here on the same images, voted the other way) measure; they never train
    from app.db.models import Evaluation

    ev = Evaluation(name="measure", prompt_set_id=ps["id"], votes_per_comparison=9)
    db.add(ev)
    db.flush()
    _vote_on_pairs(db, ps["id"], [make_user("annotator") for _ in range(9)], lambda i: not truth(i), ev.id)

    for bad, field in (({"reward": {"pairs": "often"}}, "pairs"), ({"reward": {"lambda_pair": -1}}, "lambda_pair")):
        r = c.post("/api/v1/jobs", headers=h,
                   json={"kind": "train_reward", "params": {"prompt_set_id": ps["id"], **bad}})
        assert r.status_code == 422 and field in r.text, r.text
    job = c.post("/api/v1/jobs", headers=h, json={"kind": "train_reward", "params": {
        "prompt_set_id": ps["id"], "reward": {"pairs": True, "max_epochs": 2, "min_steps": 0}}})
    assert job.status_code == 202, job.text
    done = wait_job(c, researcher, job.json()["id"])
    assert done["state"] == "succeeded", done
    version = db.scalar(select(ModelVersion).where(ModelVersion.id == done["result"]["reward_version_id"]))
    assert version.label_snapshot["pairs"] == 12 and version.label_snapshot["pair_votes"] == 12 * 9
    assert version.metrics["n_pairs_train"] + version.metrics["n_pairs_val"] == 12

    for bad, field in (({"objective": "ppo"}, "objective"), ({"objective": "dpo", "dpo_beta": 0}, "dpo_beta")):
        r = c.post("/api/v1/jobs", headers=h, json={"kind": "finetune", "params": {"prompt_set_id": ps["id"], **bad}})
        assert r.status_code == 422 and field in r.text, r.text
    ft = c.post("/api/v1/jobs", headers=h, json={"kind": "finetune", "params": {
        "prompt_set_id": ps["id"], "objective": "dpo", "max_steps": 2, "batch_size": 2}})
    assert ft.status_code == 202, ft.text
    done = wait_job(c, researcher, ft.json()["id"])
    assert done["state"] == "succeeded", done
    gen_version = db.scalar(select(ModelVersion).where(ModelVersion.id == done["result"]["generator_version_id"]))
    assert gen_version.hyperparams["objective"] == "dpo"
    assert gen_version.label_snapshot["pairs"] == 12 and gen_version.label_snapshot["tied_pairs"] == 0
    assert done["result"]["images"] == 24
