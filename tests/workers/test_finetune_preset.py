"""A finetune job's settings over its preset: the preset fills what the job leaves unsaid."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.jobs.schemas import FinetuneParams
from ml.finetune import PRESETS
from workers.handlers.finetune import finetune_config


def test_world_preset_fills_unsaid_fields_and_named_fields_win():
    cfg = finetune_config(FinetuneParams(prompt_set_id=1, preset="world", max_steps=150))
    world = PRESETS["world"]
    assert cfg.max_steps == 150  # named by the job
    for key in ("mode", "lr", "batch_size", "beta", "caption_dropout", "snr_gamma"):
        assert getattr(cfg, key) == world[key], key
    assert cfg.checkpoint_every == 37


def test_without_preset_the_job_defaults_hold():
    cfg = finetune_config(FinetuneParams(prompt_set_id=1))
    assert (cfg.mode, cfg.lr, cfg.max_steps, cfg.batch_size, cfg.caption_dropout, cfg.snr_gamma) == (
        "lora", None, 1000, 4, 0.0, None)


def test_unknown_preset_is_refused():
    with pytest.raises(ValidationError, match="preset"):
        FinetuneParams(prompt_set_id=1, preset="sdxl")
