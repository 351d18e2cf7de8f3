"""A worker killed with kill -9 in the middle of a fine-tune (real Celery worker, tiny models): the job,
taken over by the next worker, continues from its newest checkpoint instead of step 0 and ends with
the weights of a run that was never interrupted."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from sqlalchemy import select

from app.db.models import JobLog, ModelVersion
from tests.conftest import bearer
from tests.jobs.conftest import job, wait_for, wait_job
from tests.jobs.finetune_data import seed_training_set

pytestmark = pytest.mark.slow

STEPS = 120
EVERY = 10


def _version(db, job_id: int) -> ModelVersion:
    version = db.scalar(select(ModelVersion).where(ModelVersion.job_id == job_id))
    db.rollback()
    assert version is not None
    return version


def _step(j: dict) -> int:
    m = re.match(r"step (\d+)/", j.get("progress_message") or "")
    return int(m.group(1)) if m else 0


def test_a_killed_finetune_resumes_from_its_checkpoint_to_the_uninterrupted_weights(
        loop_client, loop_settings, researcher, start_worker, db):
    c, h = loop_client, bearer(researcher)
    ps = c.post("/api/v1/prompt-sets", headers=h, json={
        "name": "ft", "prompts": ["Two dogs", "A green colored cat", "A dog in the city"]}).json()["id"]
    reward = seed_training_set(db, loop_settings, ps, per_prompt=4)
    params = {"prompt_set_id": ps, "reward_version_id": reward, "mode": "lora", "max_steps": STEPS,
              "checkpoint_every": EVERY, "batch_size": 4, "lr": 1e-3, "seed": 7, "pretrain_dir": None}

    first = start_worker()
    killed = c.post("/api/v1/jobs", headers=h, json={"kind": "finetune", "params": params}).json()["id"]
    # past a few checkpoints, far from the end
    at_kill = wait_for(lambda: (s := _step(job(c, researcher, killed))) >= 3 * EVERY and s, timeout=240, every=0.1,
                       what="fine-tune under way")
    first.kill9()
    assert isinstance(at_kill, int)
    stopped = job(c, researcher, killed)
    assert stopped["state"] == "running" and _step(stopped) < STEPS, stopped  # nobody told the database yet
    t_killed = time.monotonic()

    start_worker()  # reaps the silent job (heartbeat stale after 6 s) and runs it again
    done = wait_job(c, researcher, killed, timeout=300)
    t_resumed = time.monotonic() - t_killed
    assert done["state"] == "succeeded" and done["attempts"] == 2, done
    assert done["result"]["steps"] == STEPS
    messages = list(db.scalars(select(JobLog.message).where(JobLog.job_id == killed).order_by(JobLog.id)))
    db.rollback()
    resumed = [int(m.removeprefix("resuming from checkpoint-")) for m in messages
               if m.startswith("resuming from checkpoint-")]
    assert len(resumed) == 1, messages
    assert resumed[0] % EVERY == 0 and 3 * EVERY - EVERY <= resumed[0] <= STEPS - EVERY, (resumed, at_kill)

    # the same job again, never interrupted (the first one finished, so its scope is free)
    whole = c.post("/api/v1/jobs", headers=h, json={"kind": "finetune", "params": params}).json()["id"]
    t0 = time.monotonic()
    assert wait_job(c, researcher, whole, timeout=300)["state"] == "succeeded"
    t_whole = time.monotonic() - t0

    a, b = _version(db, killed), _version(db, whole)
    # the step count went on from the checkpoint: one curve of STEPS steps, the same as the whole run's
    assert [p["step"] for p in a.metrics["curve"]] == list(range(1, STEPS + 1))
    losses_a = [p["loss"] for p in a.metrics["curve"]]
    losses_b = [p["loss"] for p in b.metrics["curve"]]
    # the second run reads the VAE latents from the disk cache the first one filled: equal up to rounding
    assert losses_a == pytest.approx(losses_b, rel=0, abs=1e-5)
    wa = load_file(str(Path(a.artifact_url) / "pytorch_lora_weights.safetensors"))
    wb = load_file(str(Path(b.artifact_url) / "pytorch_lora_weights.safetensors"))
    assert wa.keys() == wb.keys() and wa
    moved = 0.0
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=1e-4)
        moved = max(moved, float(wa[k].abs().max()))
    assert moved > 0
    print(f"\nkilled at step {at_kill}, resumed from checkpoint-{resumed[0]}; kill -> done {t_resumed:.1f} s "
          f"(worker start, 6 s stale wait, {STEPS - resumed[0]} steps); uninterrupted run {t_whole:.1f} s")
