"""Oracle measurements of generated images: aligned shares with standard errors, and arm differences.

Images of one prompt are not independent draws, so every standard error here is clustered by
prompt (the spread of the per-prompt means); differences between two models are paired by image
(same prompt, same seed).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from ml.prompts import CATEGORIES, WORLD_VOCABULARY, Prompt, parse_prompt
from ml.world.oracle import Verdict, judge


def se_clustered(values: np.ndarray, groups: Sequence[str]) -> float:
    """Standard error of the mean of `values`, clustered by group."""
    by: dict[str, list[float]] = {}
    for v, g in zip(values, groups, strict=True):
        by.setdefault(g, []).append(float(v))
    means = np.array([np.mean(v) for v in by.values()])
    if len(means) < 2:
        return float("nan")
    return float(means.std(ddof=1) / math.sqrt(len(means)))


def rate(values: np.ndarray, groups: Sequence[str]) -> dict[str, float]:
    """{rate, n, se} of a 0/1 (or 0-1) array."""
    if not len(values):
        return {"rate": float("nan"), "n": 0, "se": float("nan")}
    return {"rate": float(np.mean(values)), "n": int(len(values)), "se": se_clustered(values, groups)}


def arm_metrics(prompts: Sequence[Prompt], verdicts: Sequence[Verdict],
                trained: Collection[str] | None = None) -> dict[str, Any]:
    """Aligned share overall, per category, per split and per attribute, and drawing quality. With the
    `trained` prompts (what the fine-tune trained on), `by_training` splits the seen prompts into those
    and the new ones: the paper's "seen" are its training prompts; a gain on new prompts generalises."""
    texts = [p.text for p in prompts]
    aligned = np.array([v.aligned for v in verdicts], float)
    out: dict[str, Any] = {"aligned": rate(aligned, texts)}
    if trained is not None:
        out["by_training"] = {}
        for name, keep in (("trained", True), ("new_seen", False)):
            idx = [i for i, p in enumerate(prompts) if p.split == "seen" and (p.text in trained) == keep]
            if idx:
                out["by_training"][name] = rate(aligned[idx], [texts[i] for i in idx])
    for key, values in (("category", CATEGORIES), ("split", ("seen", "unseen"))):
        out[f"by_{key}"] = {}
        for value in values:
            idx = [i for i, p in enumerate(prompts) if getattr(p, key) == value]
            if idx:
                out[f"by_{key}"][value] = rate(aligned[idx], [texts[i] for i in idx])
    out["by_attribute"] = {}
    for attr in ("object", "count", "color", "background"):
        idx = [i for i, v in enumerate(verdicts) if attr in v.checks]
        ok = np.array([verdicts[i].checks[attr] for i in idx], float)
        out["by_attribute"][attr] = rate(ok, [texts[i] for i in idx])
    out["quality"] = rate(np.array([v.quality for v in verdicts]), texts)
    return out


def paired_gain(a: Sequence[Verdict], b: Sequence[Verdict], prompts: Sequence[Prompt]) -> dict[str, float]:
    """aligned(a) - aligned(b) in percentage points, paired by image; SE clustered by prompt; z = gain / SE."""
    d = np.array([float(x.aligned) - float(y.aligned) for x, y in zip(a, b, strict=True)])
    se = se_clustered(d, [p.text for p in prompts])
    mean = float(d.mean()) if len(d) else float("nan")
    z = mean / se if se > 0 else (0.0 if mean == 0 else math.copysign(math.inf, mean))
    return {"points": 100 * mean, "se": 100 * se, "z": z, "n": int(len(d))}


def compare(baseline: Sequence[Any], candidate: Sequence[Any], prompts: Sequence[str]) -> dict[str, Any]:
    """Oracle comparison of two models' images of the same prompts and seeds (pairs in order)."""
    parsed = []
    for t in prompts:
        p = parse_prompt(t, WORLD_VOCABULARY)
        if p is None:
            raise ValueError(f"not a prompt of the shapes world: {t!r}")
        parsed.append(p)
    va, vb = judge(baseline, prompts), judge(candidate, prompts)
    groups: dict[str, Any] = {}
    for key, values in (("category", CATEGORIES), ("split", ("seen", "unseen"))):
        for value in values:
            idx = [i for i, p in enumerate(parsed) if getattr(p, key) == value]
            if idx:
                groups[value] = paired_gain([vb[i] for i in idx], [va[i] for i in idx], [parsed[i] for i in idx])
    return {"baseline": arm_metrics(parsed, va), "candidate": arm_metrics(parsed, vb),
            "gain": paired_gain(vb, va, parsed), "gain_by_group": groups}


def verdict_sentence(gain: dict[str, float], base_rate: float, cand_rate: float, what: str = "fine-tuned model") -> str:
    """What a comparison means, in one sentence a person can act on."""
    pts, z = gain["points"], gain["z"]
    head = (f"The world oracle finds that the {what}'s images show what the prompt says "
            f"{100 * cand_rate:.0f}% of the time, against {100 * base_rate:.0f}% for the baseline "
            f"({pts:+.1f} points, {abs(z):.1f} standard errors).")
    if z >= 3:
        return head + " The feedback loop made the model follow its prompts better."
    if z <= -3:
        return head + " The model got worse at following its prompts: check the labels and training settings."
    return head + " That is within noise: no clear change yet."


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of embeddings (rows): the FID formula,
    ‖μa − μb‖² + tr(Σa + Σb − 2 (Σa Σb)^½), on whatever embedding is given. tr((Σa Σb)^½) is the sum of
    the square roots of the eigenvalues of Σa^½ Σb Σa^½, which is symmetric, so no general matrix
    square root is needed. Compare distances of sets of the same size: the estimate's bias depends on n."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two sets of at least 2 embeddings of one width, not {a.shape} and {b.shape}")
    mu = a.mean(0) - b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(ca)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cb @ root_a), 0, None)).sum()
    return float(mu @ mu + np.trace(ca) + np.trace(cb) - 2 * cross)
