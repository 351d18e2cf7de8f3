"""The fine-tune job's training options over REST (checkpoints, EMA, 8-bit Adam, decode threads): bad
values answer 422 naming the field, good ones reach the fine-tune's config; 8-bit Adam on a worker
without bitsandbytes fails the job at once with a message saying so."""

from __future__ import annotations

import pytest

from app.db.models import Job, JobLog
from app.jobs.dispatch import RecordingDispatcher
from app.jobs.schemas import FinetuneParams
from tests.conftest import bearer
from tests.jobs.finetune_data import seed_training_set


def _set(client, researcher) -> int:
    r = client.post("/api/v1/prompt-sets", headers=bearer(researcher),
                    json={"name": "ft", "prompts": ["Two dogs", "A green colored cat"]})
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
