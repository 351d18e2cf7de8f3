"""Several rounds in the shapes world (ml.world.rounds): each round starts from the model of the round
before, the reward learns from every label so far, and the fidelity guard is computed against the base.
The measured rounds are in docs/world.md; here a very small run checks the wiring."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ml.world import SHIPPED_MODELS
from ml.world.measure import frechet_distance
from ml.world.rounds import RoundsConfig, run_world_rounds, summary


def test_frechet_distance_is_zero_for_one_set_and_grows_with_a_shift_and_a_spread():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 6))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    # two Gaussians: ‖δ‖² for a shift, d (σ − 1)² for a spread
    assert frechet_distance(a, a + 0.5) == pytest.approx(6 * 0.25, rel=1e-6)
    assert frechet_distance(a, 3 * a) == pytest.approx(6 * 4.0, rel=0.05)
    with pytest.raises(ValueError, match="one width"):
        frechet_distance(a, a[:, :3])


def test_rounds_config_refuses_what_rounds_cannot_do():
    with pytest.raises(ValueError, match="at least 1"):
        RoundsConfig(rounds=0)
    with pytest.raises(ValueError, match="'all' or 'last'"):
        RoundsConfig(pools="some")
    with pytest.raises(ValueError, match="world-loop"):
        RoundsConfig(panel="mixed")


@pytest.mark.slow
def test_each_round_continues_the_last_and_learns_from_every_label(tmp_path):
    config = RoundsConfig(rounds=2, train_prompts=4, labels_per_prompt=4, pool_per_prompt=6, eval_prompts=4,
                          eval_images_per_prompt=2, reward_val_prompts=4, reward_val_images=2, finetune_steps=3,
                          pretrain_pairs=16, distance_images=32, finetune_workers=1, grid_prompts=2,
                          reward_min_steps=100)
    report = run_world_rounds(config, SHIPPED_MODELS, tmp_path)
    rounds = report["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    assert [r["labels"] for r in rounds] == [16, 32]  # new labels every round, all of them used
    assert [r["pool_images"] for r in rounds] == [24, 48]  # 'all' pools so far
    # round 2 of each chain continued round 1's adapter; round 1 started from the base
    for chain in ("reward", "uniform"):
        metas = [json.loads(next((tmp_path / f"round-{k}" / f"finetune-{chain}").glob("checkpoint-*"))
                            .joinpath("finetune.json").read_text()) for k in (1, 2)]
        first = next((tmp_path / "round-1" / f"finetune-{chain}").glob("checkpoint-*"))
        assert metas[0]["config"]["init_adapter"] is None
        assert metas[1]["config"]["init_adapter"] == str(first)
    base = report["base"]
    assert base["distance"] > 0 and 0 < base["quality"]["rate"] <= 1
    for r in rounds:
        for chain in ("reward", "uniform"):
            g = r["guard"][chain]
            assert g["distance_ratio"] == pytest.approx(g["distance"] / base["distance"])
            assert g["within"] == (g["quality_drop"] <= 0.03 and g["distance_ratio"] <= 1.5)
            assert r["arms"][chain]["aligned"]["n"] == 8
    assert "reward_vs_round1" in rounds[1]["gains"] and "reward_vs_round1" not in rounds[0]["gains"]
    assert (tmp_path / "grid.png").stat().st_size > 0
    assert json.loads((tmp_path / "rounds.json").read_text())["rounds"][1]["labels"] == 32
    assert "round 2 reward" in summary(report)
