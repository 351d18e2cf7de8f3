"""Ranking metrics in numpy (no scikit-learn dependency)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    # Tied values share the mean of the ranks they occupy.
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_x)) + 1]
    ends = np.r_[starts[1:], len(x)]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return ranks


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U); NaN when only one class is present."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pairwise_accuracy(groups: Sequence[str], labels: np.ndarray, scores: np.ndarray) -> tuple[float, int]:
    """Over all (good, bad) image pairs of the same prompt: share where the good one scores higher
    (ties count half). Returns (accuracy, number of pairs); NaN accuracy when there are no pairs."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    by_group: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by_group[g].append(i)
    wins, pairs = 0.0, 0
    for idx in by_group.values():
        idx_arr = np.asarray(idx)
        good, bad = scores[idx_arr[labels[idx_arr]]], scores[idx_arr[~labels[idx_arr]]]
        if len(good) and len(bad):
            diff = good[:, None] - bad[None, :]
            wins += (diff > 0).sum() + 0.5 * (diff == 0).sum()
            pairs += diff.size
    return (wins / pairs if pairs else float("nan")), pairs
