"""What to label next, measured in the shapes world: uncertainty-chosen labels against random ones.

The base model draws a pool (training prompts × `pool_per_prompt`); the oracle knows every image's
truth. Both strategies start from the same random seed set of labels and add `batch` labels a step:
- random: any unlabelled images, as the paper chose them;
- uncertain: the unlabelled images the current reward model is least sure of (score nearest ½),
  at most `per_prompt_cap` per prompt a step so one confusing prompt does not take the batch.
After every step a reward model is trained on the labels so far and measured on images of unseen-
object prompts (AUC), as `world-loop` measures it. The report gives both curves and how many labels
each needs to reach the AUC that random selection ends at.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ml.world.loop import REWARD_VAL_SEED, WORLD_GUIDANCE, WorldLoopConfig, choose_prompts, generate_images

STRATEGIES = ("random", "uncertain")


@dataclass
class ActiveConfig:
    seed: int = field(default=0, metadata={"help": "seed of prompts, pool, seed set and training"})
    train_prompts: int = field(default=48, metadata={"help": "seen-object prompts in the pool"})
    pool_per_prompt: int = field(default=32, metadata={"help": "images per pool prompt (the candidates)"})
    start: int = field(default=96, metadata={"help": "random labels both strategies start from"})
    batch: int = field(default=96, metadata={"help": "labels added per step"})
    budget: int = field(default=768, metadata={"help": "labels at the end"})
    per_prompt_cap: int = field(default=4, metadata={"help": "most uncertain picks per prompt in one step"})
    reward_val_prompts: int = field(default=24, metadata={"help": "unseen prompts the AUC is measured on"})
    reward_val_images: int = field(default=16, metadata={"help": "images per such prompt"})
    repeats: int = field(default=2, metadata={"help": "runs with different seed sets (curves are averaged)"})


def _auc_at(curve: list[tuple[int, float]], target: float) -> int | None:
    """Labels at which a curve first reaches `target` (linear between steps); None if never."""
    for (n0, a0), (n1, a1) in zip(curve, curve[1:], strict=False):
        if a0 >= target:
            return n0
        if a1 >= target:
            return round(n0 + (n1 - n0) * (target - a0) / (a1 - a0))
    return curve[0][0] if curve and curve[0][1] >= target else None


def select(
    strategy: str, scores: np.ndarray | None, unlabelled: np.ndarray, prompt_of: np.ndarray, k: int, cap: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Indices of the next `k` images to label among `unlabelled` (a boolean mask)."""
    idx = np.flatnonzero(unlabelled)
    if strategy == "random" or scores is None:
        return rng.choice(idx, size=min(k, len(idx)), replace=False)
    if strategy != "uncertain":
        raise ValueError(f"unknown strategy {strategy!r}; choose from {STRATEGIES}")
    order = idx[np.argsort(np.abs(scores[idx] - 0.5) + 1e-9 * rng.random(len(idx)))]
    taken: list[int] = []
    per: dict[int, int] = {}
    for i in order:
        if per.get(int(prompt_of[i]), 0) < cap:
            taken.append(int(i))
            per[int(prompt_of[i])] = per.get(int(prompt_of[i]), 0) + 1
            if len(taken) == k:
                break
    return np.array(taken, int)


