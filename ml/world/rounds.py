"""Several rounds of the feedback loop in the shapes world, each starting from the last round's model.

Round k: the generator of round k-1 (the base for k = 1) draws a new pool on the training prompts; the
oracle labels part of it (`labels_per_prompt` per prompt, new images every round); a reward model is
trained on every label so far (learning from every label, not only the newest); the generator is
fine-tuned on the pools so far (`pools='all'`, as the service's training set keeps every round's
images) or on the newest only, weighted by that reward, continuing the adapter of round k-1
(`FinetuneConfig.init_adapter`); then the oracle judges it on the same evaluation prompts and seeds
as the base.

A control chain (`control`) does the same with uniform weights (the mean reward, so the steps are of
the same size) on pools drawn by its own generators: whatever fine-tuning on its own samples does
round after round, without the reward's choice.

The fidelity guard watches for reward hacking: the oracle's drawing quality (clean shapes, no stray
marks, palette colours) and the Fréchet distance between CLIP embeddings of the evaluation images and
of the world's pre-training images. Each round passes the guard when its quality is at most
`quality_tolerance` below the base's and its distance at most `distance_tolerance` times the base's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ml.prompts import CATEGORIES
from ml.world.loop import (
    EVAL_SEED,
    REWARD_VAL_SEED,
    Progress,
    Stages,
    WorldLoopConfig,
    _json_default,
    finetune_arms,
    generate_images,
    world_prompts,
    write_grid,
)
from ml.world.measure import arm_metrics, frechet_distance, paired_gain
from ml.world.raters import OracleRater

CORPUS_SEED = 30_000  # the pre-training images the distance is measured to (not the β term's)


@dataclass
class RoundsConfig(WorldLoopConfig):
    rounds: int = field(default=3, metadata={"help": "rounds, each fine-tuning the model of the round before"})
    control: bool = field(
        default=True, metadata={"help": "also run the uniform-weight chain (the control) round after round"}
    )
    pools: str = field(
        default="all",
        metadata={"help": "what each round fine-tunes on: 'all' pools so far, or the 'last' (newest) one"},
    )
    quality_tolerance: float = field(
        default=0.03, metadata={"help": "the guard: largest drop of oracle drawing quality below the base's"}
    )
    distance_tolerance: float = field(
        default=1.5,
        metadata={"help": "the guard: largest ratio of a round's distance to the pre-training images over the base's"},
    )
    distance_images: int = field(default=1000, metadata={"help": "pre-training images the distance is measured to"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rounds < 1:
            raise ValueError(f"rounds must be at least 1, not {self.rounds}")
        if self.pools not in ("all", "last"):
            raise ValueError(f"pools must be 'all' or 'last', not {self.pools!r}")
        if self.panel != "oracle" or self.oracle_arm:
            raise ValueError("rounds are labelled by the oracle rater (--label-error for noise); "
                             "--panel mixed and --oracle-arm belong to world-loop")
        if self.distance_images < 2:
            raise ValueError("distance_images must be at least 2")


def _guard(metrics: dict[str, Any], distance: float, base: dict[str, Any], config: RoundsConfig) -> dict[str, Any]:
    q, q0 = metrics["quality"]["rate"], base["quality"]["rate"]
    ratio = distance / base["distance"] if base["distance"] > 0 else float("inf")
    return {
        "quality": q, "quality_drop": q0 - q, "distance": distance, "distance_ratio": ratio,
        "within": bool(q0 - q <= config.quality_tolerance and ratio <= config.distance_tolerance),
    }


def run_world_rounds(
    config: RoundsConfig, models: str | Path, out_dir: str | Path, progress: Progress | None = None
) -> dict[str, Any]:
    """Run `config.rounds` rounds; writes `out/rounds.json`, `out/grid.png` and each round's adapters."""
    from ml.embeddings import embed_images, embed_texts, load_clip
    from ml.finetune import FinetuneConfig, ModelSample
    from ml.metrics import roc_auc
    from ml.reward import RewardConfig, score, train_reward
    from ml.world.corpus import corpus, pretrain_pairs
    from ml.world.scene import draw, to_pil

    clock = Stages(progress)
    bar, add_time = clock.bar, clock.add
    models, out = Path(models), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sd = models / "sd"
    rater = OracleRater(error_rate=config.label_error, seed=config.seed)

    t0 = time.perf_counter()
    prompts = world_prompts(config)
    train, reward_val, evaluation = prompts.train, prompts.reward_val, prompts.evaluation
    n_img = config.eval_images_per_prompt
    eval_req = [(p.text, EVAL_SEED + s) for p in evaluation for s in range(n_img)]
    eval_prompts = [p for p in evaluation for _ in range(n_img)]
    eval_texts = [t for t, _ in eval_req]
    val_req = [(p.text, REWARD_VAL_SEED + s) for p in reward_val for s in range(config.reward_val_images)]
    per_prompt = max(config.pool_per_prompt, config.labels_per_prompt)
    clip = load_clip(models / "clip", device="cpu")

    def text_fn(texts: Sequence[str]) -> np.ndarray:
        return embed_texts(clip, list(texts)).vectors

    reference = embed_images(clip, [to_pil(draw(s)) for s, _ in corpus(config.distance_images, CORPUS_SEED)]).vectors
    val_images = generate_images(sd, val_req, config, bar("reward validation images"))
    val_truth = np.array([v.aligned for v in rater.judge(val_images, [t for t, _ in val_req])])
    val_vec, val_text = embed_images(clip, val_images).vectors, text_fn([t for t, _ in val_req])
    add_time("setup", t0)

    def evaluate(name: str, adapter: Path | None) -> tuple[list[Any], list[Any], dict[str, Any]]:
        t0 = time.perf_counter()
        images = generate_images(sd, eval_req, config, bar(f"evaluate {name}"), lora=adapter)
        verdicts = rater.judge(images, eval_texts)
        metrics = arm_metrics(eval_prompts, verdicts)
        metrics["distance"] = frechet_distance(embed_images(clip, images).vectors, reference)
        add_time("evaluate", t0)
        return images, verdicts, metrics

    base_images, base_verdicts, base_metrics = evaluate("base", None)
    chains = ["reward", *(["uniform"] if config.control else [])]
    adapters: dict[str, Path | None] = {c: None for c in chains}
    pools: dict[str, list[tuple[list[Any], list[tuple[str, int]]]]] = {c: [] for c in chains}
    rows: list[dict[str, Any]] = []
    vectors: dict[str, np.ndarray] = {}
    pre = pretrain_pairs(config.pretrain_pairs, seed=config.seed + 7)
    first_verdicts: list[Any] = []
    first_images: list[Any] = []
    last_images: list[Any] = []
    last_verdicts: list[Any] = []
    rounds: list[dict[str, Any]] = []
    for k in range(1, config.rounds + 1):
        # a new pool from each chain's current generator, new seeds every round
        t0 = time.perf_counter()
        req = [(p.text, config.seed * 1000 + (k - 1) * per_prompt + s) for p in train for s in range(per_prompt)]
        for c in chains:
            pools[c].append((generate_images(sd, req, config, bar(f"round {k}: pool ({c})"), lora=adapters[c]), req))
        add_time("generate_pools", t0)

        # the oracle labels part of the reward chain's new pool; the reward learns from every label so far
        t0 = time.perf_counter()
        images = pools["reward"][-1][0]
        truth = np.array([v.aligned for v in rater.judge(images, [t for t, _ in req])], float)
        labelled = [i for i in range(len(req)) if i % per_prompt < config.labels_per_prompt]
        labels = rater.answer([bool(truth[i]) for i in labelled])
        pool_vec = embed_images(clip, images).vectors
        for i, lab in zip(labelled, labels, strict=True):
            key = f"round{k}-{i}"
            rows.append({"image_key": key, "prompt": req[i][0], "label": lab})
            vectors[key] = pool_vec[i]
        reward = train_reward(RewardConfig(vocabulary="world", seed=config.seed, device="cpu",
                                           min_steps=config.reward_min_steps),
                              rows, vectors, text_fn, progress=bar(f"round {k}: reward"))
        val_scores = score(reward.model, val_vec, val_text)
        add_time("label_and_reward", t0)

        # each chain continues its own adapter on its pools, weighted by this round's reward (or uniformly)
        used = pools["reward"] if config.pools == "all" else pools["reward"][-1:]
        scores = np.concatenate([score(reward.model, embed_images(clip, imgs).vectors, text_fn([t for t, _ in r]))
                                 for imgs, r in used])
        jobs = {}
        for c in chains:
            chosen = pools[c] if config.pools == "all" else pools[c][-1:]
            w = scores if c == "reward" else np.full(sum(len(r) for _, r in chosen), float(scores.mean()))
            samples = [ModelSample(image=im, prompt=t, reward=float(x))
                       for im, (t, _), x in zip([im for imgs, _ in chosen for im in imgs],
                                                [q for _, r in chosen for q in r], w, strict=True)]
            ft = FinetuneConfig(
                mode="lora", lr=config.finetune_lr, max_steps=config.finetune_steps, batch_size=config.finetune_batch,
                beta=config.beta, seed=config.seed + k, checkpoint_every=10**9, mixed_precision="no",
                ema_decay=config.finetune_ema, lora_rank=config.finetune_rank, caption_dropout=config.caption_dropout,
                snr_gamma=config.snr_gamma, init_adapter=None if adapters[c] is None else str(adapters[c]),
            )
            jobs[c] = (ft, sd, samples, out / f"round-{k}" / f"finetune-{c}", pre)
        t0 = time.perf_counter()

        def round_progress(stage: str, done: int, total: int, k: int = k) -> None:
            if progress:
                progress(f"round {k}: {stage}", done, total)

        checkpoints, _ = finetune_arms(jobs, config.finetune_workers, round_progress)
        adapters.update(checkpoints)
        add_time("finetune", t0)

        entry: dict[str, Any] = {
            "round": k, "labels": len(rows), "pool_images": sum(len(r) for _, r in used),
            "pool_good_rate": float(truth.mean()),
            "reward_model": {"unseen_auc": roc_auc(val_truth, val_scores),
                             "unseen_accuracy": float(((val_scores > 0.5) == val_truth).mean()),
                             "n_train": reward.n_train},
            "arms": {}, "gains": {}, "guard": {},
        }
        round_verdicts = {}
        for c in chains:
            imgs, verdicts, metrics = evaluate(f"round {k} {c}", adapters[c])
            round_verdicts[c] = verdicts
            entry["arms"][c] = metrics
            entry["guard"][c] = _guard(metrics, metrics["distance"], base_metrics, config)
            entry["gains"][f"{c}_vs_base"] = paired_gain(verdicts, base_verdicts, eval_prompts)
            if c == "reward":
                last_images, last_verdicts = imgs, verdicts
                if k == 1:
                    first_images, first_verdicts = imgs, verdicts
        if "uniform" in round_verdicts:
            entry["gains"]["reward_vs_uniform"] = paired_gain(round_verdicts["reward"], round_verdicts["uniform"],
                                                              eval_prompts)
        if k > 1:
            entry["gains"]["reward_vs_round1"] = paired_gain(last_verdicts, first_verdicts, eval_prompts)
        rounds.append(entry)

    report: dict[str, Any] = {
        "config": asdict(config),
        "models": str(models),
        "base": base_metrics,
        "guard_tolerance": {"quality_drop": config.quality_tolerance, "distance_ratio": config.distance_tolerance},
        "rounds": rounds,
    }
    k = min(config.grid_prompts, len(evaluation))
    shown = list(range(len(evaluation)))[:: max(1, len(evaluation) // k)][:k]
    seeds = min(4, n_img)
    sel = [i * n_img + s for i in shown for s in range(seeds)]
    arms = {"base": (base_images, base_verdicts), "round 1": (first_images, first_verdicts),
            f"round {config.rounds}": (last_images, last_verdicts)}
    write_grid(out / "grid.png", [evaluation[i] for i in shown], seeds,
               {a: [im[j] for j in sel] for a, (im, _) in arms.items()},
               {a: [v[j] for j in sel] for a, (_, v) in arms.items()}, arms=list(arms))
    report["seconds"] = clock.total()
    (out / "rounds.json").write_text(json.dumps(report, indent=2, default=_json_default))
    return report


def summary(report: dict[str, Any]) -> str:
    """One line per round and chain: alignment, its gains, the guard."""
    base = report["base"]
    tol = report["guard_tolerance"]
    lines = [
        "oracle alignment per round (± SE clustered by prompt); guard: quality at most "
        f"{tol['quality_drop']:.2f} below the base's, distance to pre-training images at most "
        f"{tol['distance_ratio']:.1f}× the base's",
        f"  base              {100 * base['aligned']['rate']:5.1f}% ± {100 * base['aligned']['se']:.1f}   "
        f"quality {base['quality']['rate']:.3f}  distance {base['distance']:.4f}",
    ]
    for r in report["rounds"]:
        for c, m in r["arms"].items():
            g, guard = r["gains"][f"{c}_vs_base"], r["guard"][c]
            cats = " ".join(f"{cat} {100 * m['by_category'][cat]['rate']:.0f}" for cat in CATEGORIES
                            if cat in m["by_category"])
            lines.append(
                f"  round {r['round']} {c:<8} {100 * m['aligned']['rate']:5.1f}% ± {100 * m['aligned']['se']:.1f}   "
                f"vs base {g['points']:+.1f} ({g['z']:.1f} SE)   quality {guard['quality']:.3f}  "
                f"distance {guard['distance']:.4f} (×{guard['distance_ratio']:.2f})  "
                f"guard {'ok' if guard['within'] else 'EXCEEDED'}   [{cats}]"
            )
        extra = [f"{name.replace('_', ' ')} {g['points']:+.1f} ({g['z']:.1f} SE)" for name, g in r["gains"].items()
                 if name in ("reward_vs_uniform", "reward_vs_round1")]
        auc = r["reward_model"]["unseen_auc"]
        lines.append(f"          labels {r['labels']}, reward AUC on unseen prompts {auc:.3f}"
                     + (f"; {'; '.join(extra)}" if extra else ""))
    lines.append(f"time: {report['seconds']['total']:.0f} s")
    return "\n".join(lines)
