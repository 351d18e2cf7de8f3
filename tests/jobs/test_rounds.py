"""Several rounds of the loop in the service (`auto_chain.next_round`), with a real Celery worker on tiny
models: after the chained fine-tune the new generator draws the set's prompts again, annotators label
those images, the next retrain fine-tunes *that* generator (continuing its LoRA adapter, not starting
again from the base), and the chain stops after the rounds asked for."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.db.models import Image
from tests.conftest import bearer
from tests.jobs.conftest import wait_for, wait_job

pytestmark = pytest.mark.slow


def test_next_round_fine_tunes_the_generator_of_the_round_before(loop_client, researcher, make_user, start_worker,
                                                                   db):
    c, h = loop_client, bearer(researcher)
    start_worker()
    train = c.post("/api/v1/prompt-sets", headers=h, json={
        "name": "rounds", "template": {"size": 4, "seed": 3}, "labels_per_image": 1, "retrain_threshold": 6,
        "auto_chain": {
            "train_reward": {"min_labels": 5, "reward": {"max_epochs": 2, "min_steps": 10}},
            "finetune": {"mode": "lora", "max_steps": 2, "batch_size": 2},
            "next_round": {"rounds": 2, "images_per_prompt": 2, "sampler": {"steps": 4}},
        }}).json()
    gen = c.post("/api/v1/jobs", headers=h, json={"kind": "generate", "params": {
        "prompt_set_id": train["id"], "images_per_prompt": 2, "sampler": {"steps": 4}}})
    assert wait_job(c, researcher, gen.json()["id"])["state"] == "succeeded"
    annotators = [make_user("annotator") for _ in range(3)]

    def jobs_of(kind):
        return sorted(c.get("/api/v1/jobs", headers=h, params={"kind": kind}).json(), key=lambda j: j["id"])

    def rate(n):
        done = 0
        for a in annotators * 10:
            if done == n:
                return
            t = c.get("/api/v1/rating-tasks/next", headers=bearer(a))
            if t.status_code == 200:
                label = {"assignment_id": t.json()["assignment_id"], "label": "good" if done % 2 else "bad"}
                assert c.post("/api/v1/ratings", headers=bearer(a), json=label).status_code == 201
                done += 1
        raise AssertionError(f"only {done} of {n} images to rate")

    base_id = db.scalar(select(Image.generator_version_id).where(Image.prompt_set_id == train["id"]).limit(1))
    rate(6)
    first = wait_for(lambda: [j for j in jobs_of("finetune") if j["state"] == "succeeded"], timeout=180,
                     what="round 1's fine-tune")[0]
    v1 = first["result"]["generator_version_id"]
    nxt = wait_for(lambda: [j for j in jobs_of("generate") if j["trigger"].get("round") == 2], timeout=60,
                   what="round 2's images")[0]
    assert nxt["params"]["generator_version_id"] == v1 and nxt["parent_job_id"] == first["id"]
    assert wait_job(c, researcher, nxt["id"])["state"] == "succeeded"
    assert db.scalar(select(Image.id).where(Image.prompt_set_id == train["id"],
                                            Image.generator_version_id == v1).limit(1)) is not None

    rate(6)  # generator 1's new images (and the round before's unlabelled ones)

    def finished(kind, n):
        done = [j for j in jobs_of(kind) if j["state"] in ("succeeded", "failed", "cancelled")]
        return done[n - 1:] if len(done) >= n else None

    try:
        reward2 = wait_for(lambda: finished("train_reward", 2), timeout=240, what="round 2's reward")[0]
        assert reward2["state"] == "succeeded", reward2
        second = wait_for(lambda: finished("finetune", 2), timeout=240, what="round 2's fine-tune")[0]
    except AssertionError:
        every = c.get("/api/v1/jobs", headers=h).json()
        raise AssertionError([(j["id"], j["kind"], j["state"], j["error"], j["trigger"], j["log_tail"][-3:])
                              for j in every]) from None
    assert second["state"] == "succeeded", second
    assert second["params"]["generator_version_id"] == v1
    v2 = c.get(f"/api/v1/models/{second['result']['generator_version_id']}", headers=h).json()
    tuned1 = c.get(f"/api/v1/models/{v1}", headers=h).json()
    # round 2's adapter continues round 1's on the same root model: the lineage runs base -> v1 -> v2
    assert [m["id"] for m in v2["lineage"]][:2] == [v1, base_id]
    assert v2["hyperparams"]["init_adapter"] == tuned1["artifact_url"]
    assert v2["hyperparams"]["base_model"] == tuned1["hyperparams"]["base_model"]
    logs = c.get(f"/api/v1/jobs/{second['id']}", headers=h).json()["log_tail"]
    text = " ".join(line["message"] for line in logs)
    assert "continuing its LoRA adapter" in text, text[:2000]
    # two rounds asked for, two done: no third round's images
    assert [j["trigger"].get("round") for j in jobs_of("generate") if j["trigger"].get("type") == "chain"] == [2]


def test_next_round_settings_are_checked_when_the_set_is_made(loop_client, researcher):
    c, h = loop_client, bearer(researcher)
    for chain, words in (({"next_round": {"rounds": 1, "images_per_prompt": 2}}, "next_round.rounds"),
                         ({"next_round": {"rounds": 3}}, "next_round.images_per_prompt"),
                         ({"next_round": {"rounds": 3, "images_per_prompt": 2, "colour": 1}}, "next_round.colour"),
                         ({"fine_tune": {}}, "unknown step 'fine_tune'"),
                         ({"finetune": 3}, "finetune must be an object")):
        r = c.post("/api/v1/prompt-sets", headers=h, json={"name": "x", "prompts": ["a dog"], "auto_chain": chain})
        assert r.status_code == 422 and words in r.text, (chain, r.text)
    made = c.post("/api/v1/prompt-sets", headers=h, json={"name": "ok", "prompts": ["a dog"]}).json()
    r = c.patch(f"/api/v1/prompt-sets/{made['id']}", headers=h, json={"auto_chain": {"next_round": {"rounds": 0}}})
    assert r.status_code == 422 and "next_round.rounds" in r.text
    assert c.get(f"/api/v1/prompt-sets/{made['id']}", headers=h).json()["auto_chain"] == {}


def test_a_lora_fine_tune_of_a_lora_version_must_keep_its_rank(loop_client, researcher):
    c, h = loop_client, bearer(researcher)
    ps = c.post("/api/v1/prompt-sets", headers=h, json={"name": "r", "prompts": ["a dog"]}).json()
    lora = c.post("/api/v1/models", headers=h, json={
        "kind": "generator", "mode": "lora", "name": "elsewhere", "artifact_url": "/nowhere/adapter",
        "base_model": "/nowhere/sd", "hyperparams": {"lora_rank": 8}}).json()
    r = c.post("/api/v1/jobs", headers=h, json={"kind": "finetune", "params": {
        "prompt_set_id": ps["id"], "generator_version_id": lora["id"], "mode": "lora", "lora_rank": 4}})
    assert r.status_code == 422 and "lora_rank 8" in r.text, r.text
    # the same rank (or a full fine-tune) gets past the rank check, to the next one: no reward model yet
    for params in ({"mode": "lora", "lora_rank": 8}, {"mode": "full"}):
        r = c.post("/api/v1/jobs", headers=h, json={"kind": "finetune", "params": {
            "prompt_set_id": ps["id"], "generator_version_id": lora["id"], **params}})
        assert r.status_code == 422 and "no reward model yet" in r.text, r.text
