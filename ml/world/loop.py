"""One offline round of the feedback loop in the shapes world, measured by the oracle.

pool (base model) -> oracle labels -> reward model -> fine-tune -> oracle evaluation, with three arms
evaluated on the same prompts and seeds:
- base: the pre-trained model;
- uniform: fine-tuned on the same pool with every sample weighted alike (by the mean reward, so both
  fine-tunes take steps of the same size): the control for "fine-tuning on its own samples";
- reward: fine-tuned with the paper's loss, each sample weighted by the *learned* reward model
  (the oracle only labels the pool, as human raters would).

Standard errors are clustered by prompt (images of one prompt are not independent), and arm
differences are paired by prompt and seed. The reward model is also measured on images of
prompts with the held-out ("unseen") object, which no label touched.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ml.finetune import PRESETS
from ml.prompts import CATEGORIES, WORLD_VOCABULARY, Prompt, PromptSetConfig, generate_prompt_set
from ml.world.measure import arm_metrics, paired_gain
from ml.world.raters import OracleRater

Progress = Callable[[str, int, int], None]  # (stage, done, total)
ARMS = ("base", "uniform", "reward")
EVAL_SEED = 10_000  # evaluation seeds start here: never the seeds of the labelled pool
REWARD_VAL_SEED = 20_000


WORLD_GUIDANCE = 3.0  # the world models' guidance scale: higher drifts to four objects and blank single ones


@dataclass
class WorldLoopConfig:
    seed: int = field(default=0, metadata={"help": "seed of prompt choice, labels, training and sampling"})
    train_prompts: int = field(default=48, metadata={"help": "seen-object prompts in the labelled pool"})
    labels_per_prompt: int = field(default=16, metadata={"help": "labelled images per pool prompt"})
    pool_per_prompt: int = field(
        default=32,
        metadata={
            "help": "images per pool prompt in the fine-tuning data (labelled ones first; the rest are "
            "weighted by the reward model alone, as the paper's unlabelled 16K)"
        },
    )
    oracle_arm: bool = field(default=False, metadata={"help": "also fine-tune with the oracle's labels as weights"})
    label_error: float = field(default=0.0, metadata={"help": "share of oracle labels flipped (rater noise)"})
    panel: str = field(
        default="oracle",
        metadata={
            "help": "who labels the pool: 'oracle' (one rater, --label-error) or 'mixed' (a crowd of "
            "--panel-size raters: 30% noisy with 25% flips, one lenient, one adversarial, the rest "
            "accurate; --raters-per-image of them label each image). 'mixed' adds the arms 'reliable' "
            "(reward trained on Dawid-Skene posteriors) and 'clean' (on the oracle's own labels)"
        },
    )
    panel_size: int = field(default=10, metadata={"help": "raters in the mixed panel"})
    raters_per_image: int = field(default=3, metadata={"help": "distinct raters per labelled image (mixed panel)"})
    gold_per_prompt: int = field(
        default=1, metadata={"help": "labelled images per prompt whose truth is known (gold; mixed panel)"}
    )
    eval_prompts: int = field(default=60, metadata={"help": "evaluation prompts, half seen and half unseen"})
    eval_images_per_prompt: int = field(default=8, metadata={"help": "images per evaluation prompt and arm"})
    reward_val_prompts: int = field(default=24, metadata={"help": "unseen prompts to measure the reward on"})
    reward_val_images: int = field(default=16, metadata={"help": "images per such prompt"})
    reward_min_steps: int = field(default=1500, metadata={"help": "reward training: optimizer steps at least"})
    sampler_steps: int = field(default=20, metadata={"help": "denoising steps"})
    guidance_scale: float = field(default=WORLD_GUIDANCE, metadata={"help": "classifier-free guidance scale"})
    finetune_mode: str = field(default=PRESETS["world"]["mode"], metadata={"help": "'full' or 'lora'"})
    finetune_rank: int = field(default=PRESETS["world"].get("lora_rank", 8), metadata={"help": "LoRA rank"})
    # Twice the preset's 500: the round's pool (1536 images) carries 1000 steps (about 40 passes) and
    # gains from them (reward - uniform +4.4 -> +10.0 points, quality kept); a pool half that size
    # lost the whole effect at 50 passes (docs/world.md), so the preset, which meets smaller pools
    # in the service, keeps 500.
    finetune_steps: int = field(default=1000, metadata={"help": "optimizer steps per arm"})
    finetune_lr: float = field(default=PRESETS["world"]["lr"], metadata={"help": "fine-tuning learning rate"})
    finetune_batch: int = field(
        default=PRESETS["world"]["batch_size"],
        metadata={"help": "pool samples per step (and as many pre-training pairs)"},
    )
    finetune_ema: float | None = field(
        default=PRESETS["world"].get("ema_decay"), metadata={"help": "EMA decay of the fine-tuned weights"}
    )
    beta: float = field(default=PRESETS["world"]["beta"], metadata={"help": "weight of the pre-training loss"})
    caption_dropout: float = field(
        default=PRESETS["world"].get("caption_dropout", 0.0),
        metadata={"help": "share of pool samples trained with the empty prompt"},
    )
    snr_gamma: float | None = field(
        default=PRESETS["world"].get("snr_gamma"), metadata={"help": "min-SNR-γ weighting of the fine-tune loss"}
    )
    pretrain_pairs: int = field(default=2000, metadata={"help": "pre-training pairs for the β term"})
    finetune_workers: int = field(
        default=0,
        metadata={
            "help": "fine-tunes run side by side, each in its own process with an equal share of the torch "
            "threads (0: as many as arms and threads allow; 1: one after another in this process). Two "
            "one-thread processes get ~1.4x the steps of one two-thread process from 2 cores"
        },
    )
    grid_prompts: int = field(default=8, metadata={"help": "prompts in grid.png"})

    def __post_init__(self) -> None:  # checked before minutes of drawing, not after
        if self.panel not in ("oracle", "mixed"):
            raise ValueError(f"unknown panel {self.panel!r}; choose 'oracle' or 'mixed'")
        if self.panel == "mixed" and not 1 <= self.raters_per_image <= self.panel_size:
            raise ValueError(f"raters_per_image must be between 1 and panel_size ({self.panel_size})")


# The round the test suite runs: smaller pool and evaluation, fewer steps, same method (about four minutes
# on 2 cores). Its two fine-tunes run side by side, one thread each: since each arm seeds its own adapter and
# reward training is deterministic, that gives the same models as one after another (checked 2026-12-02:
# identical arms, gains and reward model; fit equal to 1e-9), 1.4x faster.
REDUCED = WorldLoopConfig(train_prompts=32, labels_per_prompt=16, pool_per_prompt=24, eval_prompts=40,
                          eval_images_per_prompt=8, reward_val_prompts=16, reward_val_images=8, finetune_steps=300,
                          pretrain_pairs=500, finetune_workers=0)


def choose_prompts(split: str, n: int, seed: int) -> list[Prompt]:
    """n world prompts of one split, balanced across the four categories (the service's template rule)."""
    return generate_prompt_set(PromptSetConfig(size=n, seed=seed, splits=(split,), vocabulary=WORLD_VOCABULARY))


class PromptCounts(Protocol):
    seed: int
    train_prompts: int
    reward_val_prompts: int
    eval_prompts: int


@dataclass(frozen=True)
class WorldPrompts:
    """The prompts of every world run: the labelled pool's (seen objects only), the reward model's
    validation (the unseen object, which no label shows) and the evaluation (half seen, half unseen)."""

    train: list[Prompt]
    reward_val: list[Prompt]
    evaluation: list[Prompt]

    @property
    def evaluation_splits(self) -> dict[str, int]:
        return {split: sum(p.split == split for p in self.evaluation) for split in ("seen", "unseen")}


def world_prompts(config: PromptCounts) -> WorldPrompts:
    """The one choice of prompts shared by world-loop, world-pairs and world-rounds (same seed, same prompts)."""
    half = config.eval_prompts // 2
    return WorldPrompts(
        train=choose_prompts("seen", config.train_prompts, config.seed),
        reward_val=choose_prompts("unseen", config.reward_val_prompts, config.seed + 1),
        evaluation=choose_prompts("seen", half, config.seed + 2)
        + choose_prompts("unseen", config.eval_prompts - half, config.seed + 3),
    )


class Stages:
    """A run's stage clock: seconds per stage (summed when a stage recurs, as in rounds) and one
    progress bar per stage, fed to the caller's `Progress`."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()

    def bar(self, stage: str) -> Callable[..., None] | None:
        progress = self.progress
        return (lambda done, total, *_: progress(stage, done, total)) if progress else None

    def add(self, stage: str, t0: float) -> None:
        """Count the time since `t0` (a `time.perf_counter()` reading) to `stage`."""
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + time.perf_counter() - t0, 2)

    def total(self) -> dict[str, float]:
        self.seconds["total"] = round(time.perf_counter() - self._start, 2)
        return self.seconds


def generate_images(
    model: str | Path,
    requests: list[tuple[str, int]],
    config: WorldLoopConfig,
    progress: Callable[[int, int], None] | None = None,
    lora: str | Path | None = None,
) -> list[Any]:
    from ml.generation import GenerationConfig, generate, load_generator

    gen = load_generator(model, lora=lora, device="cpu")
    cfg = GenerationConfig(steps=config.sampler_steps, guidance_scale=config.guidance_scale, batch_size=256)
    return [g.image for g in generate(gen, requests, cfg, progress=progress).images]


def write_grid(
    path: Path,
    prompts: list[Prompt],
    seeds: int,
    images: dict[str, list[Any]],
    verdicts: dict[str, list[Any]],
    arms: Sequence[str] = ("base", "reward"),
) -> None:
    """Rows of prompts; for each arm, the same seeds side by side, framed green (aligned) or red."""
    from PIL import Image, ImageDraw

    cell, pad, text_w = 72, 4, 260
    rows = len(prompts)
    width = text_w + len(arms) * (seeds * (cell + pad) + 3 * pad)
    img = Image.new("RGB", (width, 24 + rows * (cell + pad)), "white")
    draw = ImageDraw.Draw(img)
    for a, arm in enumerate(arms):
        draw.text((text_w + a * (seeds * (cell + pad) + 3 * pad), 6), arm, fill="black")
    for r, p in enumerate(prompts):
        y = 24 + r * (cell + pad)
        draw.text((4, y + cell // 2 - 6), p.text, fill="black")
        for a, arm in enumerate(arms):
            for s in range(seeds):
                i = r * seeds + s
                x = text_w + a * (seeds * (cell + pad) + 3 * pad) + s * (cell + pad)
                ok = verdicts[arm][i].aligned
                draw.rectangle((x - 2, y - 2, x + cell + 1, y + cell + 1), fill=(40, 160, 60) if ok else (200, 40, 40))
                img.paste(images[arm][i].convert("RGB").resize((cell, cell), Image.Resampling.NEAREST), (x, y))
    img.save(path)


def _finetune_child(arm: str, job: tuple, threads: int, queue: Any) -> None:
    """One arm's fine-tune in a spawned process; progress and the outcome go back through `queue`."""
    import os
    import threading
    import traceback

    import torch

    from ml.finetune import finetune

    parent = os.getppid()

    def orphaned() -> None:  # a parent killed without cleanup (SIGKILL, SIGTERM) must not leave us training
        while os.getppid() == parent:
            time.sleep(2)
        os._exit(1)

    threading.Thread(target=orphaned, daemon=True).start()
    torch.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        ft, sd, samples, out, pre, *pairs = job
        result = finetune(ft, sd, samples, out, pretrain=pre, pairs=pairs[0] if pairs else None,
                          progress=lambda done, total, *_: queue.put(("progress", arm, done, total)))
        queue.put(("done", arm, str(result.checkpoint), time.perf_counter() - t0))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        queue.put(("error", arm, traceback.format_exc(), 0.0))


def finetune_arms(
    jobs: dict[str, tuple], workers: int, progress: Progress | None = None
) -> tuple[dict[str, Path], dict[str, float]]:
    """Run each arm's `finetune(config, base, samples, out, pretrain=...)` (a job tuple may end with the
    DPO pairs, `finetune(..., pairs=...)`); returns checkpoints and
    seconds per arm. Small models use threads poorly, so on a few cores arms run side by side in
    spawned processes that split the torch threads (a process that dies is an error, not a hang)."""
    import multiprocessing as mp
    import queue as queue_mod

    import torch

    total = torch.get_num_threads()
    n = min(len(jobs), total) if workers <= 0 else min(len(jobs), workers)
    checkpoints: dict[str, Path] = {}
    seconds: dict[str, float] = {}
    if n <= 1:
        from ml.finetune import finetune

        for arm, (ft, sd, samples, out, pre, *pairs) in jobs.items():
            t0 = time.perf_counter()
            cb = (lambda done, total, *_, a=arm: progress(f"finetune {a}", done, total)) if progress else None
            checkpoints[arm] = finetune(ft, sd, samples, out, pretrain=pre, progress=cb,
                                        pairs=pairs[0] if pairs else None).checkpoint
            seconds[arm] = time.perf_counter() - t0
        return checkpoints, seconds

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    waiting = list(jobs)
    running: dict[str, Any] = {}
    threads = max(1, total // n)
    while waiting or running:
        while waiting and len(running) < n:
            arm = waiting.pop(0)
            running[arm] = ctx.Process(target=_finetune_child, args=(arm, jobs[arm], threads, q), daemon=True)
            running[arm].start()
        try:
            kind, arm, a, b = q.get(timeout=5)
        except queue_mod.Empty:
            dead = [arm for arm, proc in running.items() if not proc.is_alive() and proc.exitcode != 0]
            if dead:
                for proc in running.values():
                    proc.kill()
                raise RuntimeError(f"fine-tune of arm {dead[0]} died (exit code {running[dead[0]].exitcode})") from None
            continue
        if kind == "progress":
            if progress:
                progress(f"finetune {arm}", a, b)
        elif kind == "error":
            for proc in running.values():
                proc.kill()
            raise RuntimeError(f"fine-tune of arm {arm} failed:\n{a}")
        else:
            checkpoints[arm], seconds[arm] = Path(a), b
            running.pop(arm).join()
    return checkpoints, seconds


def crowd_labels(
    config: WorldLoopConfig, labelled: list[int], pool_req: list[tuple[str, int]], pool_truth: np.ndarray
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any], list[str]]:
    """A mixed panel labels each labelled image `raters_per_image` times (distinct raters, as the
    service's K); gold images (the first `gold_per_prompt` labelled ones of each prompt) anchor the
    raters' confusion. Returns three label sets for reward training: 'reward' (every label a row,
    all raters trusted alike: the paper), 'reliable' (one row per image, the Dawid-Skene posterior
    as its target) and 'clean' (the oracle's own labels: the reference), the crowd's report, and
    the first label of each image."""
    import random

    from ml.reliability import dawid_skene
    from ml.world.raters import mixed_panel

    panel = mixed_panel(config.panel_size, seed=config.seed)
    rng = random.Random(config.seed + 11)
    per_prompt = max(config.pool_per_prompt, config.labels_per_prompt)
    triples: list[tuple[int, str, bool]] = []
    for i in labelled:
        for r in rng.sample(panel, config.raters_per_image):
            triples.append((i, r.name, r.answer([bool(pool_truth[i])])[0] == "good"))
    gold = {i: bool(pool_truth[i]) for i in labelled if i % per_prompt < config.gold_per_prompt}
    rel = dawid_skene(triples, gold=gold)
    prompt = {i: pool_req[i][0] for i in labelled}
    sets: dict[str, list[dict[str, Any]]] = {
        "reward": [{"image_key": f"pool-{i}", "prompt": prompt[i], "label": "good" if g else "bad"}
                   for i, _, g in triples],
        "reliable": [{"image_key": f"pool-{i}", "prompt": prompt[i], "label": "good" if rel.posterior[i] > 0.5
                      else "bad", "target": rel.posterior[i]} for i in labelled],
        "clean": [{"image_key": f"pool-{i}", "prompt": prompt[i], "label": "good" if pool_truth[i] else "bad"}
                  for i in labelled],
    }
    first: dict[int, str] = {}
    for i, _, g in triples:
        first.setdefault(i, "good" if g else "bad")
    t = np.array([pool_truth[i] > 0.5 for i in labelled])
    per_label = np.array([g == (pool_truth[i] > 0.5) for i, _, g in triples])
    report: dict[str, Any] = {
        "panel": [{"name": r.name, "error_rate": r.error_rate, "good_bias": r.good_bias,
                   "estimated": {"sensitivity": rel.raters[r.name].sensitivity,
                                 "specificity": rel.raters[r.name].specificity, "labels": rel.raters[r.name].n}}
                  for r in panel if r.name in rel.raters],
        "labels": len(triples),
        "gold": len(gold),
        "label_accuracy": float(per_label.mean()),
        "majority_accuracy": float(((np.array([rel.majority[i] for i in labelled]) > 0.5) == t).mean()),
        "posterior_accuracy": float(((np.array([rel.posterior[i] for i in labelled]) > 0.5) == t).mean()),
        "em_iterations": rel.iterations,
    }
    return sets, report, [first[i] for i in labelled]


def run_world_loop(
    config: WorldLoopConfig, models: str | Path, out_dir: str | Path, progress: Progress | None = None
) -> dict[str, Any]:
    """Run one round; writes `out/report.json`, `out/grid.png` and the two fine-tuned models."""
    from ml.embeddings import clip_score, embed_images, embed_texts, load_clip
    from ml.finetune import FinetuneConfig, ModelSample
    from ml.metrics import roc_auc
    from ml.reward import RewardConfig, score, train_reward
    from ml.world.corpus import pretrain_pairs

    clock = Stages(progress)
    stage_progress, timed, seconds = clock.bar, clock.add, clock.seconds
    models, out = Path(models), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sd = models / "sd"
    rater = OracleRater(error_rate=config.label_error, seed=config.seed)

    # 1. prompts: the pool and reward validation never share a split; evaluation has both
    t0 = time.perf_counter()
    prompts = world_prompts(config)
    train, reward_val, evaluation = prompts.train, prompts.reward_val, prompts.evaluation
    timed("prompts", t0)

    # 2. the pool and the reward's unseen validation images, from the base model
    t0 = time.perf_counter()
    per_prompt = max(config.pool_per_prompt, config.labels_per_prompt)
    pool_req = [(p.text, config.seed * 1000 + s) for p in train for s in range(per_prompt)]
    labelled = [i for i in range(len(pool_req)) if i % per_prompt < config.labels_per_prompt]
    val_req = [(p.text, REWARD_VAL_SEED + s) for p in reward_val for s in range(config.reward_val_images)]
    images = generate_images(sd, pool_req + val_req, config, stage_progress("generate pool"))
    pool_images, val_images = images[: len(pool_req)], images[len(pool_req) :]
    timed("generate_pool", t0)

    # 3. raters label part of the pool (the oracle with the chosen error rate, or a mixed crowd);
    #    the validation images and, for the oracle arm and the report only, the whole pool get true
    #    verdicts
    t0 = time.perf_counter()
    pool_truth = np.array([v.aligned for v in rater.judge(pool_images, [t for t, _ in pool_req])], float)
    val_truth = [v.aligned for v in rater.judge(val_images, [t for t, _ in val_req])]
    label_sets: dict[str, list[dict[str, Any]]] = {}
    crowd_report: dict[str, Any] | None = None
    if config.panel == "oracle":
        pool_labels = rater.answer([bool(pool_truth[i]) for i in labelled])
        label_sets["reward"] = [
            {"image_key": f"pool-{i}", "prompt": pool_req[i][0], "label": lab}
            for i, lab in zip(labelled, pool_labels, strict=True)
        ]
    else:  # "mixed" (WorldLoopConfig checks the name)
        label_sets, crowd_report, pool_labels = crowd_labels(config, labelled, pool_req, pool_truth)
    timed("label", t0)

    # 4. CLIP embeddings (CLIP stays frozen)
    t0 = time.perf_counter()
    clip = load_clip(models / "clip", device="cpu")
    pool_vec = embed_images(clip, pool_images).vectors
    val_vec = embed_images(clip, val_images).vectors

    def text_fn(texts: Sequence[str]) -> np.ndarray:
        return embed_texts(clip, list(texts)).vectors

    timed("embed", t0)

    # 5. a reward model per label set, trained on the labels only, then scoring the whole pool
    t0 = time.perf_counter()
    val_text = text_fn([t for t, _ in val_req])
    pool_text = text_fn([t for t, _ in pool_req])
    truth = np.array(val_truth)
    unlabelled = np.ones(len(pool_req), bool)
    unlabelled[labelled] = False
    arm_weights: dict[str, np.ndarray] = {}
    reward_reports: dict[str, dict[str, Any]] = {}
    for name, rows in label_sets.items():
        reward = train_reward(
            RewardConfig(vocabulary="world", seed=config.seed, device="cpu", min_steps=config.reward_min_steps),
            rows,
            {f"pool-{i}": pool_vec[i] for i in labelled},
            text_fn,
            progress=stage_progress("train reward" if name == "reward" else f"train reward ({name})"),
        )
        val_scores = score(reward.model, val_vec, val_text)
        weights = score(reward.model, pool_vec, pool_text)
        arm_weights[name] = weights
        reward_reports[name] = {
            "unseen": {
                "auc": roc_auc(truth, val_scores),
                "accuracy": float(((val_scores > 0.5) == truth).mean()),
                "n": len(truth),
                "good_rate": float(truth.mean()),
                "clip_score_auc": roc_auc(truth, clip_score(val_vec, val_text)),
            },
            "unlabelled_pool": {
                "auc": roc_auc(pool_truth[unlabelled] > 0.5, weights[unlabelled]),
                "n": int(unlabelled.sum()),
            },
            "seen_validation": {k: reward.metrics.get(k) for k in ("auc", "accuracy", "mse")},
            "n_train": reward.n_train,
            "n_val": reward.n_val,
            "best_epoch": reward.best_epoch,
            "mean_weight": {
                "good": float(weights[pool_truth > 0.5].mean()),
                "bad": float(weights[pool_truth < 0.5].mean()),
            },
        }
    reward_report = reward_reports["reward"]
    timed("train_reward", t0)

    # 6. two fine-tunes from the same base, data and seeds; only the sample weights differ
    pre = pretrain_pairs(config.pretrain_pairs, seed=config.seed + 7)
    arm_weights = {"uniform": np.full(len(pool_req), float(arm_weights["reward"].mean())), **arm_weights}
    if config.oracle_arm:
        arm_weights["oracle"] = pool_truth
    ft = FinetuneConfig(
        mode=config.finetune_mode,
        lr=config.finetune_lr,
        max_steps=config.finetune_steps,
        batch_size=config.finetune_batch,
        beta=config.beta,
        seed=config.seed,
        checkpoint_every=10**9,
        mixed_precision="no",
        ema_decay=config.finetune_ema,
        lora_rank=config.finetune_rank,
        caption_dropout=config.caption_dropout,
        snr_gamma=config.snr_gamma,
    )
    jobs = {
        arm: (
            ft, sd,
            [ModelSample(image=im, prompt=t, reward=float(x)) for im, (t, _), x in zip(pool_images, pool_req, w,
                                                                                       strict=True)],
            out / f"finetune-{arm}", pre,
        )
        for arm, w in arm_weights.items()
    }
    t0 = time.perf_counter()
    checkpoints, arm_seconds = finetune_arms(jobs, config.finetune_workers, progress)
    for arm, sec in arm_seconds.items():
        seconds[f"finetune_{arm}"] = round(sec, 2)
    timed("finetune", t0)

    # what each fine-tune learned from its weights: its denoising loss on the pool's good and bad
    # images (same noise and timesteps for every arm). The reward arm should fit the good ones
    # better, relative to the bad, than the uniform arm does; with weights that do not reach the
    # loss the two arms are the same model and the difference is 0.
    t0 = time.perf_counter()
    fit: dict[str, dict[str, float]] = {}
    good, bad = pool_truth > 0.5, pool_truth < 0.5
    for arm in ("base", *checkpoints):
        from ml.finetune import sample_losses
        from ml.generation import load_generator

        model, lora = (sd, None) if arm == "base" else (
            (checkpoints[arm], None) if config.finetune_mode == "full" else (sd, checkpoints[arm]))
        losses = sample_losses(load_generator(model, lora=lora, device="cpu").pipe, pool_images,
                               [t for t, _ in pool_req], seed=config.seed)
        fit[arm] = {"good": float(losses[good].mean()), "bad": float(losses[bad].mean()),
                    "gap": float(losses[bad].mean() - losses[good].mean())}
    timed("fit", t0)

    # 7. every arm draws the evaluation prompts with the same seeds; the oracle judges
    t0 = time.perf_counter()
    n_img = config.eval_images_per_prompt
    eval_req = [(p.text, EVAL_SEED + s) for p in evaluation for s in range(n_img)]
    eval_prompts = [p for p in evaluation for _ in range(n_img)]
    sources: dict[str, tuple[Path, Path | None]] = {"base": (sd, None)}
    for arm, ckpt in checkpoints.items():
        sources[arm] = (ckpt, None) if config.finetune_mode == "full" else (sd, ckpt)
    arm_images: dict[str, list[Any]] = {}
    verdicts: dict[str, list[Any]] = {}
    for arm, (model, lora) in sources.items():
        from ml.generation import GenerationConfig, generate, load_generator

        gen = load_generator(model, lora=lora, device="cpu")
        cfg = GenerationConfig(steps=config.sampler_steps, guidance_scale=config.guidance_scale, batch_size=256)
        arm_images[arm] = [
            g.image for g in generate(gen, eval_req, cfg, progress=stage_progress(f"evaluate {arm}")).images
        ]
        verdicts[arm] = rater.judge(arm_images[arm], [t for t, _ in eval_req])
    timed("evaluate", t0)

    report: dict[str, Any] = {
        "config": asdict(config),
        "models": str(models),
        "prompts": {
            "train": len(train),
            "evaluation": prompts.evaluation_splits,
            "reward_validation_unseen": len(reward_val),
        },
        "pool": {
            "images": len(pool_images),
            "labelled": len(labelled),
            "good_rate": float(pool_truth.mean()),
            "labels_good_rate": float(np.mean([lab == "good" for lab in pool_labels])),
            "flipped": rater.flipped,
        },
        "reward_model": reward_report,
        **({"reward_models": reward_reports} if len(reward_reports) > 1 else {}),
        **({"crowd": crowd_report} if crowd_report else {}),
        "fit": fit,
        "arms": {arm: arm_metrics(eval_prompts, verdicts[arm], trained={p.text for p in train}) for arm in sources},
        "gains": {
            "reward_vs_base": paired_gain(verdicts["reward"], verdicts["base"], eval_prompts),
            "reward_vs_uniform": paired_gain(verdicts["reward"], verdicts["uniform"], eval_prompts),
            "uniform_vs_base": paired_gain(verdicts["uniform"], verdicts["base"], eval_prompts),
            **{
                f"{arm}_vs_base": paired_gain(verdicts[arm], verdicts["base"], eval_prompts)
                for arm in ("oracle", "reliable", "clean")
                if arm in verdicts
            },
        },
    }
    k = min(config.grid_prompts, len(evaluation))
    shown = [i for i in range(len(evaluation))][:: max(1, len(evaluation) // k)][:k]
    seeds = min(4, n_img)
    sel = [i * n_img + s for i in shown for s in range(seeds)]
    write_grid(
        out / "grid.png",
        [evaluation[i] for i in shown],
        seeds,
        {a: [arm_images[a][j] for j in sel] for a in ("base", "reward")},
        {a: [verdicts[a][j] for j in sel] for a in ("base", "reward")},
    )
    report["seconds"] = clock.total()
    (out / "report.json").write_text(json.dumps(report, indent=2, default=_json_default))
    return report


def _json_default(x: Any) -> Any:
    if isinstance(x, float | np.floating):
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return str(x)


def summary(report: dict[str, Any]) -> str:
    """The round in a few lines, for the terminal."""
    arms = report["arms"]
    g = report["gains"]
    lines = ["oracle alignment (share of images that show what the prompt says, ± SE clustered by prompt):"]
    for arm in arms:
        a = arms[arm]["aligned"]
        cats = "  ".join(f"{c} {100 * arms[arm]['by_category'][c]['rate']:.0f}%" for c in CATEGORIES)
        lines.append(f"  {arm:<8} {100 * a['rate']:5.1f}% ± {100 * a['se']:.1f}   ({cats})")
    if all("by_training" in arms[arm] for arm in arms):
        lines.append("  seen prompts the fine-tune trained on / new seen prompts / unseen: " + "   ".join(
            f"{arm} " + " / ".join(
                f"{100 * part['rate']:.0f}%" if part else "-"
                for part in (arms[arm]["by_training"].get("trained"), arms[arm]["by_training"].get("new_seen"),
                             arms[arm]["by_split"].get("unseen")))
            for arm in arms))
    lines.append(f"  reward − base    {g['reward_vs_base']['points']:+.1f} points ({g['reward_vs_base']['z']:.1f} SE)")
    lines.append(
        f"  reward − uniform {g['reward_vs_uniform']['points']:+.1f} points ({g['reward_vs_uniform']['z']:.1f} SE)"
    )
    for arm in ("reliable", "clean", "oracle"):
        if f"{arm}_vs_base" in g:
            lines.append(f"  {arm + ' − base':<16} {g[f'{arm}_vs_base']['points']:+.1f} points "
                         f"({g[f'{arm}_vs_base']['z']:.1f} SE)")
    if "crowd" in report:
        c = report["crowd"]
        lines.append(
            f"crowd: {c['labels']} labels ({100 * c['label_accuracy']:.0f}% right), image truth by majority "
            f"{100 * c['majority_accuracy']:.1f}%, by rater-weighted posterior {100 * c['posterior_accuracy']:.1f}%"
        )
    if "fit" in report:
        f = report["fit"]
        lines.append(
            "fit of the pool (denoising loss, bad - good): "
            + "  ".join(f"{arm} {f[arm]['gap']:.4f}" for arm in f)
        )
    rm = report["reward_model"]["unseen"]
    lines.append(
        f"reward model on unseen prompts: AUC {rm['auc']:.3f}, accuracy {100 * rm['accuracy']:.1f}% "
        f"(CLIP score AUC {rm['clip_score_auc']:.3f}), n = {rm['n']}"
    )
    lines.append(f"time: {report['seconds']['total']:.0f} s")
    return "\n".join(lines)
