"""Rater reliability: each annotator's confusion and each image's posterior label (Dawid and Skene, 1979).

Raters are not equally good. With several labels per image (the service's K) and gold images, the
two-class Dawid-Skene model estimates, by EM, for every rater a *sensitivity* (P(says good | the image
is good)) and a *specificity* (P(says bad | it is bad)), and for every image the posterior
P(good | all its labels). A careless rater (sensitivity + specificity near 1) then carries no weight,
and an adversarial one (near 0) is read backwards, where a majority vote counts both like the best.

- Gold images, whose truth is known, are clamped to it: they anchor each rater's confusion.
- A Beta(a, a) prior on each rater's rates (`smoothing`) keeps a rater with few labels near "as good
  as the rest", not at 0% or 100% after three answers.
- Images with a single label get the posterior that its rater's confusion implies, so one rater's
  "good" from a reliable rater counts more than from a coin-flipper.

Used by the reward job (the loss's target is the posterior instead of the raw label) and by the
admin annotator page; `ml.world` measures what it buys against the oracle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class RaterEstimate:
    sensitivity: float  # P(says good | good)
    specificity: float  # P(says bad | bad)
    n: int  # labels this rater gave

    @property
    def informativeness(self) -> float:
        """Youden's J = sensitivity + specificity - 1: 1 a perfect rater, 0 a coin, -1 one who always lies."""
        return self.sensitivity + self.specificity - 1.0


@dataclass
class Reliability:
    posterior: dict[Any, float]  # item -> P(good)
    raters: dict[Any, RaterEstimate]
    prior_good: float
    iterations: int
    converged: bool
    log_likelihood: float
    majority: dict[Any, float] = field(default_factory=dict)  # item -> share of "good" labels


def dawid_skene(
    labels: Sequence[tuple[Any, Any, bool | int]],
    gold: Mapping[Any, bool] | None = None,
    smoothing: float = 2.0,
    max_iter: int = 200,
    tol: float = 1e-6,
) -> Reliability:
    """EM for the two-class Dawid-Skene model over `(item, rater, says_good)` triples.

    `gold` clamps the truth of the items it names. `smoothing` is the pseudo-count a of the Beta(a, a)
    prior on each rater's sensitivity and specificity (added to both outcomes; 0: maximum likelihood).
    Raises ValueError on an empty input."""
    if not labels:
        raise ValueError("no labels to estimate reliability from")
    if smoothing < 0:
        raise ValueError("smoothing must be >= 0")
    gold = dict(gold or {})
    items = list(dict.fromkeys(i for i, _, _ in labels))
    raters = list(dict.fromkeys(r for _, r, _ in labels))
    ii = {x: k for k, x in enumerate(items)}
    rr = {x: k for k, x in enumerate(raters)}
    it = np.array([ii[i] for i, _, _ in labels])
    ra = np.array([rr[r] for _, r, _ in labels])
    y = np.array([1.0 if bool(v) else 0.0 for _, _, v in labels])
    n_items, n_raters = len(items), len(raters)

    # start from the majority (share of "good" per item), gold clamped
    good_votes = np.bincount(it, weights=y, minlength=n_items)
    counts = np.bincount(it, minlength=n_items).astype(float)
    majority = good_votes / counts
    clamp = np.full(n_items, np.nan)
    for item, truth in gold.items():
        if item in ii:
            clamp[ii[item]] = 1.0 if truth else 0.0
    has_gold = ~np.isnan(clamp)
    q = np.where(has_gold, clamp, majority)  # P(good) per item
    eps = 1e-6
    gold_label = has_gold[it]
    if gold_label.any():
        # start from what gold says of each rater, not from the majority: a crowd with more liars than
        # honest raters would otherwise settle on the mirrored solution, which fits the labels as well
        q = _e_step(
            it, ra, y, n_items,
            prior=float(np.clip(clamp[has_gold].mean(), eps, 1 - eps)),
            sens=_rate(ra, y, np.nan_to_num(clamp)[it], gold_label, n_raters, smoothing, good=True, eps=eps),
            spec=_rate(ra, y, np.nan_to_num(clamp)[it], gold_label, n_raters, smoothing, good=False, eps=eps),
        )[0]
        q = np.where(has_gold, clamp, q)

    ll_prev = -math.inf
    converged = False
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        # M-step: prior and each rater's rates from the soft truth
        prior = float(np.clip(q.mean(), eps, 1 - eps))
        every = np.ones(len(y), bool)
        sens = _rate(ra, y, q[it], every, n_raters, smoothing, good=True, eps=eps)
        spec = _rate(ra, y, q[it], every, n_raters, smoothing, good=False, eps=eps)
        # E-step: P(good) per item from its labels
        q, ll = _e_step(it, ra, y, n_items, prior, sens, spec)
        q = np.where(has_gold, clamp, q)
        if abs(ll - ll_prev) < tol * max(1.0, abs(ll)):
            converged = True
            break
        ll_prev = ll

    n_per = np.bincount(ra, minlength=n_raters)
    return Reliability(
        posterior={items[k]: float(q[k]) for k in range(n_items)},
        raters={
            raters[k]: RaterEstimate(float(sens[k]), float(spec[k]), int(n_per[k])) for k in range(n_raters)
        },
        prior_good=prior,
        iterations=n_iter,
        converged=converged,
        log_likelihood=ll,
        majority={items[k]: float(majority[k]) for k in range(n_items)},
    )


def _rate(
    ra: np.ndarray, y: np.ndarray, qg: np.ndarray, use: np.ndarray, n_raters: int, smoothing: float,
    good: bool, eps: float,
) -> np.ndarray:
    """Per rater, P(says good | good) (good=True) or P(says bad | bad), over the labels in `use`,
    with `qg` the soft truth of each label's item and Beta(smoothing, smoothing) pseudo-counts."""
    w = (qg if good else 1 - qg) * use
    hit = y if good else 1 - y
    rate = (np.bincount(ra, weights=w * hit, minlength=n_raters) + smoothing) / (
        np.bincount(ra, weights=w, minlength=n_raters) + 2 * smoothing
    )
    return np.clip(rate, eps, 1 - eps)


def _e_step(
    it: np.ndarray, ra: np.ndarray, y: np.ndarray, n_items: int, prior: float, sens: np.ndarray, spec: np.ndarray
) -> tuple[np.ndarray, float]:
    """P(good) per item from the log-odds its labels add up to, and the data's log-likelihood."""
    lg = np.where(y > 0.5, np.log(sens[ra]), np.log(1 - sens[ra]))
    lb = np.where(y > 0.5, np.log(1 - spec[ra]), np.log(spec[ra]))
    log_good = math.log(prior) + np.bincount(it, weights=lg, minlength=n_items)
    log_bad = math.log(1 - prior) + np.bincount(it, weights=lb, minlength=n_items)
    top = np.maximum(log_good, log_bad)
    ll = float(np.sum(top + np.log(np.exp(log_good - top) + np.exp(log_bad - top))))
    return 1.0 / (1.0 + np.exp(np.clip(log_bad - log_good, -50, 50))), ll
