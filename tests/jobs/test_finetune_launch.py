"""One fine-tune job on several processes under `accelerate launch` (a worker's --gpus N): the command
it runs, and a job trained by two CPU processes (gloo) through the real handler, saved as one
checkpoint that loads like a one-process one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from safetensors.torch import load_file

from app.jobs.dispatch import RecordingDispatcher
from tests.conftest import bearer
from tests.jobs.finetune_data import seed_training_set
from tests.jobs.test_finetune_options import _finetune, _set


def test_the_launch_command():
    from workers.finetune_launch import launch_argv

    argv = launch_argv(4, Path("/w/job-3/launch.json"), 29123, python="/venv/bin/python")
    assert argv == ["/venv/bin/python", "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "4",
                    "--num_machines", "1", "--main_process_port", "29123", "--mixed_precision", "no",
                    "--dynamo_backend", "no", "-m", "workers.finetune_launch", "/w/job-3/launch.json"]
    assert launch_argv(2, Path("s.json"), 1)[0] == sys.executable


def test_worker_gpus_option_sets_the_fine_tunes_processes(monkeypatch):
    import workers.celery_app
    from workers.cli import main

    seen = {}
    monkeypatch.setattr(workers.celery_app.celery_app, "worker_main", lambda args: seen.update(args=args))
    monkeypatch.delenv("T2IF_FINETUNE_PROCESSES", raising=False)
    result = CliRunner().invoke(main, ["worker", "--gpus", "2", "--no-beat"])
    assert result.exit_code == 0, result.output
    import os

    from app.config import Settings

    assert os.environ.pop("T2IF_FINETUNE_PROCESSES") == "2"
    assert Settings().finetune_processes == 1  # and nothing else changed it for the rest of the tests
    assert CliRunner().invoke(main, ["worker", "--gpus", "0"]).exit_code != 0


def _run_job(client, researcher, db, settings, session_factory, tiny_models, processes: int) -> dict:
    from app.db.models import ModelVersion
    from workers.runtime import Runtime
    from workers.tasks import execute

    settings = settings.model_copy(update={"generator_model": str(tiny_models[0]), "finetune_processes": processes})
    ps = _set(client, researcher, name=f"ft-{processes}")
    reward = seed_training_set(db, settings, ps, per_prompt=2)
    base = db.query(ModelVersion.id).filter(ModelVersion.kind == "generator", ModelVersion.mode == "base").scalar()
    db.rollback()
    job_id = _finetune(client, researcher, prompt_set_id=ps, reward_version_id=reward, generator_version_id=base,
                       max_steps=6, checkpoint_every=3, batch_size=2).json()["id"]
    assert execute(Runtime(settings, RecordingDispatcher(), session_factory), "finetune", job_id) == "succeeded"
    got = client.get(f"/api/v1/jobs/{job_id}", headers=bearer(researcher)).json()
    version = db.query(ModelVersion).filter(ModelVersion.job_id == job_id).one()
    db.rollback()
    return {"job": got, "version": version}


@pytest.mark.slow
def test_a_finetune_job_trains_on_two_processes(client, researcher, db, settings, session_factory, tiny_models):
    from app.db.models import JobLog

    two = _run_job(client, researcher, db, settings, session_factory, tiny_models, processes=2)
    job, version = two["job"], two["version"]
    assert job["result"]["steps"] == 6 and job["progress"] == 100.0
    logs = [m for (m,) in db.query(JobLog.message).filter(JobLog.job_id == job["id"]).order_by(JobLog.id)]
    db.rollback()
    assert any(m.startswith("training on 2 processes under accelerate") for m in logs), logs
    assert any("accelerate.commands.launch --multi_gpu --num_processes 2" in m for m in logs), logs
    curve = version.metrics["curve"]
    assert [c["step"] for c in curve] == [1, 2, 3, 4, 5, 6] and all(c["loss"] > 0 for c in curve)
    ckpt = Path(version.artifact_url)
    assert ckpt.name == "checkpoint-6" and (ckpt / "training_state.pt").exists()
    weights = load_file(str(ckpt / "pytorch_lora_weights.safetensors"))
    # the same adapter as one process saves, and it loads onto the base model
    one = _run_job(client, researcher, db, settings, session_factory, tiny_models, processes=1)
    assert weights.keys() == load_file(str(Path(one["version"].artifact_url) /
                                           "pytorch_lora_weights.safetensors")).keys()
    from ml.generation import load_generator

    assert load_generator(str(tiny_models[0]), lora=str(ckpt), fuse_lora=True) is not None


@pytest.mark.slow
def test_a_two_process_finetune_stops_on_cancel_and_its_retry_resumes(client, researcher, db, settings,
                                                                      session_factory, tiny_models):
    import threading

    from app.db.models import JobLog, ModelVersion
    from tests.jobs.conftest import wait_for
    from workers.runtime import Runtime
    from workers.tasks import execute

    settings = settings.model_copy(update={"generator_model": str(tiny_models[0]), "finetune_processes": 2})
    h = bearer(researcher)
    ps = _set(client, researcher)
    reward = seed_training_set(db, settings, ps, per_prompt=2)
    base = db.query(ModelVersion.id).filter(ModelVersion.kind == "generator", ModelVersion.mode == "base").scalar()
    db.rollback()
    rt = Runtime(settings, RecordingDispatcher(), session_factory)
    first = _finetune(client, researcher, prompt_set_id=ps, reward_version_id=reward, generator_version_id=base,
                      max_steps=200, checkpoint_every=5, batch_size=2).json()["id"]
    outcome: list[str | None] = []
    runner = threading.Thread(target=lambda: outcome.append(execute(rt, "finetune", first)))
    runner.start()

    def past_a_checkpoint() -> bool:
        message = client.get(f"/api/v1/jobs/{first}", headers=h).json()["progress_message"]
        return message.startswith("step ") and int(message.split()[1].split("/")[0]) >= 10

    wait_for(past_a_checkpoint, timeout=120, every=0.1, what="ten steps")
    client.post(f"/api/v1/jobs/{first}/cancel", headers=h)
    runner.join(timeout=120)
    assert outcome == ["cancelled"]
    assert db.query(ModelVersion).filter(ModelVersion.job_id == first).count() == 0
    db.rollback()

    second = client.post(f"/api/v1/jobs/{first}/retry", headers=h).json()["id"]
    state = execute(rt, "finetune", second)
    logs = [m for (m,) in db.query(JobLog.message).filter(JobLog.job_id == second).order_by(JobLog.id)]
    db.rollback()
    assert state == "succeeded", "\n".join(logs)
    resumed = [m for m in logs if m.startswith("resuming from checkpoint-")]
    assert len(resumed) == 1 and resumed[0].endswith(f" of job-{first}"), logs
    version = db.query(ModelVersion).filter(ModelVersion.job_id == second).one()
    db.rollback()
    assert [c["step"] for c in version.metrics["curve"]] == list(range(1, 201))
