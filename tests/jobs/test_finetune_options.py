"""The fine-tune job's training options over REST (checkpoints, EMA, 8-bit Adam, decode threads): bad
values answer 422 naming the field, good ones reach the fine-tune's config; 8-bit Adam on a worker
without bitsandbytes fails the job at once with a message saying so; and where a retried job resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from app.db.models import Job, JobLog
from app.jobs.dispatch import RecordingDispatcher
from app.jobs.schemas import FinetuneParams
from tests.conftest import bearer
from tests.jobs.finetune_data import seed_training_set


def _set(client, researcher, name: str = "ft") -> int:
    r = client.post("/api/v1/prompt-sets", headers=bearer(researcher),
                    json={"name": name, "prompts": ["Two dogs", "A green colored cat"]})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _finetune(client, researcher, **params):
    return client.post("/api/v1/jobs", headers=bearer(researcher), json={"kind": "finetune", "params": params})


@pytest.mark.parametrize(("field", "value", "says"), [
    ("keep_checkpoints", 0, "greater than or equal to 1"),
    ("keep_checkpoints", 101, "less than or equal to 100"),
    ("checkpoint_every", 0, "greater than or equal to 1"),
    ("ema_decay", 1.0, "less than 1"),
    ("ema_decay", 0, "greater than 0"),
    ("use_8bit_adam", "maybe", "boolean"),
    ("data_workers", -1, "greater than or equal to 0"),
    ("data_workers", 33, "less than or equal to 32"),
])
def test_bad_training_options_answer_422_naming_the_field(client, researcher, field, value, says):
    ps = _set(client, researcher)
    r = _finetune(client, researcher, prompt_set_id=ps, **{field: value})
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert f"params.{field}" in message and says in message, message


def test_training_options_are_recorded_and_reach_the_config(client, researcher, db, settings):
    from workers.handlers.finetune import finetune_config

    ps = _set(client, researcher)
    seed_training_set(db, settings, ps, per_prompt=1)
    options = {"keep_checkpoints": 3, "checkpoint_every": 7, "ema_decay": 0.99, "use_8bit_adam": True,
               "data_workers": 2}
    r = _finetune(client, researcher, prompt_set_id=ps, max_steps=20, **options)
    assert r.status_code == 202, r.text
    params = client.get(f"/api/v1/jobs/{r.json()['id']}", headers=bearer(researcher)).json()["params"]
    assert {k: params[k] for k in options} == options
    config = finetune_config(FinetuneParams.model_validate(params))
    assert (config.keep_checkpoints, config.checkpoint_every, config.ema_decay, config.use_8bit_adam,
            config.data_workers) == (3, 7, 0.99, True, 2)
    # unset: a quarter of the steps between checkpoints, the library's defaults for the rest
    plain = finetune_config(FinetuneParams(prompt_set_id=ps, max_steps=20))
    assert (plain.checkpoint_every, plain.keep_checkpoints, plain.ema_decay, plain.use_8bit_adam,
            plain.data_workers) == (5, 2, None, False, 0)
    # a preset's settings and the options mix: the preset does not name them
    paper = finetune_config(FinetuneParams(prompt_set_id=ps, preset="paper", ema_decay=0.999))
    assert paper.mode == "full" and paper.max_steps == 10_000 and paper.ema_decay == 0.999
    assert paper.checkpoint_every == 500


def test_8bit_adam_on_a_worker_without_bitsandbytes_fails_the_job_saying_so(client, researcher, db, settings,
                                                                           session_factory, monkeypatch):
    import importlib.util

    from workers.runtime import Runtime
    from workers.tasks import execute

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "bitsandbytes" else real_find_spec(name, *a))
    ps = _set(client, researcher)
    seed_training_set(db, settings, ps, per_prompt=1)
    r = _finetune(client, researcher, prompt_set_id=ps, use_8bit_adam=True)
    assert r.status_code == 202, r.text  # the API cannot know what the worker that takes it has installed
    rt = Runtime(settings, RecordingDispatcher(), session_factory)
    assert execute(rt, "finetune", r.json()["id"]) == "failed"
    got = client.get(f"/api/v1/jobs/{r.json()['id']}", headers=bearer(researcher)).json()
    assert got["state"] == "failed" and got["attempts"] == 1
    assert got["error"].startswith("use_8bit_adam: bitsandbytes is not installed on worker "), got["error"]
    assert "pip install bitsandbytes" in got["error"]
    assert db.query(JobLog).filter(JobLog.job_id == got["id"], JobLog.message.like("%resuming%")).count() == 0
    assert db.get(Job, got["id"]).result == {}


def _checkpoint(out: Path, step: int, config, base_model: str = "sd", complete: bool = True,
                processes: int = 1) -> Path:
    from dataclasses import asdict

    path = out / f"checkpoint-{step}"
    path.mkdir(parents=True)
    torch.save({"step": step}, path / "training_state.pt")
    if complete:
        (path / "finetune.json").write_text(json.dumps(
            {"kind": config.mode, "base_model": base_model, "step": step, "config": asdict(config),
             "processes": processes}))
    return path


def test_a_retried_job_resumes_from_the_newest_checkpoint_written_with_its_settings(tmp_path):
    from dataclasses import replace

    from workers.handlers.finetune import finetune_config, resume_point

    config = finetune_config(FinetuneParams(prompt_set_id=1, max_steps=100))
    own, earlier, older = tmp_path / "job-3", tmp_path / "job-2", tmp_path / "job-1"
    assert resume_point(config, "sd", [own, earlier, older]) == (None, [])
    _checkpoint(older, 25, config)
    newest = _checkpoint(earlier, 50, config)
    _checkpoint(earlier, 75, config, complete=False)  # killed while writing it
    # how often it saved, how many it kept and how it read images do not change what it computed
    _checkpoint(own, 25, replace(config, checkpoint_every=5, keep_checkpoints=4, data_workers=3))
    assert resume_point(config, "sd", [own, earlier, older]) == (newest, [])

    lr = replace(config, lr=1e-3)
    found, notes = resume_point(lr, "sd", [own, earlier, older])
    assert found is None and len(notes) == 3 and all("(lr)" in n for n in notes)
    found, notes = resume_point(config, "other-sd", [earlier])
    assert found is None and notes == [f"not resuming from {newest}: written with other settings (base model)"]
    # each training process keeps its own noise generator in the resume state
    found, notes = resume_point(config, "sd", [earlier], processes=2)
    assert found is None and notes == [f"not resuming from {newest}: written by 1 training processes, "
                                       "this worker runs 2"]
    on_two = _checkpoint(tmp_path / "job-4", 80, config, processes=2)
    assert resume_point(config, "sd", [tmp_path / "job-4", earlier], processes=2) == (
        on_two, [f"not resuming from {newest}: written by 1 training processes, this worker runs 2"])


@pytest.mark.slow
def test_a_retry_of_a_cancelled_finetune_continues_from_its_checkpoint(client, researcher, db, settings,
                                                                       session_factory, tiny_models):
    """Over REST and the real handler, in this process: cancelled past a checkpoint, then retried (a new
    job), the fine-tune goes on from that checkpoint instead of step 0."""
    import threading

    from app.db.models import ModelVersion
    from tests.jobs.conftest import wait_for
    from workers.runtime import Runtime
    from workers.tasks import execute

    settings = settings.model_copy(update={"generator_model": str(tiny_models[0])})
    ps = _set(client, researcher)
    reward = seed_training_set(db, settings, ps, per_prompt=2)
    rt = Runtime(settings, RecordingDispatcher(), session_factory)
    h = bearer(researcher)
    base = db.query(ModelVersion.id).filter(ModelVersion.kind == "generator", ModelVersion.mode == "base").scalar()
    db.rollback()
    first = _finetune(client, researcher, prompt_set_id=ps, reward_version_id=reward, generator_version_id=base,
                      max_steps=40, checkpoint_every=5, batch_size=2).json()["id"]
    runner = threading.Thread(target=execute, args=(rt, "finetune", first))
    runner.start()

    def past_a_checkpoint() -> bool:
        message = client.get(f"/api/v1/jobs/{first}", headers=h).json()["progress_message"]
        return message.startswith("step ") and int(message.split()[1].split("/")[0]) >= 10

    wait_for(past_a_checkpoint, timeout=120, every=0.1, what="ten steps")
    assert client.post(f"/api/v1/jobs/{first}/cancel", headers=h).status_code in (200, 202)
    runner.join(timeout=120)
    assert client.get(f"/api/v1/jobs/{first}", headers=h).json()["state"] == "cancelled"

    retry = client.post(f"/api/v1/jobs/{first}/retry", headers=h)
    assert retry.status_code in (200, 201, 202), retry.text
    second = retry.json()["id"]
    assert execute(rt, "finetune", second) == "succeeded"
    logs = [m for (m,) in db.query(JobLog.message).filter(JobLog.job_id == second).order_by(JobLog.id)]
    resumed = [m for m in logs if m.startswith("resuming from checkpoint-")]
    assert len(resumed) == 1 and resumed[0].endswith(f" of job-{first}"), logs
    step = int(resumed[0].removeprefix("resuming from checkpoint-").split()[0])
    assert 10 <= step < 40
    version = db.query(ModelVersion).filter(ModelVersion.job_id == second).one()
    assert [c["step"] for c in version.metrics["curve"]] == list(range(1, 41))
    assert version.metrics["steps"] == 40
