"""The science regression test: a reduced `world-loop` round on the shipped world models.

With fixed seeds (same machine, same figures), the learned reward model must rank unseen-object
images and the unlabelled pool well and weight good images far above bad ones, and the
reward-weighted fine-tune must beat the uniform-weight control and not fall below the base.

Measured at this size (docs/world.md): reward - uniform +6.9 points (1.5 SE), reward - base +3.1
(0.8 SE), unseen AUC .876; a second run on the same machine under load gave reward - base -1.3
(thread scheduling changes float sums), so only reward - uniform is asserted with a margin. The fine-tune margins are within a few standard errors of 160 images
per arm: they catch a broken weighting (weights that no longer reach the loss make the reward arm
the uniform arm, a gain of exactly 0) and a broken reward model (AUC and weight checks), not a
small loss of effect. The default round's larger figures are in docs/world.md."""

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

    gains = report["gains"]
    assert gains["reward_vs_uniform"]["points"] >= 3.0, gains
    # and does not fall below the base beyond noise (two runs on this machine: +3.1 and -1.3, SE 4-5)
    assert gains["reward_vs_base"]["points"] >= -2 * gains["reward_vs_base"]["se"], gains
    # the drawing survives fine-tuning on its own well-rated samples (measured .807 against .831;
    # the uniform arm, which also learns from the bad ones, fell to .729)
    assert report["arms"]["reward"]["quality"]["rate"] >= report["arms"]["base"]["quality"]["rate"] - 0.06
