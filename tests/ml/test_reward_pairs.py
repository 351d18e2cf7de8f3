"""Pairwise votes in the reward model (Bradley-Terry on the vote shares, ml.reward): the loss by hand,
the binary path untouched without pairs, the split of pairs, and pairs that teach a ranking."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ml.reward import PairRow, RewardConfig, pair_loss, score, train_reward
from ml.synthetic import make_synthetic

FAST = dict(hidden=128, batch_size=256, max_epochs=25, patience=4, pc_fraction=1.0, precision="fp32", device="cpu")


def test_pair_loss_by_hand():
    la, lb = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 0.0])
    share, votes = torch.tensor([8 / 9, 0.5]), torch.tensor([9.0, 3.0])
    tau = 2.0

    def bce(x, y):
        p = 1 / (1 + math.exp(-x))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    expected = (9 * bce(1.5 / tau, 8 / 9) + 3 * bce(-1.0 / tau, 0.5)) / 12
    assert pair_loss(la, lb, share, votes, tau).item() == pytest.approx(expected, rel=1e-6)


@pytest.fixture(scope="module")
def data():
    return make_synthetic(1200, dim=32, n_prompts=60, seed=3, splits=("seen", "unseen"))


def _pairs(data, rows, votes=9, flip=0.1, seed=0):
    """Voted pairs of a good and a bad image of one prompt (the good one wins about 1 - flip of votes)."""
    rng = np.random.default_rng(seed)
    by: dict[str, dict[str, list[str]]] = {}
    for r in rows:
        by.setdefault(r["prompt"], {"good": [], "bad": []})[r["label"]].append(r["image_key"])
    out = []
    for prompt, g in by.items():
        for a, b in zip(g["good"], g["bad"], strict=False):
            k = int(rng.binomial(votes, 1 - flip))
            out.append(PairRow(a, b, prompt, k / votes, votes) if rng.random() < 0.5
                       else PairRow(b, a, prompt, (votes - k) / votes, votes))
    return out


def test_without_pairs_training_is_unchanged(data):
    cfg = RewardConfig(**{**FAST, "max_epochs": 3, "min_steps": 0})
    a = train_reward(cfg, data.rows, data.image_vectors, data.embed_text)
    b = train_reward(cfg, data.rows, data.image_vectors, data.embed_text, pairs=[])
    # the same run (up to the float noise of thread scheduling, which two runs without pairs show too)
    assert [h["val_mse"] for h in a.history] == pytest.approx([h["val_mse"] for h in b.history], abs=1e-6)
    assert "pairs" not in a.metrics and a.n_pairs_train == 0
    rows = data.rows[:40]
    img = np.stack([data.image_vectors[r["image_key"]] for r in rows])
    txt = data.embed_text([r["prompt"] for r in rows])
    assert np.allclose(score(a.model, img, txt), score(b.model, img, txt), atol=1e-5)


def test_pairs_follow_the_split_and_teach_the_ranking(data):
    """Few binary labels plus many voted pairs on other images: the model with pairs ranks the held-out
    pairs (unseen prompts included) better than the one without; a pair never crosses the split."""
    rows = data.rows
    few = rows[::8]  # the binary labels
    others = [r for i, r in enumerate(rows) if i % 8]
    pairs = _pairs(data, others)
    cfg = RewardConfig(**{**FAST, "max_epochs": 8, "min_steps": 200})
    without = train_reward(cfg, few, data.image_vectors, data.embed_text)
    with_pairs = train_reward(cfg, few, data.image_vectors, data.embed_text, pairs=pairs)
    assert with_pairs.n_pairs_train + with_pairs.n_pairs_val == len(pairs)
    m = with_pairs.metrics["pairs"]
    assert m["n"] == with_pairs.n_pairs_val > 0 and m["unseen"]["n"] > 0
    # the same held-out pairs, scored by both models
    val = [p for p in pairs if p.prompt in {r["prompt"] for r in rows} and
           any(w in p.prompt for w in ("wol", "bear", "tiger", "rabbit", "rose"))]
    assert val

    def acc(model):
        ia = np.stack([data.image_vectors[p.image_a] for p in val])
        ib = np.stack([data.image_vectors[p.image_b] for p in val])
        txt = data.embed_text([p.prompt for p in val])
        sa, sb = score(model, ia, txt), score(model, ib, txt)
        return float(np.mean([(x > y) == (p.share_a > 0.5) for x, y, p in zip(sa, sb, val, strict=True)]))

    assert acc(with_pairs.model) > acc(without.model) + 0.02
    assert m["unseen"]["accuracy"] == pytest.approx(acc(with_pairs.model), abs=0.05)


def test_bad_pairs_are_errors(data):
    cfg = RewardConfig(**{**FAST, "max_epochs": 1, "min_steps": 0})
    r = data.rows[0]
    with pytest.raises(ValueError, match="shares"):
        train_reward(cfg, data.rows, data.image_vectors, data.embed_text,
                     pairs=[PairRow(r["image_key"], r["image_key"], r["prompt"], 1.5, 9)])
    with pytest.raises(KeyError):
        train_reward(cfg, data.rows, data.image_vectors, data.embed_text,
                     pairs=[{"image_a": "nope", "image_b": r["image_key"], "prompt": r["prompt"], "share_a": 1.0}])
