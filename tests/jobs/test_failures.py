"""A worker killed with kill -9 mid-generation, cancelling a running job and retrying it (real Celery worker)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from app.db.models import Image, Job, JobLog
from tests.conftest import bearer
from tests.jobs.conftest import job, wait_for, wait_job

pytestmark = pytest.mark.slow


def _slow_generate(c, researcher, n_prompts=6, per_prompt=6):
    """A generate job of n_prompts × per_prompt images in batches of 2 at 25 steps: about 0.5 s a
    batch with the tiny models on 2 cores, so the job runs for seconds (progress is written at most
    once a second) and a test can act while it is under way."""
    h = bearer(researcher)
    ps = c.post("/api/v1/prompt-sets", headers=h, json={"name": "slow", "template": {"size": n_prompts}}).json()
    r = c.post("/api/v1/jobs", headers=h, json={"kind": "generate", "params": {
        "prompt_set_id": ps["id"], "images_per_prompt": per_prompt, "sampler": {"steps": 25, "batch_size": 2}}})
    assert r.status_code == 202
    return ps["id"], r.json()["id"], n_prompts * per_prompt


def test_kill_9_during_generate_retries_without_duplicates(loop_client, researcher, start_worker, db):
    c = loop_client
    first = start_worker()
    ps_id, job_id, expected = _slow_generate(c, researcher)
    wait_for(lambda: 0 < job(c, researcher, job_id)["progress"] < 60, timeout=120, every=0.2,
             what="generation under way")
    first.kill9()
    made_before = db.scalar(select(func.count()).select_from(Image).where(Image.job_id == job_id))
    db.rollback()
    assert 0 < made_before < expected
    assert job(c, researcher, job_id)["state"] == "running"  # nobody told the database yet
    start_worker()  # a new worker reaps the silent job and runs it again
    final = wait_job(c, researcher, job_id, timeout=240)
    assert final["state"] == "succeeded", final
    assert final["attempts"] == 2
    rows = db.execute(select(Image.prompt_id, Image.seed).where(Image.job_id == job_id)).all()
    assert len(rows) == expected and len(set(rows)) == expected  # every image once, none twice
    messages = [m for m in db.scalars(select(JobLog.message).where(JobLog.job_id == job_id))]
    assert any("lost" in m or "takes over" in m for m in messages), messages


def test_a_killed_pool_child_is_replaced_and_its_job_taken_over_at_once(loop_client, loop_settings, researcher,
                                                                       tmp_path, db):
    """kill -9 of the pool child only: Celery redelivers its message to a new child, which sees the
    owner is dead and takes over at once, long before the heartbeat could go stale (600 s here)."""
    import os
    import signal

    from tests.jobs.conftest import WorkerProcess

    c = loop_client
    worker = WorkerProcess(loop_settings.model_copy(update={"job_stale_seconds": 600}), tmp_path / "w.log")
    try:
        ps_id, job_id, expected = _slow_generate(c, researcher)
        wait_for(lambda: 0 < job(c, researcher, job_id)["progress"] < 60, timeout=120, every=0.2,
                 what="generation under way")
        owner = db.get(Job, job_id).worker
        db.rollback()
        pid = int(owner.rpartition(":")[2])
        assert pid != worker.proc.pid  # the child names itself, not the main process it was forked from
        os.kill(pid, signal.SIGKILL)
        final = wait_job(c, researcher, job_id, timeout=180)
        assert final["state"] == "succeeded" and final["attempts"] == 2, final
        rows = db.execute(select(Image.prompt_id, Image.seed).where(Image.job_id == job_id)).all()
        assert len(rows) == expected and len(set(rows)) == expected
        messages = list(db.scalars(select(JobLog.message).where(JobLog.job_id == job_id)))
        assert any("has died" in m for m in messages), messages
        assert worker.proc.poll() is None  # the main process lived on
    finally:
        worker.stop()


def test_cancel_stops_a_running_job_at_a_batch_boundary(loop_client, researcher, start_worker, db):
    c = loop_client
    start_worker()
    _ps, job_id, expected = _slow_generate(c, researcher, per_prompt=10)
    wait_for(lambda: job(c, researcher, job_id)["progress"] > 0, timeout=120, every=0.2, what="progress")
    r = c.post(f"/api/v1/jobs/{job_id}/cancel", headers=bearer(researcher))
    assert r.status_code == 200 and r.json()["cancel_requested_at"]
    final = wait_job(c, researcher, job_id, timeout=60)
    assert final["state"] == "cancelled"
    time.sleep(1)
    made = db.scalar(select(func.count()).select_from(Image).where(Image.job_id == job_id))
    assert 0 < made < expected and made % 2 == 0  # whole batches of 2 only
    assert db.get(Job, job_id).finished_at is not None
    db.rollback()

    # a retry resumes: it draws only what the cancelled job had not, so every (prompt, seed) exists once
    r = c.post(f"/api/v1/jobs/{job_id}/retry", headers=bearer(researcher))
    assert r.status_code in (200, 201, 202), r.text
    retry_id = r.json()["id"]
    final = wait_job(c, researcher, retry_id, timeout=240)
    assert final["state"] == "succeeded", final
    rows = db.execute(select(Image.prompt_id, Image.seed).where(Image.job_id.in_([job_id, retry_id]))).all()
    assert len(rows) == expected and len(set(rows)) == expected
    assert final["result"]["images"] == expected - made
