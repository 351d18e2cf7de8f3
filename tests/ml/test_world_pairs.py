"""The pairs experiment of the shapes world (ml.world.pairs): how raters vote, and one tiny run of
`t2i-feedback ml world-pairs` end to end. The measured comparison itself is in docs/world.md."""

from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner

from ml.world.pairs import TINY, PairsConfig, draw_pairs, simulate_votes


def test_raters_vote_for_the_aligned_image_then_for_the_cleaner_drawing():
    truth = [True, False, True, True, False, False]
    quality = [0.8, 0.9, 0.9, 0.5, 0.70, 0.72]
    pairs = [(0, 1), (1, 0), (2, 3), (4, 5)]
    rng = random.Random(0)
    exact = simulate_votes(truth, quality, pairs, 9, 0.0, rng)
    assert exact[:3] == [9, 0, 9]  # aligned beats misaligned whatever the drawing; quality breaks a tie
    assert 0 <= exact[3] <= 9  # qualities within QUALITY_TIE: a coin per rater
    noisy = [simulate_votes(truth, quality, [(0, 1)], 9, 0.2, rng)[0] for _ in range(400)]
    assert 0.75 < sum(noisy) / (9 * 400) < 0.85  # each vote is wrong with probability 0.2


def test_pairs_are_disjoint_images_of_one_prompt():
    pairs = draw_pairs(per_prompt=8, n_prompts=3, pairs_per_prompt=4, rng=random.Random(1))
    assert len(pairs) == 12
    for p in range(3):
        mine = [i for a, b in pairs[4 * p: 4 * p + 4] for i in (a, b)]
        assert sorted(mine) == list(range(8 * p, 8 * p + 8))
    with pytest.raises(ValueError, match="pairs_per_prompt"):
        PairsConfig(pool_per_prompt=8, labels_per_prompt=4, pairs_per_prompt=5)
    with pytest.raises(ValueError, match="odd"):
        PairsConfig(votes_per_pair=8)


@pytest.mark.slow
def test_world_pairs_command_runs_a_tiny_round(tmp_path):
    from ml.cli import cli

    out = tmp_path / "run"
    args = ["world-pairs", "--out", str(out), "--pool-cache", str(tmp_path / "pool.pkl")]
    for name in ("train_prompts", "pool_per_prompt", "labels_per_prompt", "pairs_per_prompt", "eval_prompts",
                 "eval_images_per_prompt", "reward_val_prompts", "reward_val_images", "reward_min_steps",
                 "finetune_steps", "finetune_batch", "pretrain_pairs", "finetune_workers"):
        args += [f"--{name.replace('_', '-')}", str(getattr(TINY, name))]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert set(report["arms"]) == {"base", "reward", "pairs", "dpo"}
    n = TINY.eval_prompts * TINY.eval_images_per_prompt
    assert all(report["arms"][a]["aligned"]["n"] == n for a in report["arms"])
    assert 0 < report["arms"]["base"]["quality"]["rate"] <= 1
    assert {"reward_vs_base", "pairs_vs_base", "dpo_vs_base", "pairs_vs_reward", "dpo_vs_reward"} <= set(
        report["gains"])
    pairs = TINY.train_prompts * TINY.pairs_per_prompt
    assert report["label_budget"] == {
        "reward": {"binary_labels": TINY.train_prompts * TINY.labels_per_prompt, "pairs": 0, "votes": 0},
        "pairs": {"binary_labels": TINY.train_prompts * TINY.labels_per_prompt, "pairs": pairs, "votes": 9 * pairs},
        "dpo": {"binary_labels": 0, "pairs": pairs, "votes": 9 * pairs},
    }
    rm = report["reward_models"]
    # every pair is trained on or validated (the seen validation prompts' pairs), none twice
    assert rm["reward"]["n_pairs_train"] == 0 and rm["reward"]["validation_pairs"] is None
    trained, validated = rm["pairs"]["n_pairs_train"], rm["pairs"]["validation_pairs"]["n"]
    assert trained > 0 and trained + validated == pairs
    # nine votes a pair, each right 90% of the time: the majority names the aligned image of a mixed pair
    if report["pool"]["mixed_pairs"]:
        assert report["pool"]["majority_right_on_mixed"] >= 0.9
        assert report["pool"]["vote_share_for_aligned_on_mixed"] > 0.75
    assert (tmp_path / "pool.pkl").is_file()
    assert all(k in report["seconds"] for k in ("generate_pool", "train_reward_pairs", "finetune_dpo", "evaluate"))
