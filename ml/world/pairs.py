"""Pairs as a training signal, measured in the shapes world: the paper's reward-weighted fine-tune
against a reward model that also learns from pairwise votes, and against Diffusion-DPO on the pairs.

One pool from the base model (training prompts × `pool_per_prompt` images). Raters answer two kinds
of question about it, each answer wrong with probability `rater_error`:
- good/bad on the first `labels_per_prompt` images of each prompt (one answer per image, as the paper);
- "which of the two follows the prompt better?" on `pairs_per_prompt` disjoint random pairs of a
  prompt's images, `votes_per_pair` raters a pair (the service's 9). A rater prefers the image the
  oracle calls aligned; when both or neither are, the one the oracle draws more cleanly (`quality`,
  a difference of at least `ml.world.raters.QUALITY_TIE`), else either at random. The choice is forced
  (no "tie"), then flipped with probability `rater_error`.

Arms, all fine-tuned from the same base with the same data order, seeds and pre-training pairs and
drawn on the same evaluation prompts and seeds:
- reward: the paper's loss, weights from a reward model trained on the binary labels only;
- pairs: the same loss, weights from a reward model trained on the binary labels and the votes
  (Bradley-Terry on the vote shares, `ml.reward.train_reward(pairs=...)`);
- dpo: Diffusion-DPO on the voted pairs, preferred = the majority's image (`ml.finetune`, objective
  "dpo"); it sees no binary label.
"""

from __future__ import annotations

import json
import pickle
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ml.finetune import PRESETS
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
)
from ml.world.measure import arm_metrics, paired_gain
from ml.world.raters import QUALITY_TIE

ARMS = ("base", "reward", "pairs", "dpo")


@dataclass
class PairsConfig:
    seed: int = field(default=0, metadata={"help": "seed of prompts, pool, answers, training and sampling"})
    train_prompts: int = field(default=48, metadata={"help": "seen-object prompts in the pool"})
    pool_per_prompt: int = field(default=32, metadata={"help": "images per pool prompt"})
    labels_per_prompt: int = field(default=16, metadata={"help": "good/bad labels per pool prompt (its first images)"})
    pairs_per_prompt: int = field(
        default=8, metadata={"help": "voted pairs per pool prompt (disjoint random pairs of its images)"}
    )
    votes_per_pair: int = field(default=9, metadata={"help": "raters per pair (the service's 9)"})
    rater_error: float = field(
        default=0.1, metadata={"help": "share of answers (labels and votes alike) that are wrong"}
    )
    lambda_pair: float = field(default=1.0, metadata={"help": "weight of the Bradley-Terry term (pairs arm)"})
    dpo_beta: float = field(default=5000.0, metadata={"help": "β of Diffusion-DPO (the dpo arm)"})
    eval_prompts: int = field(default=60, metadata={"help": "evaluation prompts, half seen and half unseen"})
    eval_images_per_prompt: int = field(default=8, metadata={"help": "images per evaluation prompt and arm"})
    reward_val_prompts: int = field(default=24, metadata={"help": "unseen prompts the reward models are measured on"})
    reward_val_images: int = field(default=16, metadata={"help": "images per such prompt"})
    reward_min_steps: int = field(default=1500, metadata={"help": "reward training: optimizer steps at least"})
    finetune_steps: int = field(default=500, metadata={"help": "optimizer steps per fine-tuned arm"})
    finetune_batch: int = field(
        default=PRESETS["world"]["batch_size"],
        metadata={"help": "pool samples per step (DPO: half as many pairs) and as many pre-training pairs"},
    )
    pretrain_pairs: int = field(default=2000, metadata={"help": "pre-training pairs for the β term"})
    finetune_workers: int = field(default=0, metadata={"help": "fine-tunes side by side (ml.world.loop)"})
    pool_cache: str | None = field(
        default=None,
        metadata={"help": "pickle of the drawn pool and validation images, reused when its settings match"},
    )

    def __post_init__(self) -> None:
        if not 0 < self.labels_per_prompt <= self.pool_per_prompt:
            raise ValueError("labels_per_prompt must be between 1 and pool_per_prompt")
        if not 0 <= 2 * self.pairs_per_prompt <= self.pool_per_prompt:
            raise ValueError("pairs_per_prompt: each pair takes two images of the prompt's pool_per_prompt")
        if self.votes_per_pair < 1 or self.votes_per_pair % 2 == 0:
            raise ValueError("votes_per_pair must be odd (a majority decides the DPO pair)")
        if not 0.0 <= self.rater_error <= 0.5:
            raise ValueError("rater_error must be between 0 and 0.5")


