"""The whole loop with a real Redis and a real Celery worker process, on tiny models:
prompt set -> generate -> annotators rate over REST until the threshold -> train_reward starts by
itself -> finetune -> evaluate creates comparisons -> 9 votes each -> results are served."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from app.db.models import Comparison, Image, ModelVersion, RewardScore
from tests.conftest import bearer
from tests.jobs.conftest import wait_for, wait_job

pytestmark = pytest.mark.slow


def test_closed_loop(loop_client, researcher, make_user, start_worker, db):
    c, h = loop_client, bearer(researcher)
    start_worker()
    ev_set = c.post("/api/v1/prompt-sets", headers=h, json={
        "name": "eval", "purpose": "evaluation", "prompts": ["Two dogs", "A wolf in the city"]}).json()
    train = c.post("/api/v1/prompt-sets", headers=h, json={
        "name": "train", "template": {"size": 6, "seed": 3}, "labels_per_image": 1, "retrain_threshold": 10,
        "auto_chain": {
            "train_reward": {"min_labels": 5, "reward": {"max_epochs": 2}},
            "finetune": {"mode": "lora", "max_steps": 3, "batch_size": 2},
            "evaluate": {"prompt_set_id": ev_set["id"], "images_per_prompt": 1, "sampler": {"steps": 4}},
        }}).json()
    assert train["prompt_count"] == 6

    gen = c.post("/api/v1/jobs", headers=h, json={"kind": "generate", "params": {
        "prompt_set_id": train["id"], "images_per_prompt": 2, "sampler": {"steps": 4, "batch_size": 4}}})
    assert gen.status_code == 202
    done = wait_job(c, researcher, gen.json()["id"])
    assert done["state"] == "succeeded", done
    assert done["result"]["images"] == 12 and done["progress"] == 100.0
    seeds = sorted(db.scalars(select(Image.seed).where(Image.prompt_set_id == train["id"])))
    assert seeds == [0] * 6 + [1] * 6

    annotators = [make_user("annotator") for _ in range(9)]
    labels = 0
    while labels < 10:
        a = annotators[labels % 3]
        t = c.get("/api/v1/rating-tasks/next", headers=bearer(a))
        assert t.status_code == 200
        r = c.post("/api/v1/ratings", headers=bearer(a),
                   json={"assignment_id": t.json()["assignment_id"], "label": "good" if labels % 2 else "bad"})
        assert r.status_code == 201
        labels += 1

    def jobs_of(kind):
        return [j for j in c.get("/api/v1/jobs", headers=h, params={"kind": kind}).json()]

    reward_job = wait_for(lambda: jobs_of("train_reward"), timeout=60, what="automatic train_reward")[0]
    assert reward_job["trigger"]["type"] == "auto" and reward_job["trigger"]["new_labels"] >= 10
    assert wait_job(c, researcher, reward_job["id"])["state"] == "succeeded"
    ft_job = wait_for(lambda: jobs_of("finetune"), timeout=60, what="chained finetune")[0]
    assert ft_job["trigger"]["type"] == "chain" and ft_job["parent_job_id"] == reward_job["id"]
    assert wait_job(c, researcher, ft_job["id"])["state"] == "succeeded"
    ev_job = wait_for(lambda: jobs_of("evaluate"), timeout=60, what="chained evaluate")[0]
    ev_done = wait_job(c, researcher, ev_job["id"])
    assert ev_done["state"] == "succeeded", ev_done

    # lineage: the reward version records its label snapshot; the tuned generator its parents
    models = {m["kind"] + ":" + m["mode"]: m for m in c.get("/api/v1/models", headers=h).json()}
    reward, tuned, base = models["reward:mlp"], models["generator:lora"], models["generator:base"]
    assert reward["label_snapshot"]["labels"] >= 10 and reward["job_id"] == reward_job["id"]
    assert "clip_pairwise_accuracy" in reward["metrics"] or "clip_auc" in reward["metrics"]
    detail = c.get(f"/api/v1/models/{tuned['id']}", headers=h).json()
    assert [m["id"] for m in detail["lineage"]] == [base["id"]]
    assert detail["label_snapshot"]["reward_version_id"] == reward["id"] and detail["metrics"]["curve"]
    assert db.scalar(select(func.count()).select_from(RewardScore)) == 12  # every image scored
    assert db.scalar(select(ModelVersion.code_version).where(ModelVersion.id == tuned["id"]))

    # the evaluation: 2 prompts x 1 seed, each pair wants 9 votes
    ev_id = ev_done["result"]["evaluation_ids"][0]
    assert db.scalar(select(func.count()).select_from(Comparison).where(Comparison.evaluation_id == ev_id)) == 2
    for a in annotators:
        while (t := c.get("/api/v1/comparison-tasks/next", headers=bearer(a))).status_code == 200:
            r = c.post("/api/v1/comparison-votes", headers=bearer(a), json={
                "assignment_id": t.json()["assignment_id"], "alignment": "left", "fidelity": "tie"})
            assert r.status_code == 201
    result = c.get(f"/api/v1/evaluations/{ev_id}", headers=h).json()
    assert result["complete"] == 2 and result["votes"] == 18
    overall = next(g for g in result["results"] if g["group"] == "all")
    assert overall["fidelity"]["agreed_tie"]["count"] == 2  # everyone said tie: 9 of 9 agree
    assert overall["alignment"]["queries"] == 2
    groups = {g["group"] for g in result["results"]}
    assert {"seen", "unseen"} <= groups

    # exports: one row per label, JSONL and Parquet; votes in Pick-a-Pic's layout
    rows = [json.loads(line) for line in
            c.get("/api/v1/exports/ratings", headers=h, params={"prompt_set_id": train["id"]}).text.splitlines()]
    assert len(rows) == 10 and {"image_id", "prompt", "label", "annotator", "created_at"} <= set(rows[0])
    assert not any(r["annotator"].startswith("annotator") for r in rows)  # pseudonyms, not usernames
    table = pq.read_table(io.BytesIO(c.get("/api/v1/exports/ratings", headers=h, params={
        "prompt_set_id": train["id"], "format": "parquet"}).content))
    assert table.num_rows == 10 and "attributes" in table.column_names
    pairs = pq.read_table(io.BytesIO(c.get("/api/v1/exports/votes", headers=h, params={
        "evaluation_id": ev_id, "format": "pickapic"}).content)).to_pylist()
    assert len(pairs) == 18 and all(p["fidelity_label_0"] == 0.5 for p in pairs)
