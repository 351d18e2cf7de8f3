"""The science regression test: a reduced `world-loop` round on the shipped world models.

With fixed seeds, the learned reward model must rank unseen-object images and the unlabelled pool
well and weight good images far above bad ones; the reward-weighted fine-tune must have learned
from its weights (it fits the pool's good images better, relative to the bad, than the uniform
control: `report["fit"]`), must not fall behind the control or the base on the oracle's
evaluation beyond noise, and must keep the base's drawing quality.

The round repeats bit for bit on one machine (seeded reward training in deterministic mode, seeded
LoRA start; ml/determinism.py), with the two fine-tunes one after another or side by side. Another
CPU sums floats in another order and trains another reward model: at this size (320 evaluation images
per arm) one machine gave base 51.2%, uniform 50.6%, reward 51.9% (reward - base +0.6, 0.2 SE),
quality .807 -> .782, fit-gap margin .0067 (base gap .0136), unseen AUC .919; the next day's machine
base 51.2%, uniform 50.9%, reward 52.2% (+0.9, 0.3 SE), quality .807 -> .781, margin .0057, unseen
AUC .855 (the base, which nothing trains, is the same on both). Before the runs repeated, they
spread from -8.8 to +3.1 points over base and quality .736 to .80 at 160 images per arm, which made
the quality floor fail CI on one run and pass on the next. The evaluation shows no gain at this
size; the default round does (+7.5 to +11.7 points, docs/world.md). Broken once on purpose (tests
pass no longer): weights that do not reach the loss gave a fit-gap margin of .0002 (working:
.0041-.0067); labels shuffled before reward training fail the AUC and weight checks."""

from __future__ import annotations

import json

import pytest

from ml.world import SHIPPED_MODELS
from ml.world.loop import REDUCED, run_world_loop, summary

pytestmark = pytest.mark.slow


def test_reward_weighted_fine_tuning_beats_uniform_and_base(tmp_path):
    report = run_world_loop(REDUCED, SHIPPED_MODELS, tmp_path)
    print(summary(report))  # the figures, for the log (pytest -s or -rA)
    assert json.loads((tmp_path / "report.json").read_text())["gains"] == report["gains"]
    assert (tmp_path / "grid.png").stat().st_size > 0

    rm = report["reward_model"]
    assert rm["unseen"]["auc"] >= 0.80, rm  # the held-out object, which no label showed
    assert rm["unlabelled_pool"]["auc"] >= 0.85, rm
    assert rm["mean_weight"]["good"] - rm["mean_weight"]["bad"] >= 0.5, rm

    # the weighting reached the model: 19x apart between working (.0041) and broken (.0002) weights
    fit = report["fit"]
    assert fit["reward"]["gap"] - fit["uniform"]["gap"] >= 0.15 * fit["base"]["gap"], fit

    # at this size the oracle's evaluation shows no gain to assert (reward - uniform +1.2 points, SE 3;
    # before runs repeated: -3.8 to +6.9); what it must not show is either fine-tune falling behind
    # beyond noise. The fit margin above is what catches broken weighting.
    gains = report["gains"]
    assert gains["reward_vs_uniform"]["points"] >= -2 * gains["reward_vs_uniform"]["se"], gains
    assert gains["reward_vs_base"]["points"] >= -2 * gains["reward_vs_base"]["se"], gains
    # the drawing survives fine-tuning on its own well-rated samples
    assert report["arms"]["reward"]["quality"]["rate"] >= report["arms"]["base"]["quality"]["rate"] - 0.06
