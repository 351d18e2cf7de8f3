"""An evaluation's images never join the training data: evaluations run on evaluation prompt sets
only, a chain that names none gets one of its own, and the fine-tune's data query leaves out any
image an evaluate job drew."""

from __future__ import annotations

from sqlalchemy import func, select

from app.db.models import Image, Job, ModelVersion, Prompt, PromptSet, RewardScore
from app.jobs import loop
from app.jobs import service as jobs
from tests.conftest import bearer


def _versions(db, settings) -> tuple[ModelVersion, ModelVersion]:
    base = jobs.ensure_base_generator(db, settings)
    tuned = ModelVersion(kind="generator", mode="lora", name="tuned", parent_id=base.id, artifact_url="x",
                         hyperparams={}, label_snapshot={}, metrics={}, code_version="")
    db.add(tuned)
    db.flush()
    return base, tuned


def _job(db, kind: str, ps: PromptSet, **kw) -> Job:
    job = Job(kind=kind, state="succeeded", params={}, prompt_set_id=ps.id, scope_key=f"{kind}:{ps.id}",
              result={}, **kw)
    db.add(job)
    db.flush()
    return job


def test_an_evaluation_on_a_training_set_is_refused(client, researcher, db, settings):
    h = bearer(researcher)
    train = client.post("/api/v1/prompt-sets", headers=h, json={"name": "t", "prompts": ["Two dogs"]}).json()
    ev = client.post("/api/v1/prompt-sets", headers=h,
                     json={"name": "e", "purpose": "evaluation", "prompts": ["Two wolves"]}).json()
    _, tuned = _versions(db, settings)
    db.commit()

    def evaluate(ps_id):
        return client.post("/api/v1/jobs", headers=h, json={"kind": "evaluate", "params": {
            "prompt_set_id": ps_id, "candidate_version_id": tuned.id}})

    refused = evaluate(train["id"])
    assert refused.status_code == 422
    assert "params.prompt_set_id: evaluate on an evaluation prompt set" in refused.json()["error"]["message"]
    assert evaluate(ev["id"]).status_code == 202


def test_a_chained_evaluation_without_a_set_gets_its_own_evaluation_set(db, settings):
    from app.prompts import service as prompt_sets
    from app.prompts.schemas import PromptSetCreate, TemplateSpec

    created = prompt_sets.create_prompt_set(db, settings, PromptSetCreate(
        name="round", template=TemplateSpec(size=8, seed=0),
        auto_chain={"evaluate": {"images_per_prompt": 1}}), creator=None)
    train = db.get(PromptSet, created.id)
    _, tuned = _versions(db, settings)
    finetune = _job(db, "finetune", train, trigger={"type": "chain"})

    ev_job_id = loop.chain_after(db, settings, finetune, tuned)
    assert ev_job_id is not None
    ev_set = db.get(PromptSet, db.get(Job, ev_job_id).params["prompt_set_id"])
    assert ev_set.id != train.id and ev_set.purpose == "evaluation" and ev_set.name == "round evaluation"
    splits = dict(db.execute(select(Prompt.split, func.count()).where(Prompt.prompt_set_id == ev_set.id)
                             .group_by(Prompt.split)).all())
    assert splits == {"seen": 60, "unseen": 60}  # the paper's 120 evaluation prompts
    assert loop.evaluation_set_for(db, settings, train).id == ev_set.id  # later rounds reuse it


def test_finetune_data_leaves_out_images_an_evaluation_drew(db, settings):
    from workers.handlers.finetune import training_images

    ps = PromptSet(name="legacy", labels_per_image=1)
    db.add(ps)
    db.flush()
    prompt = Prompt(prompt_set_id=ps.id, text="Two dogs", category="count")
    db.add(prompt)
    db.flush()
    base, _ = _versions(db, settings)
    reward = ModelVersion(kind="reward", mode="mlp", name="r", artifact_url="r", hyperparams={}, label_snapshot={},
                          metrics={}, code_version="")
    db.add(reward)
    db.flush()
    made = {}
    for kind in ("generate", "evaluate"):
        job = _job(db, kind, ps)
        made[kind] = Image(prompt_id=prompt.id, prompt_set_id=ps.id, source="generated", job_id=job.id,
                           generator_version_id=base.id, seed=0, storage_key=f"{kind}.png", content_hash=kind,
                           mime_type="image/png", width=8, height=8, byte_size=10, ratings_wanted=0, ratings_open=0)
        db.add(made[kind])
        db.flush()
        db.add(RewardScore(image_id=made[kind].id, reward_version_id=reward.id, score=0.5))
    db.flush()
    rows = db.execute(training_images(ps.id, reward.id)).all()
    assert [r.id for r in rows] == [made["generate"].id]