def run_active(
    config: ActiveConfig, models: str | Path, out_dir: str | Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    from ml.embeddings import embed_images, embed_texts, load_clip
    from ml.metrics import roc_auc
    from ml.reward import RewardConfig, score, train_reward
    from ml.world.raters import OracleRater

    t0 = time.perf_counter()
    models = Path(models)
    loop_cfg = WorldLoopConfig(seed=config.seed, guidance_scale=WORLD_GUIDANCE)
    train = choose_prompts("seen", config.train_prompts, config.seed)
    val = choose_prompts("unseen", config.reward_val_prompts, config.seed + 1)
    per = config.pool_per_prompt
    pool_req = [(p.text, config.seed * 1000 + s) for p in train for s in range(per)]
    val_req = [(p.text, REWARD_VAL_SEED + s) for p in val for s in range(config.reward_val_images)]
    images = generate_images(models / "sd", pool_req + val_req, loop_cfg,
                             (lambda d, t: progress("generate", d, t)) if progress else None)
    oracle = OracleRater(seed=config.seed)
    truth = np.array([v.aligned for v in oracle.judge(images, [t for t, _ in pool_req + val_req])])
    pool_truth, val_truth = truth[: len(pool_req)], truth[len(pool_req):]
    clip = load_clip(models / "clip", device="cpu")
    vec = embed_images(clip, images).vectors
    pool_vec, val_vec = vec[: len(pool_req)], vec[len(pool_req):]

    def text_fn(texts: Sequence[str]) -> np.ndarray:
        return embed_texts(clip, list(texts)).vectors

    pool_text, val_text = text_fn([t for t, _ in pool_req]), text_fn([t for t, _ in val_req])
    prompt_of = np.repeat(np.arange(len(train)), per)
    keys = {f"pool-{i}": pool_vec[i] for i in range(len(pool_req))}

    def fit(labelled: np.ndarray, seed: int) -> tuple[float, np.ndarray]:
        rows = [{"image_key": f"pool-{i}", "prompt": pool_req[i][0], "label": "good" if pool_truth[i] else "bad"}
                for i in np.flatnonzero(labelled)]
        model = train_reward(RewardConfig(vocabulary="world", seed=seed, device="cpu"), rows, keys, text_fn).model
        return roc_auc(val_truth, score(model, val_vec, val_text)), score(model, pool_vec, pool_text)

    steps = list(range(config.start, config.budget + 1, config.batch))
    curves: dict[str, list[list[tuple[int, float]]]] = {s: [] for s in STRATEGIES}
    total = config.repeats * len(STRATEGIES) * len(steps)
    done = 0
    for rep in range(config.repeats):
        rng0 = np.random.default_rng(config.seed * 100 + rep)
        seed_set = np.zeros(len(pool_req), bool)
        seed_set[rng0.choice(len(pool_req), size=config.start, replace=False)] = True
        for strategy in STRATEGIES:
            rng = np.random.default_rng(config.seed * 100 + rep + 1)
            labelled = seed_set.copy()
            curve = []
            scores: np.ndarray | None = None
            for n in steps:
                if labelled.sum() < n:
                    labelled[select(strategy, scores, ~labelled, prompt_of, n - int(labelled.sum()),
                                    config.per_prompt_cap, rng)] = True
                auc, scores = fit(labelled, config.seed + rep)
                curve.append((int(labelled.sum()), float(auc)))
                done += 1
                if progress:
                    progress("reward models", done, total)
            curves[strategy].append(curve)

    mean = {s: [(steps[i], float(np.mean([c[i][1] for c in curves[s]]))) for i in range(len(steps))]
            for s in STRATEGIES}
    target = mean["random"][-1][1]
    need = {s: _auc_at(mean[s], target) for s in STRATEGIES}
    saving = (1 - need["uncertain"] / need["random"]) if need["uncertain"] and need["random"] else None
    report = {
        "config": asdict(config),
        "pool": {"images": len(pool_req), "good_rate": float(pool_truth.mean())},
        "validation": {"images": len(val_req), "good_rate": float(val_truth.mean())},
        "curves": {s: [[list(p) for p in c] for c in curves[s]] for s in STRATEGIES},
        "mean_auc": {s: [list(p) for p in mean[s]] for s in STRATEGIES},
        "target_auc": target,
        "labels_to_target": need,
        "label_saving": saving,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "active.json").write_text(json.dumps(report, indent=2))
    return report


def summary(report: dict[str, Any]) -> str:
    lines = ["reward model AUC on unseen-object prompts, by labels (mean over repeats):"]
    for s in STRATEGIES:
        lines.append(f"  {s:<9} " + "  ".join(f"{n}:{a:.3f}" for n, a in report["mean_auc"][s]))
    need = report["labels_to_target"]
    lines.append(f"labels to reach random's final AUC {report['target_auc']:.3f}: random {need['random']}, "
                 f"uncertain {need['uncertain']}"
                 + (f" ({100 * report['label_saving']:.0f}% fewer)" if report["label_saving"] is not None else ""))
    lines.append(f"time: {report['seconds']:.0f} s")
    return "\n".join(lines)
