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


def test_paper_preset_fills_the_job_and_the_estimate_is_logged_lines(tiny_sd_dir):
    from workers.handlers.finetune import estimate_lines

    cfg = finetune_config(FinetuneParams(prompt_set_id=1, preset="paper"))
    assert (cfg.mode, cfg.lr, cfg.max_steps, cfg.batch_size * cfg.gradient_accumulation_steps) == (
        "full", 2e-5, 10_000, 256)
    assert cfg.checkpoint_every == 500
    lines = estimate_lines(cfg, str(tiny_sd_dir), with_pretrain=True)
    assert len(lines) == 4 and "memory" in lines[1] and "disk" in lines[2] and "time" in lines[3]
    assert estimate_lines(cfg, "/nonexistent/model", with_pretrain=True)[0].startswith("no estimate")


@pytest.fixture(scope="module")
def tiny_sd_dir(tmp_path_factory):
    from ml.tiny import write_tiny_sd

    return write_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")


def test_stored_images_are_read_from_storage_only_when_asked():
    from ml.latent_cache import content_hash
    from workers.handlers.finetune import StoredImage

    class Storage:
        gets: list[str] = []

        def get(self, key):
            Storage.gets.append(key)
            return b"png-bytes"

    image = StoredImage(Storage(), "images/ab/abc.png", "abc")
    assert content_hash(image) == "abc" and Storage.gets == []  # the storage's hash keys the latent cache
    assert image.read_bytes() == b"png-bytes" and Storage.gets == ["images/ab/abc.png"]