# A configuration small enough for the test suite (about a minute).
TINY = PairsConfig(train_prompts=8, pool_per_prompt=8, labels_per_prompt=4, pairs_per_prompt=4, eval_prompts=8,
                   eval_images_per_prompt=2, reward_val_prompts=4, reward_val_images=4, reward_min_steps=50,
                   finetune_steps=4, finetune_batch=8, pretrain_pairs=16, finetune_workers=1)


def simulate_votes(
    truth: Sequence[bool] | np.ndarray, quality: Sequence[float], pairs: Sequence[tuple[int, int]], votes: int,
    error: float, rng: random.Random,
) -> list[int]:
    """Votes for the first image of each pair out of `votes` raters (see the module doc)."""
    out = []
    for a, b in pairs:
        n_a = 0
        for _ in range(votes):
            if truth[a] != truth[b]:
                prefer_a = bool(truth[a])
            elif abs(quality[a] - quality[b]) >= QUALITY_TIE:
                prefer_a = quality[a] > quality[b]
            else:
                prefer_a = rng.random() < 0.5
            if error > 0 and rng.random() < error:
                prefer_a = not prefer_a
            n_a += prefer_a
        out.append(n_a)
    return out


def draw_pairs(per_prompt: int, n_prompts: int, pairs_per_prompt: int, rng: random.Random) -> list[tuple[int, int]]:
    """Disjoint random pairs of images of one prompt (pool indices, prompt-major)."""
    out = []
    for p in range(n_prompts):
        idx = rng.sample(range(per_prompt), 2 * pairs_per_prompt)
        out += [(p * per_prompt + idx[2 * k], p * per_prompt + idx[2 * k + 1]) for k in range(pairs_per_prompt)]
    return out


def pair_accuracy(scores: np.ndarray, pairs: Sequence[tuple[int, int]], votes_a: Sequence[int], votes: int) -> float:
    """Share of pairs where the higher score is the majority's image."""
    ok = [(scores[a] > scores[b]) == (v > votes / 2) for (a, b), v in zip(pairs, votes_a, strict=True)]
    return float(np.mean(ok)) if ok else float("nan")


def _pool(config: PairsConfig, sd: Path, requests: list[tuple[str, int]], loop_cfg: WorldLoopConfig,
          progress: Callable[[int, int], None] | None) -> list[Any]:
    """The base model's images of `requests`, from `pool_cache` when it holds the same requests."""
    key = {"model": str(sd), "requests": requests, "steps": loop_cfg.sampler_steps,
           "guidance": loop_cfg.guidance_scale}
    path = Path(config.pool_cache) if config.pool_cache else None
    if path is not None and path.is_file():
        cached = pickle.loads(path.read_bytes())
        if cached.get("key") == key:
            return cached["images"]
    images = generate_images(sd, requests, loop_cfg, progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps({"key": key, "images": images}))
    return images


