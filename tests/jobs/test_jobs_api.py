"""Jobs over REST: validation naming the field, one live job per scope, enqueue after commit,
cancel and retry; and the retrain check that starts reward training by itself."""

from __future__ import annotations

from sqlalchemy import select

from app.db.models import Job, ModelVersion, Rating
from app.jobs import loop
from app.jobs import service as jobs
from tests.annotation.conftest import make_pool
from tests.conftest import bearer


def _post(client, acct, kind, **params):
    return client.post("/api/v1/jobs", headers=bearer(acct), json={"kind": kind, "params": params})


def test_bad_parameters_name_the_field(client, researcher):
    make_pool(client, researcher, n_images=0)
    r = _post(client, researcher, "generate", prompt_set_id=1)
    assert r.status_code == 422 and "params.images_per_prompt" in r.json()["error"]["message"]
    r = _post(client, researcher, "generate", prompt_set_id=99, images_per_prompt=2)
    assert r.status_code == 422 and "params.prompt_set_id: prompt set 99 does not exist" in r.json()["error"]["message"]
    r = _post(client, researcher, "generate", prompt_set_id=1, images_per_prompt=2, colour="blue")
    assert r.status_code == 422 and "params.colour" in r.json()["error"]["message"]
    r = _post(client, researcher, "finetune", prompt_set_id=1)
    assert r.status_code == 422 and "reward" in r.json()["error"]["message"]
    r = _post(client, researcher, "evaluate", prompt_set_id=1, candidate_version_id=12345)
    assert r.status_code == 422 and "params.candidate_version_id" in r.json()["error"]["message"]
    r = client.post("/api/v1/jobs", headers=bearer(researcher), json={"kind": "paint", "params": {}})
    assert r.status_code == 422 and "kind" in r.json()["error"]["message"]


def test_create_enqueues_after_commit_and_refuses_a_second_live_job(client, researcher, dispatcher, db, settings):
    make_pool(client, researcher, n_images=0)
    r = _post(client, researcher, "generate", prompt_set_id=1, images_per_prompt=2)
    assert r.status_code == 202 and r.json()["state"] == "queued"
    job_id = r.json()["id"]
    assert [(m.task, m.kwargs) for m in dispatcher.sent] == [("jobs.generate", {"job_id": job_id})]
    row = db.get(Job, job_id)
    # defaults are written into the row: the job says exactly what it will run
    base = db.scalar(select(ModelVersion).where(ModelVersion.mode == "base"))
    assert row.params["generator_version_id"] == base.id and row.params["sampler"]["steps"] == 30
    assert row.trigger["type"] == "user" and row.trigger["username"] == researcher.username
    again = _post(client, researcher, "generate", prompt_set_id=1, images_per_prompt=5)
    assert again.status_code == 409 and f"job {job_id}" in again.json()["error"]["message"]
    assert len(dispatcher.sent) == 1  # the refused request sent nothing


def test_a_failed_request_sends_nothing(client, researcher, dispatcher, session_factory, settings):
    make_pool(client, researcher, n_images=0)
    from app.db.session import transaction

    try:
        with transaction(session_factory) as s:
            jobs.create_job(s, settings, "generate", {"prompt_set_id": 1, "images_per_prompt": 1})
            raise RuntimeError("the request fails after creating the job")
    except RuntimeError:
        pass
    assert dispatcher.sent == []


def test_cancel_and_retry(client, researcher, db):
    make_pool(client, researcher, n_images=0)
    job_id = _post(client, researcher, "generate", prompt_set_id=1, images_per_prompt=2).json()["id"]
    r = client.post(f"/api/v1/jobs/{job_id}/cancel", headers=bearer(researcher))
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert any("cancelled by" in line["message"] for line in r.json()["log_tail"])
    again = client.post(f"/api/v1/jobs/{job_id}/cancel", headers=bearer(researcher))
    assert again.status_code == 409
    retry = client.post(f"/api/v1/jobs/{job_id}/retry", headers=bearer(researcher))
    assert retry.status_code == 202
    new = client.get(f"/api/v1/jobs/{retry.json()['id']}", headers=bearer(researcher)).json()
    assert new["trigger"]["type"] == "retry" and new["trigger"]["of_job"] == job_id and new["parent_job_id"] == job_id
    not_retryable = client.post(f"/api/v1/jobs/{new['id']}/retry", headers=bearer(researcher))
    assert not_retryable.status_code == 409
    listed = client.get("/api/v1/jobs", headers=bearer(researcher), params={"state": "cancelled"}).json()
    assert [j["id"] for j in listed] == [job_id]
    # a running job is asked to stop at its next batch boundary
    db.execute(Job.__table__.update().where(Job.id == new["id"]).values(state="running"))
    db.commit()
    r = client.post(f"/api/v1/jobs/{new['id']}/cancel", headers=bearer(researcher))
    assert r.status_code == 200 and r.json()["state"] == "running" and r.json()["cancel_requested_at"]


