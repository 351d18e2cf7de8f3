"""Rater reliability (Dawid-Skene): it must find who is reliable and beat the majority vote."""

from __future__ import annotations

import numpy as np
import pytest

from ml.reliability import dawid_skene


def _crowd(error: dict[str, float], n_items: int = 600, per_item: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    truth = rng.random(n_items) < 0.5
    names = list(error)
    labels = []
    for i, t in enumerate(truth):
        for r in rng.choice(names, per_item, replace=False):
            labels.append((i, str(r), bool(t) != (rng.random() < error[str(r)])))
    return truth, labels


# 30% noisy (25% flips), one adversary who always lies, the rest accurate: the crowd
CROWD = {**{f"ok{i}": 0.02 for i in range(6)}, "noisy0": 0.25, "noisy1": 0.25, "noisy2": 0.25, "adversary": 1.0}


def test_recovers_each_raters_confusion_and_reads_the_adversary_backwards():
    truth, labels = _crowd(CROWD)
    rel = dawid_skene(labels)
    assert rel.converged
    for name, err in CROWD.items():
        est = rel.raters[name]
        assert est.sensitivity == pytest.approx(1 - err, abs=0.08), name
        assert est.specificity == pytest.approx(1 - err, abs=0.08), name
    assert rel.raters["adversary"].informativeness < -0.8
    assert rel.raters["ok0"].informativeness > 0.85


def test_posterior_beats_the_majority_vote():
    truth, labels = _crowd(CROWD)
    rel = dawid_skene(labels)
    post = np.array([rel.posterior[i] for i in range(len(truth))])
    maj = np.array([rel.majority[i] for i in range(len(truth))])
    acc_post = ((post > 0.5) == truth).mean()
    acc_maj = ((maj > 0.5) == truth).mean()
    assert acc_post > 0.97
    assert acc_post > acc_maj + 0.03  # the majority is fooled where the adversary and a noisy rater agree


def test_gold_clamps_the_truth_and_fixes_which_way_is_up():
    # a crowd where most labels come from liars: without gold, EM may settle on the mirrored
    # solution; gold names the truth of some images and anchors it
    liars = {"l0": 0.9, "l1": 0.9, "l2": 0.9, "h0": 0.05}
    truth, labels = _crowd(liars, n_items=400, per_item=2, seed=3)
    gold = {i: bool(truth[i]) for i in range(40)}
    rel = dawid_skene(labels, gold=gold)
    assert all(rel.posterior[i] == float(truth[i]) for i in range(40))
    post = np.array([rel.posterior[i] for i in range(len(truth))])
    assert ((post > 0.5) == truth).mean() > 0.9
    assert rel.raters["h0"].informativeness > 0.7
    assert rel.raters["l0"].informativeness < -0.6


def test_a_rater_with_few_labels_stays_near_the_prior_not_at_an_extreme():
    truth, labels = _crowd({"a": 0.05, "b": 0.05, "c": 0.05}, n_items=300, per_item=2)
    labels.append((0, "newcomer", bool(truth[0])))
    rel = dawid_skene(labels, smoothing=2.0)
    new = rel.raters["newcomer"]
    assert new.n == 1
    assert 0.5 < new.sensitivity < 0.95 or 0.5 < new.specificity < 0.95


def test_single_labels_are_weighted_by_their_raters_reliability():
    truth, labels = _crowd({"good": 0.02, "coin": 0.5, "g2": 0.02}, n_items=500, per_item=2, seed=1)
    extra = len(truth)
    labels += [(extra, "good", True), (extra + 1, "coin", True)]
    rel = dawid_skene(labels)
    assert rel.posterior[extra] > 0.9
    assert 0.3 < rel.posterior[extra + 1] < 0.7


def test_rejects_empty_input_and_negative_smoothing():
    with pytest.raises(ValueError, match="no labels"):
        dawid_skene([])
    with pytest.raises(ValueError, match="smoothing"):
        dawid_skene([(1, "a", True)], smoothing=-1)


def test_the_world_crowd_gives_the_reward_three_label_sets_and_the_posterior_beats_the_majority():
    from ml.world.loop import WorldLoopConfig, crowd_labels
    from ml.world.raters import mixed_panel

    panel = mixed_panel(10, seed=0)
    kinds = [r.name.split("-")[0] for r in panel]
    assert kinds.count("adversarial") == 1 and kinds.count("noisy") == 3 and kinds.count("lenient") == 1
    cfg = WorldLoopConfig(panel="mixed", pool_per_prompt=8, labels_per_prompt=8, raters_per_image=3)
    rng = np.random.default_rng(0)
    n = 8 * 60
    truth = (rng.random(n) < 0.45).astype(float)
    req = [(f"prompt {i // 8}", i) for i in range(n)]
    labelled = list(range(n))
    sets, report, first = crowd_labels(cfg, labelled, req, truth)
    assert len(sets["reward"]) == 3 * n and len(sets["reliable"]) == n and len(sets["clean"]) == n
    assert len(first) == n and report["gold"] == 60
    assert all(0.0 <= r["target"] <= 1.0 for r in sets["reliable"])
    assert [r["label"] == "good" for r in sets["clean"]] == [bool(t) for t in truth]
    assert report["posterior_accuracy"] > report["majority_accuracy"] + 0.02, report
    adversary = next(r for r in report["panel"] if r["name"].startswith("adversarial"))
    assert adversary["estimated"]["sensitivity"] + adversary["estimated"]["specificity"] < 0.4
    with pytest.raises(ValueError, match="raters_per_image"):
        crowd_labels(WorldLoopConfig(panel="mixed", raters_per_image=11), labelled, req, truth)
