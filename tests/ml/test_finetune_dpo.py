"""Diffusion-DPO in ml.finetune: the loss by hand, its gradient's direction, and tiny-model runs that
train against the right reference and save what generates."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ml.finetune import FinetuneConfig, ModelSample, dpo_loss, finetune
from ml.generation import GenerationConfig, generate, load_generator


def test_dpo_loss_by_hand():
    model = torch.tensor([0.30, 0.10, 0.50, 0.20])  # preferred 0.30, 0.10; rejected 0.50, 0.20
    ref = torch.tensor([0.31, 0.12, 0.49, 0.20])
    beta = 100.0
    d = [(0.30 - 0.31) - (0.50 - 0.49), (0.10 - 0.12) - (0.20 - 0.20)]
    expected = np.mean([-math.log(1 / (1 + math.exp(0.5 * beta * x))) for x in d])
    assert dpo_loss(model, ref, beta).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="preferred"):
        dpo_loss(model[:3], ref[:3], beta)


def test_at_the_reference_the_loss_is_log2_and_the_gradient_favours_the_preferred():
    w = torch.tensor([0.7, -0.2], requires_grad=True)
    x = torch.tensor([[1.0, 2.0], [3.0, 1.0]])  # sample 0 preferred, sample 1 rejected

    def grad(order):
        w.grad = None
        losses = ((x[order] @ w) - 1.0) ** 2
        loss = dpo_loss(losses, losses.detach(), beta_dpo=50.0)  # θ = ref
        loss.backward()
        return loss.item(), w.grad.clone()

    loss, g = grad([0, 1])
    assert loss == pytest.approx(math.log(2))
    # dL/dℓ_w = β/4, dL/dℓ_l = -β/4 at θ = ref: the gradient of ℓ_w minus that of ℓ_l, times β/4
    lw_grad = 2 * ((x[0] @ w) - 1.0) * x[0]
    ll_grad = 2 * ((x[1] @ w) - 1.0) * x[1]
    assert torch.allclose(g, 50.0 / 4 * (lw_grad - ll_grad).detach(), atol=1e-5)
    loss_swapped, g_swapped = grad([1, 0])
    assert loss_swapped == pytest.approx(math.log(2))
    assert torch.allclose(g_swapped, -g, atol=1e-6)


@pytest.fixture(scope="module")
def pair_samples(generator):
    reqs = [("Two dogs", 1), ("Two dogs", 2), ("A red cup", 3), ("A red cup", 4)]
    images = generate(generator, reqs, GenerationConfig(steps=2)).images
    return [ModelSample(g.image, g.prompt, 0.0) for g in images]


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_dpo_run_starts_at_log2_trains_and_saves(mode, tiny_sd, pair_samples, tmp_path):
    cfg = FinetuneConfig(mode=mode, objective="dpo", dpo_beta=5000.0, max_steps=3, batch_size=4, lr=1e-2,
                         checkpoint_every=3, warmup_steps=0)
    with pytest.warns(UserWarning, match="pre-training"):
        r = finetune(cfg, tiny_sd, pair_samples, tmp_path / "ft", pairs=[(0, 1), (3, 2)])
    assert r.steps == 3 and all(np.isfinite(c["loss"]) for c in r.curve)
    # the first step's model is the reference: every pair's margin is 0
    assert r.curve[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert r.curve[-1]["loss"] != pytest.approx(math.log(2), abs=1e-4)  # it moved away from the reference
    gen = load_generator(r.checkpoint, device="cpu") if mode == "full" else \
        load_generator(tiny_sd, lora=r.checkpoint, device="cpu")
    req, g = [("Two dogs", 7)], GenerationConfig(steps=2)
    a = np.asarray(generate(load_generator(tiny_sd, device="cpu"), req, g).images[0].image, np.int16)
    b = np.asarray(generate(gen, req, g).images[0].image, np.int16)
    assert np.abs(a - b).max() > 0


def test_dpo_pairs_are_checked(tiny_sd, pair_samples, tmp_path):
    dpo = FinetuneConfig(objective="dpo", max_steps=1, batch_size=2)
    with pytest.raises(ValueError, match="needs pairs"):
        finetune(dpo, tiny_sd, pair_samples, tmp_path / "a")
    with pytest.raises(ValueError, match="two prompts"):
        finetune(dpo, tiny_sd, pair_samples, tmp_path / "b", pairs=[(0, 2)])
    with pytest.raises(ValueError, match="itself"):
        finetune(dpo, tiny_sd, pair_samples, tmp_path / "c", pairs=[(1, 1)])
    with pytest.raises(ValueError, match="objective 'dpo'"):
        finetune(FinetuneConfig(max_steps=1), tiny_sd, pair_samples, tmp_path / "d", pairs=[(0, 1)])
    with pytest.raises(ValueError, match="objective must be"):
        finetune(FinetuneConfig(objective="ppo", max_steps=1), tiny_sd, pair_samples, tmp_path / "e")
