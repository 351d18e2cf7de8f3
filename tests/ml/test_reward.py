import math

import numpy as np
import pytest
import torch

from ml.metrics import pairwise_accuracy, roc_auc
from ml.reward import (
    RewardConfig,
    RewardMLP,
    load_reward,
    mse_loss,
    prompt_classification_loss,
    save_reward,
    score,
    split_prompts,
    train_reward,
)
from ml.synthetic import make_synthetic

FAST = dict(
    hidden=128, batch_size=256, max_epochs=25, patience=4, pc_fraction=1.0, precision="fp32", device="cpu"
)


def test_mse_loss_by_hand():
    s, y = torch.tensor([0.9, 0.2, 0.5]), torch.tensor([1.0, 0.0, 0.0])
    assert mse_loss(s, y).item() == pytest.approx((0.01 + 0.04 + 0.25) / 3)


def test_prompt_classification_loss_by_hand():
    s = torch.tensor([[0.8, 0.2, 0.5], [0.1, 0.9, 0.3]])
    t = 2.0

    def ce(row):
        e = [math.exp(x / t) for x in row]
        return -math.log(e[0] / sum(e))

    expected = (ce([0.8, 0.2, 0.5]) + ce([0.1, 0.9, 0.3])) / 2
    assert prompt_classification_loss(s, t).item() == pytest.approx(expected, rel=1e-6)


def test_split_first_layer_is_the_mlp_on_the_concatenation():
    torch.manual_seed(0)
    m = RewardMLP(6, 4, hidden=16)
    x, z = torch.randn(5, 6), torch.randn(5, 4)
    w = torch.cat([m.image_in.weight, m.text_in.weight], dim=1)
    h = torch.relu(torch.cat([x, z], 1) @ w.T + m.image_in.bias)
    h = torch.relu(m.hidden(h))
    assert torch.allclose(m(x, z), torch.sigmoid(m.out(h).squeeze(-1)), atol=1e-6)


def test_auc_matches_pair_counting():
    rng = np.random.default_rng(0)
    y = rng.random(200) < 0.4
    s = np.round(rng.random(200), 1)  # with ties
    pos, neg = s[y], s[~y]
    brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (
        len(pos) * len(neg)
    )
    assert roc_auc(y, s) == pytest.approx(brute)
    assert math.isnan(roc_auc(np.ones(3), np.arange(3)))


def test_pairwise_accuracy_counts_within_prompt_pairs_only():
    groups = ["a", "a", "a", "b", "b"]
    labels = np.array([1, 0, 0, 1, 0])
    scores = np.array([0.5, 0.4, 0.6, 0.1, 0.9])
    acc, n = pairwise_accuracy(groups, labels, scores)
    assert n == 3 and acc == pytest.approx(1 / 3)


def test_split_is_by_prompt():
    prompts = [f"p{i % 30}" for i in range(300)]
    val = split_prompts(prompts, 0.2, seed=1)
    assert len(val) == 6 and val == split_prompts(prompts, 0.2, seed=1)


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic(3000, dim=32, n_prompts=150, seed=0)


@pytest.fixture(scope="module")
def trained(synthetic):
    rows = synthetic.rows + [{"image_key": "img0", "prompt": synthetic.rows[0]["prompt"], "label": "skip"}]
    return train_reward(RewardConfig(**FAST), rows, synthetic.image_vectors, synthetic.embed_text)


def test_training_learns_the_rule_and_beats_clip_score(trained):
    m = trained.metrics
    assert m["accuracy"] > 0.8 and m["auc"] > 0.9
    assert m["pairwise_accuracy"] > 0.9
    assert m["auc"] > m["clip_auc"] + 0.05
    assert m["pairwise_accuracy"] > m["clip_pairwise_accuracy"]
    assert m["prompt_classification_accuracy"] > 0.5  # chance is 1/10
    assert trained.n_skipped == 1 and trained.n_train + trained.n_val == 3000
    assert trained.history[0]["val_mse"] > min(h["val_mse"] for h in trained.history)
    groups = m["by_group"]
    assert {"seen", "count"} <= set(groups)
    assert sum(groups[s]["n"] for s in ("seen", "unseen") if s in groups) == trained.n_val
    assert (
        sum(groups[c]["n"] for c in ("count", "color", "background", "combination") if c in groups)
        == trained.n_val
    )


def test_no_prompt_on_both_sides_of_the_split(synthetic):
    val = split_prompts([r["prompt"] for r in synthetic.rows], 0.15, 0)
    train = {r["prompt"] for r in synthetic.rows} - val
    assert val and train and not (val & train)


def test_save_load_round_trip_gives_identical_scores(trained, synthetic, tmp_path):
    rows = synthetic.rows[:50]
    img = np.stack([synthetic.image_vectors[r["image_key"]] for r in rows])
    txt = synthetic.embed_text([r["prompt"] for r in rows])
    before = score(trained.model, img, txt)
    loaded = load_reward(save_reward(trained.model, tmp_path / "rm"), device="cpu")
    assert np.array_equal(before, score(loaded, img, txt))
    assert loaded.config == trained.model.config
    assert ((before > 0) & (before < 1)).all()


