"""The active-selection rule of the world experiment (ml.world.active): what it picks and how the
label saving is read off the curves. The measured saving itself is in docs/world.md."""

from __future__ import annotations

import numpy as np
import pytest

from ml.world.active import _auc_at, select


def test_uncertain_picks_the_scores_nearest_half_with_a_cap_per_prompt():
    scores = np.array([0.5, 0.51, 0.49, 0.9, 0.1, 0.52, 0.45, 0.99])
    prompt_of = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    unlabelled = np.ones(8, bool)
    unlabelled[1] = False  # already labelled: never picked again
    rng = np.random.default_rng(0)
    picked = select("uncertain", scores, unlabelled, prompt_of, 3, cap=1, rng=rng)
    assert sorted(picked.tolist()) == [0, 5, 6]  # the most uncertain of each prompt, one each
    picked = select("uncertain", scores, unlabelled, prompt_of, 3, cap=2, rng=rng)
    assert sorted(picked.tolist()) == [0, 2, 5]
    rand = select("random", scores, unlabelled, prompt_of, 7, cap=1, rng=rng)
    assert sorted(rand.tolist()) == [0, 2, 3, 4, 5, 6, 7]
    with pytest.raises(ValueError, match="unknown strategy"):
        select("greedy", scores, unlabelled, prompt_of, 1, cap=1, rng=rng)


def test_labels_to_reach_an_auc_are_interpolated_between_steps():
    curve = [(100, 0.80), (200, 0.86), (300, 0.90)]
    assert _auc_at(curve, 0.80) == 100
    assert _auc_at(curve, 0.83) == 150
    assert _auc_at(curve, 0.90) == 300
    assert _auc_at(curve, 0.95) is None