def test_retrain_starts_by_itself_once_and_records_why(client, researcher, make_user, db, settings, dispatcher):
    make_pool(client, researcher, n_images=6, k=1, retrain_threshold=4)
    a = make_user("annotator")
    for label in ["good", "bad", "skip", "good"]:
        t = client.get("/api/v1/rating-tasks/next", headers=bearer(a)).json()
        client.post("/api/v1/ratings", headers=bearer(a), json={"assignment_id": t["assignment_id"], "label": label})
    # 3 usable labels (the skip does not count): below the threshold
    assert loop.check_retrain(db, settings) == []
    t = client.get("/api/v1/rating-tasks/next", headers=bearer(a)).json()
    client.post("/api/v1/ratings", headers=bearer(a), json={"assignment_id": t["assignment_id"], "label": "bad"})
    started = loop.check_retrain(db, settings)
    db.commit()
    assert len(started) == 1
    job = db.get(Job, started[0])
    assert job.kind == "train_reward" and job.trigger["type"] == "auto" and job.trigger["new_labels"] == 4
    assert job.trigger["threshold"] == 4
    # a second trigger while that one is queued/running starts nothing
    assert loop.check_retrain(db, settings) == []
    db.commit()
    r = _post(client, researcher, "train_reward", prompt_set_id=1)
    assert r.status_code == 409
    assert db.scalar(select(Rating.id).order_by(Rating.id.desc()).limit(1)) == 5
    assert [m.task for m in dispatcher.sent].count("jobs.train_reward") == 1


def test_register_an_externally_trained_version(client, researcher):
    h = bearer(researcher)
    base = client.post("/api/v1/models", headers=h, json={
        "kind": "generator", "mode": "base", "name": "sd15", "artifact_url": "stable-diffusion-v1-5/x"})
    assert base.status_code == 201
    lora = client.post("/api/v1/models", headers=h, json={
        "kind": "generator", "mode": "lora", "name": "ft", "artifact_url": "/ft/checkpoint-10",
        "parent_id": base.json()["id"], "base_model": "stable-diffusion-v1-5/x"})
    assert lora.status_code == 201 and lora.json()["hyperparams"]["base_model"] == "stable-diffusion-v1-5/x"
    detail = client.get(f"/api/v1/models/{lora.json()['id']}", headers=h).json()
    assert [m["id"] for m in detail["lineage"]] == [base.json()["id"]]
    bad = client.post("/api/v1/models", headers=h, json={
        "kind": "generator", "mode": "lora", "name": "x", "artifact_url": "/x"})
    assert bad.status_code == 422 and "base_model" in bad.json()["error"]["message"]
    wrong_parent = client.post("/api/v1/models", headers=h, json={
        "kind": "reward", "mode": "mlp", "name": "r", "artifact_url": "/r", "parent_id": base.json()["id"]})
    assert wrong_parent.status_code == 422 and "parent_id" in wrong_parent.json()["error"]["message"]


def test_a_job_accepted_while_the_broker_is_down_is_sent_once_it_answers(client, researcher, dispatcher, db,
                                                                         session_factory, settings):
    from datetime import timedelta

    from sqlalchemy import update

    from app.db.base import utcnow
    from app.db.models import JobLog
    from workers.lifecycle import reap_stale
    from workers.runtime import Runtime

    make_pool(client, researcher, n_images=0)
    working = dispatcher.send

    def broker_down(message):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    dispatcher.send = broker_down
    r = _post(client, researcher, "generate", prompt_set_id=1, images_per_prompt=2)
    dispatcher.send = working
    assert r.status_code == 202 and r.json()["state"] == "queued"
    job_id = r.json()["id"]
    assert dispatcher.sent == [] and db.get(Job, job_id).sent_at is None
    db.rollback()
    rt = Runtime(settings, dispatcher=dispatcher, session_factory=session_factory)
    assert reap_stale(rt)["resent"] == []  # just accepted: its send may still be under way
    with session_factory.begin() as s:
        s.execute(update(Job).where(Job.id == job_id).values(created_at=utcnow() - timedelta(seconds=30)))
    assert reap_stale(rt)["resent"] == [job_id]
    assert [(m.task, m.kwargs) for m in dispatcher.sent] == [("jobs.generate", {"job_id": job_id})]
    assert db.get(Job, job_id).sent_at is not None
    assert any("sent again" in m for m in db.scalars(select(JobLog.message).where(JobLog.job_id == job_id)))
    assert reap_stale(rt)["resent"] == []  # sent once, not at every sweep


def test_a_job_sent_normally_is_marked_sent(client, researcher, db):
    make_pool(client, researcher, n_images=0)
    r = _post(client, researcher, "generate", prompt_set_id=1, images_per_prompt=2)
    assert db.get(Job, r.json()["id"]).sent_at is not None