def run_pairs(
    config: PairsConfig, models: str | Path, out_dir: str | Path, progress: Progress | None = None
) -> dict[str, Any]:
    """Run the comparison; writes `out/report.json` and the fine-tuned adapters."""
    from ml.embeddings import embed_images, embed_texts, load_clip
    from ml.finetune import FinetuneConfig, ModelSample
    from ml.metrics import roc_auc
    from ml.reward import PairRow, RewardConfig, score, train_reward
    from ml.world.corpus import pretrain_pairs
    from ml.world.oracle import judge

    clock = Stages(progress)
    stage, timed, seconds = clock.bar, clock.add, clock.seconds
    models, out = Path(models), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sd = models / "sd"
    loop_cfg = WorldLoopConfig(seed=config.seed)

    # 1. prompts (as world-loop chooses them) and the pool
    t0 = time.perf_counter()
    prompts = world_prompts(config)
    train, reward_val, evaluation = prompts.train, prompts.reward_val, prompts.evaluation
    per = config.pool_per_prompt
    pool_req = [(p.text, config.seed * 1000 + s) for p in train for s in range(per)]
    val_req = [(p.text, REWARD_VAL_SEED + s) for p in reward_val for s in range(config.reward_val_images)]
    images = _pool(config, sd, pool_req + val_req, loop_cfg, stage("generate pool"))
    pool_images, val_images = images[: len(pool_req)], images[len(pool_req):]
    timed("generate_pool", t0)

    # 2. the oracle's truth; raters' labels and votes (each answer wrong with rater_error)
    t0 = time.perf_counter()
    pool_v = judge(pool_images, [t for t, _ in pool_req])
    val_v = judge(val_images, [t for t, _ in val_req])
    pool_truth = np.array([v.aligned for v in pool_v])
    val_truth = np.array([v.aligned for v in val_v])
    rng = random.Random(config.seed + 31)
    labelled = [i for i in range(len(pool_req)) if i % per < config.labels_per_prompt]
    labels = {i: bool(pool_truth[i]) != (rng.random() < config.rater_error) for i in labelled}
    pairs = draw_pairs(per, len(train), config.pairs_per_prompt, rng)
    votes_a = simulate_votes(pool_truth, [v.quality for v in pool_v], pairs, config.votes_per_pair,
                             config.rater_error, rng)
    majority = [(a, b) if v > config.votes_per_pair / 2 else (b, a) for (a, b), v in zip(pairs, votes_a, strict=True)]
    mixed = [pool_truth[a] != pool_truth[b] for a, b in pairs]
    # unseen-prompt pairs, voted the same way: the reward models' pair accuracy where no answer reached them
    vper = config.reward_val_images
    val_pairs = draw_pairs(vper, len(reward_val), vper // 2, rng)
    val_votes = simulate_votes(val_truth, [v.quality for v in val_v], val_pairs, config.votes_per_pair,
                               config.rater_error, rng)
    timed("label_and_vote", t0)

    # 3. CLIP embeddings and the two reward models
    t0 = time.perf_counter()
    clip = load_clip(models / "clip", device="cpu")
    pool_vec = embed_images(clip, pool_images).vectors
    val_vec = embed_images(clip, val_images).vectors

    def text_fn(texts: Sequence[str]) -> np.ndarray:
        return embed_texts(clip, list(texts)).vectors

    pool_text, val_text = text_fn([t for t, _ in pool_req]), text_fn([t for t, _ in val_req])
    timed("embed", t0)
    rows = [{"image_key": f"pool-{i}", "prompt": pool_req[i][0], "label": "good" if labels[i] else "bad"}
            for i in labelled]
    pair_rows = [PairRow(f"pool-{a}", f"pool-{b}", pool_req[a][0], v / config.votes_per_pair, config.votes_per_pair)
                 for (a, b), v in zip(pairs, votes_a, strict=True)]
    keys = {f"pool-{i}": pool_vec[i] for i in range(len(pool_req))}
    weights: dict[str, np.ndarray] = {}
    reward_reports: dict[str, Any] = {}
    unlabelled = np.ones(len(pool_req), bool)
    unlabelled[labelled] = False
    for arm, with_pairs in (("reward", False), ("pairs", True)):
        t0 = time.perf_counter()
        rc = RewardConfig(vocabulary="world", seed=config.seed, device="cpu", min_steps=config.reward_min_steps,
                          lambda_pair=config.lambda_pair)
        result = train_reward(rc, rows, keys, text_fn, progress=stage(f"train reward ({arm})"),
                              pairs=pair_rows if with_pairs else None)
        val_scores = score(result.model, val_vec, val_text)
        weights[arm] = score(result.model, pool_vec, pool_text)
        reward_reports[arm] = {
            "unseen_auc": roc_auc(val_truth, val_scores),
            "unseen_accuracy": float(((val_scores > 0.5) == val_truth).mean()),
            "unseen_pair_accuracy": pair_accuracy(val_scores, val_pairs, val_votes, config.votes_per_pair),
            "unlabelled_pool_auc": roc_auc(pool_truth[unlabelled], weights[arm][unlabelled]),
            "pool_pair_accuracy": pair_accuracy(weights[arm], pairs, votes_a, config.votes_per_pair),
            "validation_pairs": result.metrics.get("pairs"),
            "n_train": result.n_train,
            "n_pairs_train": result.n_pairs_train,
            "mean_weight": {"good": float(weights[arm][pool_truth].mean()),
                            "bad": float(weights[arm][~pool_truth].mean())},
        }
        timed(f"train_reward_{arm}", t0)

    # 4. three fine-tunes from the same base, data order, seeds and pre-training pairs
    pre = pretrain_pairs(config.pretrain_pairs, seed=config.seed + 7)
    preset = PRESETS["world"]
    ft = FinetuneConfig(mode=preset["mode"], lora_rank=preset["lora_rank"], lr=preset["lr"],
                        max_steps=config.finetune_steps, batch_size=config.finetune_batch, beta=preset["beta"],
                        seed=config.seed, checkpoint_every=10**9, mixed_precision="no",
                        caption_dropout=preset["caption_dropout"], snr_gamma=preset["snr_gamma"])
    dpo_ft = FinetuneConfig(**{**asdict(ft), "objective": "dpo", "dpo_beta": config.dpo_beta})

    def samples(w: np.ndarray) -> list[ModelSample]:
        return [ModelSample(image=im, prompt=t, reward=float(x)) for im, (t, _), x in zip(pool_images, pool_req, w,
                                                                                          strict=True)]

    jobs: dict[str, tuple] = {
        "dpo": (dpo_ft, sd, samples(np.zeros(len(pool_req))), out / "finetune-dpo", pre, majority),
        "reward": (ft, sd, samples(weights["reward"]), out / "finetune-reward", pre),
        "pairs": (ft, sd, samples(weights["pairs"]), out / "finetune-pairs", pre),
    }
    t0 = time.perf_counter()
    checkpoints, arm_seconds = finetune_arms(jobs, config.finetune_workers, progress)
    for arm, sec in arm_seconds.items():
        seconds[f"finetune_{arm}"] = round(sec, 2)
    timed("finetune", t0)

    # 5. every arm draws the evaluation prompts with the same seeds; the oracle judges
    t0 = time.perf_counter()
    n_img = config.eval_images_per_prompt
    eval_req = [(p.text, EVAL_SEED + s) for p in evaluation for s in range(n_img)]
    eval_prompts = [p for p in evaluation for _ in range(n_img)]
    verdicts = {}
    for arm in ARMS:
        imgs = generate_images(sd, eval_req, loop_cfg, stage(f"evaluate {arm}"),
                               lora=None if arm == "base" else checkpoints[arm])
        verdicts[arm] = judge(imgs, [t for t, _ in eval_req])
    timed("evaluate", t0)

    budget = {
        "reward": {"binary_labels": len(labelled), "pairs": 0, "votes": 0},
        "pairs": {"binary_labels": len(labelled), "pairs": len(pairs), "votes": len(pairs) * config.votes_per_pair},
        "dpo": {"binary_labels": 0, "pairs": len(pairs), "votes": len(pairs) * config.votes_per_pair},
    }
    vote_share_right = [(v if pool_truth[a] else config.votes_per_pair - v) / config.votes_per_pair
                        for (a, b), v, m in zip(pairs, votes_a, mixed, strict=True) if m]
    report: dict[str, Any] = {
        "config": asdict(config),
        "models": str(models),
        "prompts": {"train": len(train), "evaluation": prompts.evaluation_splits,
                    "reward_validation_unseen": len(reward_val)},
        "pool": {
            "images": len(pool_req),
            "good_rate": float(pool_truth.mean()),
            "labelled": len(labelled),
            "labels_right": float(np.mean([labels[i] == bool(pool_truth[i]) for i in labelled])),
            "pairs": len(pairs),
            "mixed_pairs": int(sum(mixed)),
            "majority_right_on_mixed": float(np.mean([
                (v > config.votes_per_pair / 2) == bool(pool_truth[a])
                for (a, b), v, m in zip(pairs, votes_a, mixed, strict=True) if m])) if any(mixed) else None,
            "vote_share_for_aligned_on_mixed": float(np.mean(vote_share_right)) if vote_share_right else None,
        },
        "label_budget": budget,
        "reward_models": reward_reports,
        "arms": {arm: arm_metrics(eval_prompts, verdicts[arm]) for arm in ARMS},
        "gains": {
            **{f"{arm}_vs_base": paired_gain(verdicts[arm], verdicts["base"], eval_prompts)
               for arm in ("reward", "pairs", "dpo")},
            "pairs_vs_reward": paired_gain(verdicts["pairs"], verdicts["reward"], eval_prompts),
            "dpo_vs_reward": paired_gain(verdicts["dpo"], verdicts["reward"], eval_prompts),
        },
        "eval": {"prompts": config.eval_prompts, "images_per_prompt": n_img, "images_per_arm": len(eval_req)},
    }
    report["seconds"] = clock.total()
    (out / "report.json").write_text(json.dumps(report, indent=2, default=_json_default))
    return report


def summary(report: dict[str, Any]) -> str:
    arms, g, b = report["arms"], report["gains"], report["label_budget"]
    names = {"base": "base", "reward": "reward-weighted (paper)", "pairs": "+ pairs", "dpo": "DPO"}
    lines = ["oracle alignment (± SE clustered by prompt), drawing quality, answers used:"]
    for arm in arms:
        a = arms[arm]["aligned"]
        cats = " ".join(f"{c[:5]} {100 * arms[arm]['by_category'][c]['rate']:.0f}%" for c in CATEGORIES)
        gain = g.get(f"{arm}_vs_base")
        gtxt = f"  {gain['points']:+5.1f} ({gain['z']:+.1f} SE)" if gain else " " * 17
        used = f"  {b[arm]['binary_labels']} labels, {b[arm]['votes']} votes" if arm in b else ""
        lines.append(f"  {names[arm]:<24} {100 * a['rate']:5.1f}% ± {100 * a['se']:.1f}{gtxt}  q "
                     f"{arms[arm]['quality']['rate']:.2f}  ({cats}){used}")
    for k in ("pairs_vs_reward", "dpo_vs_reward"):
        lines.append(f"  {k.replace('_vs_', ' − '):<24} {g[k]['points']:+.1f} points ({g[k]['z']:.1f} SE)")
    for arm, r in report["reward_models"].items():
        lines.append(f"reward model ({arm}): unseen AUC {r['unseen_auc']:.3f}, unseen pair accuracy "
                     f"{r['unseen_pair_accuracy']:.3f}, pool AUC {r['unlabelled_pool_auc']:.3f}")
    p = report["pool"]
    lines.append(f"pool: {p['images']} images, {p['labelled']} labels ({100 * p['labels_right']:.0f}% right), "
                 f"{p['pairs']} pairs ({p['mixed_pairs']} with one aligned image)")
    lines.append(f"time: {report['seconds']['total']:.0f} s")
    return "\n".join(lines)