def test_same_labels_and_seed_give_the_same_model_on_every_run():
    """Trained twice on one label set with one seed, the reward model's weights are identical (the
    backward of indexing used to add in thread order on CPU: two world rounds of one seed weighted
    their pools differently)."""
    data = make_synthetic(1500, dim=512, n_prompts=80, seed=1)  # CLIP's width: smaller ones added in order anyway
    runs = [train_reward(RewardConfig(hidden=256, max_epochs=6, patience=6, device="cpu"), data.rows,
                         data.image_vectors, data.embed_text) for _ in range(2)]
    a, b = (r.model.module.state_dict() for r in runs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0].history == runs[1].history


def test_bad_labels_and_missing_embeddings_are_errors(synthetic):
    with pytest.raises(ValueError, match="unknown labels"):
        train_reward(
            RewardConfig(**FAST),
            [{"image_key": "img0", "prompt": "Two dogs", "label": "meh"}],
            synthetic.image_vectors,
            synthetic.embed_text,
        )
    with pytest.raises(KeyError):
        train_reward(
            RewardConfig(**FAST),
            [{"image_key": "nope", "prompt": "Two dogs", "label": "good"}],
            synthetic.image_vectors,
            synthetic.embed_text,
        )


@pytest.fixture(scope="module")
def with_unseen():
    return make_synthetic(1200, dim=32, n_prompts=60, seed=1, splits=("seen", "unseen"))


def _unseen_prompts(data):
    return {r["prompt"] for r in data.rows if any(w in r["prompt"] for w in ("wol", "bear", "tiger", "rabbit", "rose"))}


def test_validation_holds_out_every_unseen_prompt_and_stops_on_the_seen_ones(with_unseen):
    """The paper's unseen accuracy: unseen-object prompts are validation only, never trained on, and
    early stopping does not look at them (their labels change nothing in the model)."""
    data = with_unseen
    unseen = _unseen_prompts(data)
    n_unseen = sum(r["prompt"] in unseen for r in data.rows)
    assert len(unseen) == 30 and n_unseen > 0
    cfg = RewardConfig(**{**FAST, "max_epochs": 6, "min_steps": 0})
    r = train_reward(cfg, data.rows, data.image_vectors, data.embed_text)
    assert r.n_val_unseen == n_unseen and r.n_val > n_unseen  # unseen + a seen share
    assert r.n_train == len(data.rows) - r.n_val
    assert r.metrics["by_group"]["unseen"]["n"] == n_unseen
    assert r.metrics["validation"]["unseen_prompts"] == 30 and r.metrics["validation"]["early_stopping_prompts"] > 0
    flipped = [{**row, "label": {"good": "bad", "bad": "good"}[row["label"]]} if row["prompt"] in unseen else row
               for row in data.rows]
    r2 = train_reward(cfg, flipped, data.image_vectors, data.embed_text)
    assert r2.best_epoch == r.best_epoch and len(r2.history) == len(r.history)
    assert [h["val_mse"] for h in r2.history] == pytest.approx([h["val_mse"] for h in r.history], abs=1e-6)
    seen_rows = [row for row in data.rows if row["prompt"] not in unseen][:50]
    img = np.stack([data.image_vectors[row["image_key"]] for row in seen_rows])
    txt = data.embed_text([row["prompt"] for row in seen_rows])
    assert np.allclose(score(r.model, img, txt), score(r2.model, img, txt), atol=1e-5)
    # the old behaviour stays available: unseen prompts in the random split like any other
    mixed = train_reward(RewardConfig(**{**FAST, "max_epochs": 1, "hold_out_unseen": False}), data.rows,
                         data.image_vectors, data.embed_text)
    assert mixed.n_val_unseen == 0 and mixed.n_train > r.n_train


def test_explicit_validation_prompts(with_unseen):
    synthetic = with_unseen
    unseen = _unseen_prompts(synthetic)
    cfg = RewardConfig(**{**FAST, "max_epochs": 1})
    r = train_reward(cfg, synthetic.rows, synthetic.image_vectors, synthetic.embed_text, val_prompts=unseen)
    assert r.n_val == sum(row["prompt"] in unseen for row in synthetic.rows) > 0
    with pytest.raises(ValueError, match="nothing left to train"):
        train_reward(
            cfg,
            synthetic.rows[:10],
            synthetic.image_vectors,
            synthetic.embed_text,
            val_prompts={row["prompt"] for row in synthetic.rows},
        )
    with pytest.raises(ValueError, match="at least 2"):
        train_reward(
            RewardConfig(**{**FAST, "n_prompts": 1}),
            synthetic.rows,
            synthetic.image_vectors,
            synthetic.embed_text,
        )
