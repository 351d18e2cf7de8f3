"""The estimate printed before a fine-tune: from the model's config, batch, precision and device."""

import dataclasses

import pytest

from ml.finetune import PRESETS, FinetuneConfig
from ml.finetune_estimate import estimate_finetune


def test_estimate_is_positive_and_scales_with_batch_and_trained_parameters(tiny_sd):
    lora = FinetuneConfig(mode="lora", lora_rank=4, batch_size=2, max_steps=100)
    e = estimate_finetune(lora, tiny_sd)
    assert e.unet_params > e.trainable_params > 0 and e.frozen_params > 0
    assert e.memory_gb > 0 and e.checkpoint_gb > 0 and e.disk_gb > e.checkpoint_gb and e.seconds > 0
    assert e.samples_per_step == 4 and e.fits is None  # CPU: nothing to fit in

    double = estimate_finetune(dataclasses.replace(lora, batch_size=4), tiny_sd)
    assert double.flops_per_step == pytest.approx(2 * e.flops_per_step)
    assert double.seconds == pytest.approx(2 * e.seconds)
    assert double.memory_parts_gb["activations"] == pytest.approx(2 * e.memory_parts_gb["activations"], rel=1e-2)
    assert estimate_finetune(lora, tiny_sd, with_pretrain=False).samples_per_step == 2

    rank8 = estimate_finetune(dataclasses.replace(lora, lora_rank=8), tiny_sd)
    assert rank8.trainable_params == 2 * e.trainable_params

    full = estimate_finetune(dataclasses.replace(lora, mode="full"), tiny_sd)
    assert full.trainable_params == full.unet_params
    assert full.memory_parts_gb["optimizer"] == pytest.approx(8 * full.unet_params / 1024**3, rel=1e-2)
    assert full.resume_state_gb > e.resume_state_gb and full.memory_gb > e.memory_gb
    eight = estimate_finetune(dataclasses.replace(lora, mode="full", use_8bit_adam=True), tiny_sd)
    assert eight.memory_parts_gb["optimizer"] == pytest.approx(full.memory_parts_gb["optimizer"] / 4)
    half = estimate_finetune(dataclasses.replace(lora, mode="full", checkpoint_dtype="fp16"), tiny_sd)
    assert half.checkpoint_gb < full.checkpoint_gb
    assert len(e.lines()) == 4 and all(line.startswith("estimate") for line in e.lines())


def test_paper_preset_is_the_papers_settings(tiny_sd):
    cfg = FinetuneConfig(**PRESETS["paper"])
    assert (cfg.mode, cfg.lr, cfg.adam_betas, cfg.adam_eps, cfg.weight_decay, cfg.beta, cfg.max_steps) == (
        "full", 2e-5, (0.9, 0.999), 1e-8, 1e-2, 1.0, 10_000)
    assert cfg.batch_size * cfg.gradient_accumulation_steps == 256  # + as many pre-training pairs
    e = estimate_finetune(cfg, tiny_sd)
    assert e.samples_per_step == 512
