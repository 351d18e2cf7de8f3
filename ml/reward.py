"""The reward model r(x, z) = MLP(concat(CLIP image emb, CLIP text emb)) and its training.

Loss = MSE(y, r) + λ · CE(softmax(r(x, z_j) / T), original), the second term on good-labelled pairs
only, over the original prompt and N-1 perturbed prompts (`ml.prompts.perturb`).

Speed: CLIP is frozen, so training works on cached embeddings. The first layer is split into an
image half and a text half (W·[x; z] = W_x·x + W_z·z, the same function), so the image half is
computed once per image for all N prompts and the text half once per distinct text in a batch.
Perturbed prompts are embedded once, before training.

Pairwise votes (optional `pairs`): rows (image a, image b, prompt, share of votes preferring a, votes)
add a Bradley-Terry term on the MLP's logits, λ_pair · BCE(σ((l_a - l_b) / τ_pair), share), each pair
weighted by its number of votes; r = σ(l) as before. Without pairs the loss and every draw of random
numbers are those of the binary-only model.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ml.determinism import deterministic
from ml.embeddings import clip_score
from ml.metrics import pairwise_accuracy, roc_auc
from ml.prompts import VOCABULARIES, Vocabulary, parse_prompt, perturbed_texts

LABEL_VALUES = {"good": 1.0, "bad": 0.0}
TextVectors = Mapping[str, np.ndarray] | Callable[[Sequence[str]], np.ndarray]


@dataclass
class RewardConfig:
    hidden: int = field(default=1024, metadata={"help": "width of the two hidden layers"})
    lambda_pc: float = field(default=0.5, metadata={"help": "weight λ of the prompt-classification loss"})
    temperature: float = field(default=2.0, metadata={"help": "temperature T of the prompt classification"})
    n_prompts: int = field(default=10, metadata={"help": "N: original + N-1 perturbed prompts"})
    lr: float = field(default=2e-3, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay"})
    pc_fraction: float = field(
        default=0.1,
        metadata={
            "help": "share of a batch's good pairs that enter the prompt-classification term "
            "(a random subset: an unbiased estimate of its mean at a fraction of the cost; 1.0: all)"
        },
    )
    batch_size: int = field(
        default=2048,
        metadata={"help": "labelled pairs per step, at most: a small set takes smaller batches (8+ steps an epoch)"},
    )
    max_epochs: int = field(
        default=5, metadata={"help": "passes over the training set, unless min_steps needs more"}
    )
    min_steps: int = field(
        default=1500,
        metadata={
            "help": "optimizer steps at least, whatever the label count: a few hundred labels need "
            "a thousand small steps, not the handful that a few epochs of large batches give"
        },
    )
    patience: int = field(
        default=20,
        metadata={
            "help": "stop after this many validations without a better val MSE (about 20 per run; the best "
            "one is kept either way). A few prompts of validation are noisy: stopping at the first "
            "plateau kept an under-trained model (measured on the world: unseen AUC .83 at 5, .94 at 20)"
        },
    )
    val_fraction: float = field(
        default=0.15,
        metadata={"help": "share of the seen prompts held out for validation (it drives early stopping)"},
    )
    hold_out_unseen: bool = field(
        default=True,
        metadata={
            "help": "validate on every labelled prompt of an unseen object and never train on one: the paper "
            "reports accuracy on unseen prompts; they are measured after training, not used to stop it"
        },
    )
    vocabulary: str = field(
        default="paper",
        metadata={"help": "words the perturbed prompts are drawn from: 'paper' or 'world' (ml.prompts.VOCABULARIES)"},
    )
    lambda_pair: float = field(
        default=1.0,
        metadata={"help": "weight of the Bradley-Terry loss on pairwise votes (only when pairs are given)"},
    )
    pair_temperature: float = field(
        default=1.0,
        metadata={
            "help": "τ of the Bradley-Terry term: P(a preferred) = σ((logit r_a - logit r_b) / τ), on the "
            "MLP's logits, so r itself stays the sigmoid of the same logit the MSE trains"
        },
    )
    seed: int = field(default=0, metadata={"help": "seed of split, init, batching and perturbations"})
    precision: str = field(
        default="auto",
        metadata={
            "help": "'bf16' autocast while training, 'fp32', or 'auto' (bf16 where the hardware has it)"
        },
    )
    device: str | None = field(default=None, metadata={"help": "torch device; None: cuda if available"})


@dataclass
class RewardRow:
    image_key: str
    prompt: str
    label: str  # good | bad | skip
    # P(good) in place of the label's 0/1 as the MSE target (a rater-reliability posterior,
    # ml.reliability); the label still decides skip and which rows teach the prompt classification
    target: float | None = None


@dataclass
class PairRow:
    """A pairwise question on two images of one prompt: `share_a` of `votes` raters found image a
    follows the prompt better (a tie counts half to each side)."""

    image_a: str
    image_b: str
    prompt: str
    share_a: float
    votes: int = 1


class RewardMLP(nn.Module):
    def __init__(self, image_dim: int, text_dim: int, hidden: int = 1024):
        super().__init__()
        self.image_in = nn.Linear(image_dim, hidden)
        self.text_in = nn.Linear(text_dim, hidden, bias=False)
        self.hidden = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 1)

    def logit_head(self, image_h: torch.Tensor, text_h: torch.Tensor) -> torch.Tensor:
        """logit(r) from first-layer halves (broadcasting: one image against several texts)."""
        h = F.relu(self.hidden(F.relu(image_h + text_h)))
        return self.out(h).squeeze(-1)

    def head(self, image_h: torch.Tensor, text_h: torch.Tensor) -> torch.Tensor:
        """r from first-layer halves (broadcasting: one image against several texts)."""
        return torch.sigmoid(self.logit_head(image_h, text_h))

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.head(self.image_in(image), self.text_in(text))


def _use_bf16(precision: str, device: str) -> bool:
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, not {precision!r}")
    if precision != "auto":
        return precision == "bf16"
    # bf16 matmuls are 3-4x faster than fp32 where the CPU has them, and much slower where it does not.
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def mse_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return ((labels - scores) ** 2).mean()


def prompt_classification_loss(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """scores: (G, N) rewards of each good image against its N prompts, column 0 the original."""
    target = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    return F.cross_entropy(scores / temperature, target)


def pair_loss(
    logit_a: torch.Tensor, logit_b: torch.Tensor, share_a: torch.Tensor, votes: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Bradley-Terry: binary cross-entropy of σ((l_a - l_b) / τ) against the share of votes for a,
    weighted by each pair's number of votes (a pair of 9 votes counts 9 times one of 1)."""
    per = F.binary_cross_entropy_with_logits((logit_a - logit_b) / temperature, share_a, reduction="none")
    return (per * votes).sum() / votes.sum()


@dataclass
class RewardModel:
    """A trained reward model; load once with `load_reward`, score many times."""

    module: RewardMLP
    config: RewardConfig
    image_dim: int
    text_dim: int
    meta: dict = field(default_factory=dict)


@dataclass
class RewardResult:
    model: RewardModel
    metrics: dict  # validation metrics, including the CLIP-score baseline on the same split
    history: list[dict]  # per validation: epoch, step, train loss, val MSE
    best_epoch: int
    n_train: int
    n_val: int  # validation rows, seen and unseen
    n_skipped: int  # rows labelled skip (kept by the caller, not trained on)
    n_without_pc: int  # good rows whose prompt could not be perturbed (outside the template language)
    seconds: float
    n_val_unseen: int = 0  # validation rows of unseen-object prompts (measured only, never trained or stopped on)
    n_pairs_train: int = 0  # pairwise rows trained on (0 without pairs)
    n_pairs_val: int = 0  # pairwise rows of validation prompts (pair accuracy)


def _as_rows(rows: Sequence[RewardRow | Mapping]) -> list[RewardRow]:
    return [
        r if isinstance(r, RewardRow) else RewardRow(str(r["image_key"]), r["prompt"], r["label"], r.get("target"))
        for r in rows
    ]


def _as_pairs(pairs: Sequence[PairRow | Mapping] | None) -> list[PairRow]:
    out = [
        p if isinstance(p, PairRow) else PairRow(str(p["image_a"]), str(p["image_b"]), p["prompt"],
                                                 float(p["share_a"]), int(p.get("votes", 1)))
        for p in pairs or ()
    ]
    off = [p.share_a for p in out if not 0.0 <= p.share_a <= 1.0]
    if off:
        raise ValueError(f"pair shares must be in [0, 1]; got {off[:3]}")
    if any(p.votes < 1 for p in out):
        raise ValueError("every pair needs at least one vote")
    return out


def _text_fn(text_vectors: TextVectors) -> Callable[[Sequence[str]], np.ndarray]:
    if callable(text_vectors):
        return text_vectors
    return lambda texts: np.stack([np.asarray(text_vectors[t], np.float32) for t in texts])


def schedule(config: RewardConfig, n: int) -> tuple[int, int, int]:
    """(batch size, epochs, epochs between validations) for n training rows: at least `min_steps`
    steps and `max_epochs` epochs, batches small enough for 8 steps an epoch, about 20 validations."""
    batch = max(1, min(config.batch_size, max(32, math.ceil(n / 8))))
    per_epoch = math.ceil(n / batch)
    epochs = max(config.max_epochs, math.ceil(config.min_steps / per_epoch))
    return batch, epochs, max(1, epochs // 20)


def split_prompts(prompts: Sequence[str], val_fraction: float, seed: int) -> set[str]:
    """The validation prompts: a seeded share of distinct prompts, so no prompt is on both sides."""
    unique = sorted(set(prompts))
    random.Random(seed).shuffle(unique)
    n_val = max(1, round(len(unique) * val_fraction)) if val_fraction > 0 and len(unique) > 1 else 0
    return set(unique[:n_val])


def validation_prompts(
    prompts: Sequence[str], config: RewardConfig, vocabulary: Vocabulary
) -> tuple[set[str], set[str]]:
    """(seen, unseen) validation prompts: every prompt of an unseen object (with `hold_out_unseen`)
    and a seeded `val_fraction` of the others, the seen validation."""
    unique = sorted(set(prompts))
    unseen: set[str] = set()
    if config.hold_out_unseen:
        parsed = {p: parse_prompt(p, vocabulary) for p in unique}
        unseen = {p for p, q in parsed.items() if q is not None and q.split == "unseen"}
    seen = split_prompts([p for p in unique if p not in unseen], config.val_fraction, config.seed)
    return seen, unseen


@dataclass
class _Data:
    image: torch.Tensor  # (R, Di)
    text_idx: torch.Tensor  # (R,) index into texts
    label: torch.Tensor  # (R,)
    negatives: torch.Tensor  # (R, N-1) index into texts, valid where pc_mask
    pc_mask: torch.Tensor  # (R,) good and perturbable
    prompts: list[str]


def _batch_scores(model: RewardMLP, texts: torch.Tensor, d: _Data, idx: torch.Tensor, pc_fraction: float):
    """Scores of the rows `idx` against their prompt, and (G, N) scores of (a `pc_fraction` random
    subset of) the good rows against their N prompts."""
    image_h = model.image_in(d.image[idx])
    mask = d.pc_mask[idx]
    if pc_fraction < 1.0:
        mask = mask & (torch.rand(len(idx), device=idx.device) < pc_fraction)
    needed = torch.cat([d.text_idx[idx], d.negatives[idx][mask].flatten()])
    uniq, inverse = torch.unique(needed, return_inverse=True)
    text_h = model.text_in(texts[uniq])
    s0 = model.head(image_h, text_h[inverse[: len(idx)]])
    if not mask.any():
        return s0, None
    neg_h = text_h[inverse[len(idx) :]].view(int(mask.sum()), -1, text_h.shape[-1])
    s_neg = model.head(image_h[mask].unsqueeze(1), neg_h)
    return s0, torch.cat([s0[mask].unsqueeze(1), s_neg], dim=1)


def train_reward(
    config: RewardConfig,
    rows: Sequence[RewardRow | Mapping],
    image_vectors: Mapping[str, np.ndarray],
    text_vectors: TextVectors,
    progress: Callable[[int, int], None] | None = None,
    val_prompts: Collection[str] | None = None,
    pairs: Sequence[PairRow | Mapping] | None = None,
) -> RewardResult:
    """Train on labelled rows; `image_vectors[image_key]` and `text_vectors` (a mapping or a
    function of a list of texts) give the cached CLIP embeddings, perturbed prompts included.

    `val_prompts` fixes the validation prompts (early stopping and metrics on all of them); by
    default every unseen-object prompt is held out (`hold_out_unseen`) with a seeded `val_fraction`
    of the seen ones: early stopping watches the seen validation only, and the metrics cover both,
    `by_group` giving seen and unseen apart, as the paper reports them.

    `pairs` (optional) are pairwise votes on images of one prompt (`PairRow`); they add the
    Bradley-Terry term (`lambda_pair`, `pair_temperature`) and follow the same split: a pair of a
    validation prompt (or, with `hold_out_unseen`, of an unseen object) is measured, never trained
    on (`metrics["pairs"]`: accuracy of the predicted preference against the majority). Early
    stopping still watches the binary validation MSE."""
    t0 = time.perf_counter()
    all_rows = _as_rows(rows)
    bad = {r.label for r in all_rows} - {"good", "bad", "skip"}
    if bad:
        raise ValueError(f"unknown labels {sorted(bad)}; expected good, bad or skip")
    off = [r.target for r in all_rows if r.target is not None and not 0.0 <= r.target <= 1.0]
    if off:
        raise ValueError(f"targets must be probabilities in [0, 1]; got {off[:3]}")
    used = [r for r in all_rows if r.label != "skip"]
    if not used:
        raise ValueError("no good/bad rows to train on")
    pair_rows = _as_pairs(pairs)
    if config.n_prompts < 2:
        raise ValueError("n_prompts counts the original prompt too: it must be at least 2")
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    prompts = sorted({r.prompt for r in used})
    if config.vocabulary not in VOCABULARIES:
        raise ValueError(f"unknown vocabulary {config.vocabulary!r}; choose from {sorted(VOCABULARIES)}")
    vocabulary = VOCABULARIES[config.vocabulary]
    negatives = perturbed_texts(prompts, config.n_prompts - 1, config.seed, vocabulary)
    texts = list(dict.fromkeys(prompts + [t for ns in negatives.values() if ns for t in ns]))
    texts = list(dict.fromkeys(texts + [p.prompt for p in pair_rows]))  # unchanged without pairs
    tpos = {t: i for i, t in enumerate(texts)}
    text_mat = torch.from_numpy(np.asarray(_text_fn(text_vectors)(texts), np.float32)).to(device)
    missing = [r.image_key for r in used if r.image_key not in image_vectors]
    missing += [k for p in pair_rows for k in (p.image_a, p.image_b) if k not in image_vectors]
    if missing:
        raise KeyError(f"{len(missing)} image(s) have no embedding, e.g. {missing[:3]}")

    explicit_val = val_prompts is not None
    if val_prompts is None:
        stop_prompts, unseen_prompts = validation_prompts(prompts, config, vocabulary)
        val_prompts = stop_prompts | unseen_prompts
    else:
        val_prompts = stop_prompts = set(val_prompts)
        unseen_prompts = set()

    def build(part: list[RewardRow]) -> _Data:
        n_neg = config.n_prompts - 1
        neg = [negatives[r.prompt] or [r.prompt] * n_neg for r in part]
        return _Data(
            image=torch.from_numpy(
                np.stack([np.asarray(image_vectors[r.image_key], np.float32) for r in part])
            ).to(device),
            text_idx=torch.tensor([tpos[r.prompt] for r in part], device=device),
            label=torch.tensor(
                [LABEL_VALUES[r.label] if r.target is None else float(r.target) for r in part], device=device
            ),
            negatives=torch.tensor([[tpos[t] for t in ns] for ns in neg], device=device).view(-1, n_neg),
            pc_mask=torch.tensor(
                [r.label == "good" and negatives[r.prompt] is not None for r in part], device=device
            ),
            prompts=[r.prompt for r in part],
        )

    train_rows = [r for r in used if r.prompt not in val_prompts]
    val_rows = [r for r in used if r.prompt in val_prompts]
    if not train_rows:
        hint = " (every prompt is of an unseen object: set hold_out_unseen=False to train on them)" \
            if unseen_prompts and not stop_prompts else ""
        raise ValueError(f"every labelled prompt is in the validation set: nothing left to train on{hint}")
    train, val = build(train_rows), (build(val_rows) if val_rows else None)
    # early stopping never sees the unseen prompts: they measure generalisation, not choose the model
    stop_rows = [r for r in val_rows if r.prompt in stop_prompts]
    stop = val if len(stop_rows) == len(val_rows) else (build(stop_rows) if stop_rows else None)

    def pair_split(p: PairRow) -> bool:  # True: a validation pair
        if p.prompt in val_prompts:
            return True
        if p.prompt in prompts or not config.hold_out_unseen or explicit_val:
            return False  # a prompt with binary labels follows their split; otherwise only unseen ones are held out
        q = parse_prompt(p.prompt, vocabulary)
        return q is not None and q.split == "unseen"

    def build_pairs(part: list[PairRow]) -> _Pairs | None:
        if not part:
            return None
        vec = lambda k: np.asarray(image_vectors[k], np.float32)  # noqa: E731
        return _Pairs(
            image_a=torch.from_numpy(np.stack([vec(p.image_a) for p in part])).to(device),
            image_b=torch.from_numpy(np.stack([vec(p.image_b) for p in part])).to(device),
            text_idx=torch.tensor([tpos[p.prompt] for p in part], device=device),
            share_a=torch.tensor([p.share_a for p in part], dtype=torch.float32, device=device),
            votes=torch.tensor([float(p.votes) for p in part], device=device),
            prompts=[p.prompt for p in part],
        )

    val_pair_rows = [p for p in pair_rows if pair_split(p)]
    train_pair_rows = [p for p in pair_rows if not pair_split(p)]
    train_pairs, val_pairs = build_pairs(train_pair_rows), build_pairs(val_pair_rows)
    pair_gen = torch.Generator().manual_seed(config.seed + 1)  # its own stream: the binary draws stay as they were

    with torch.random.fork_rng(devices=[] if device == "cpu" else None), deterministic(device):
        torch.manual_seed(config.seed)
        module = RewardMLP(train.image.shape[1], text_mat.shape[1], config.hidden).to(device)
        opt = torch.optim.AdamW(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        autocast = torch.autocast(
            device_type=device.split(":")[0],
            dtype=torch.bfloat16,
            enabled=_use_bf16(config.precision, device),
        )
        history: list[dict] = []
        best = (math.inf, 0, {k: v.clone() for k, v in module.state_dict().items()})
        n = len(train_rows)
        batch, epochs, every = schedule(config, n)
        steps_per_epoch = math.ceil(n / batch)
        for epoch in range(1, epochs + 1):
            module.train()
            perm = torch.randperm(n, device=device)
            pair_chunks = (
                torch.randperm(len(train_pair_rows), generator=pair_gen).to(device).chunk(steps_per_epoch)
                if train_pairs is not None and config.lambda_pair > 0 else ()
            )
            total = 0.0
            for step_i, start in enumerate(range(0, n, batch)):
                idx = perm[start : start + batch]
                with autocast:
                    s0, s_all = _batch_scores(
                        module, text_mat, train, idx, config.pc_fraction if config.lambda_pc > 0 else 0.0
                    )
                    loss = mse_loss(s0.float(), train.label[idx])
                    if s_all is not None:
                        loss = loss + config.lambda_pc * prompt_classification_loss(
                            s_all.float(), config.temperature
                        )
                    if train_pairs is not None and step_i < len(pair_chunks):
                        loss = loss + config.lambda_pair * _pair_batch_loss(
                            module, text_mat, train_pairs, pair_chunks[step_i], config.pair_temperature
                        )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            if progress:
                progress(epoch, epochs)
            if epoch % every and epoch != epochs:
                continue
            with autocast:  # early stopping compares validations: bf16 resolves that, at a third of the cost
                val_mse = _val_mse(module, text_mat, stop) if stop else total / n
            history.append({"epoch": epoch, "step": epoch * math.ceil(n / batch), "train_loss": total / n,
                            "val_mse": val_mse})
            if val_mse < best[0]:
                best = (val_mse, epoch, {k: v.clone() for k, v in module.state_dict().items()})
            elif epoch - best[1] >= config.patience * every:
                break
        module.load_state_dict(best[2])
        module.eval()

    metrics = _evaluate(module, text_mat, val, config) if val else {}
    if val:
        metrics["by_group"] = _group_metrics(module, text_mat, val)
        val_texts = {r.prompt for r in val_rows}
        metrics["validation"] = {
            "prompts": len(val_texts),
            "unseen_prompts": len(val_texts & unseen_prompts),
            "early_stopping_prompts": len(val_texts & stop_prompts),
        }
        img = val.image.cpu().numpy()
        txt = text_mat[val.text_idx].cpu().numpy()
        metrics.update(_ranking(val, clip_score(img, txt), prefix="clip_"))
    if val_pairs is not None:
        metrics["pairs"] = _pair_metrics(module, text_mat, val_pairs, config)
    model = RewardModel(
        module=module,
        config=config,
        image_dim=train.image.shape[1],
        text_dim=text_mat.shape[1],
        meta={"metrics": metrics},
    )
    return RewardResult(
        model=model,
        metrics=metrics,
        history=history,
        best_epoch=best[1],
        n_train=len(train_rows),
        n_val=len(val_rows),
        n_skipped=len(all_rows) - len(used),
        n_without_pc=sum(1 for r in used if r.label == "good" and negatives[r.prompt] is None),
        seconds=time.perf_counter() - t0,
        n_val_unseen=sum(1 for r in val_rows if r.prompt in unseen_prompts),
        n_pairs_train=len(train_pair_rows),
        n_pairs_val=len(val_pair_rows),
    )


@dataclass
class _Pairs:
    image_a: torch.Tensor  # (P, Di)
    image_b: torch.Tensor
    text_idx: torch.Tensor  # (P,) index into texts
    share_a: torch.Tensor  # (P,) share of votes preferring a
    votes: torch.Tensor  # (P,)
    prompts: list[str]


def _pair_logits(module: RewardMLP, texts: torch.Tensor, d: _Pairs, idx: torch.Tensor):
    text_h = module.text_in(texts[d.text_idx[idx]])
    return (module.logit_head(module.image_in(d.image_a[idx]), text_h),
            module.logit_head(module.image_in(d.image_b[idx]), text_h))


def _pair_batch_loss(module: RewardMLP, texts: torch.Tensor, d: _Pairs, idx: torch.Tensor, temperature: float):
    la, lb = _pair_logits(module, texts, d, idx)
    return pair_loss(la.float(), lb.float(), d.share_a[idx], d.votes[idx], temperature)


@torch.no_grad()
def _pair_metrics(module: RewardMLP, texts: torch.Tensor, d: _Pairs, config: RewardConfig) -> dict:
    """Pair accuracy (the predicted preference against the majority of votes, pairs without a
    majority left out) and the Bradley-Terry loss, over all validation pairs and per split."""
    module.eval()
    idx = torch.arange(len(d.prompts), device=texts.device)
    la, lb = _pair_logits(module, texts, d, idx)
    diff = (la - lb).float().cpu().numpy()
    share = d.share_a.cpu().numpy()
    decided = share != 0.5
    correct = (diff > 0) == (share > 0.5)
    out: dict[str, Any] = {
        "n": len(d.prompts),
        "decided": int(decided.sum()),
        "accuracy": float(correct[decided].mean()) if decided.any() else float("nan"),
        "loss": float(pair_loss(la.float(), lb.float(), d.share_a, d.votes, config.pair_temperature)),
    }
    splits = np.array([getattr(parse_prompt(p), "split", "") for p in d.prompts])
    for split in ("seen", "unseen"):
        m = decided & (splits == split)
        if m.any():
            out[split] = {"n": int(m.sum()), "accuracy": float(correct[m].mean())}
    module.train()
    return out


def _ranking(d: _Data, scores: np.ndarray, prefix: str = "") -> dict:
    labels = d.label.cpu().numpy() > 0.5
    pair_acc, n_pairs = pairwise_accuracy(d.prompts, labels, scores)
    return {
        f"{prefix}auc": roc_auc(labels, scores),
        f"{prefix}pairwise_accuracy": pair_acc,
        "n_pairs": n_pairs,
    }


@torch.no_grad()
def _group_metrics(module: RewardMLP, texts: torch.Tensor, d: _Data) -> dict:
    """Accuracy, AUC and pairwise accuracy per split (seen/unseen) and per category, for prompts in
    the template language: the paper reports unseen-prompt accuracy separately."""
    idx = torch.arange(len(d.prompts), device=texts.device)
    scores = _batch_scores(module, texts, d, idx, 0.0)[0].cpu().numpy()
    labels = d.label.cpu().numpy() > 0.5
    parsed = {p: parse_prompt(p) for p in set(d.prompts)}
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(d.prompts):
        prompt = parsed[p]
        if prompt is not None:
            groups.setdefault(prompt.split, []).append(i)
            groups.setdefault(prompt.category, []).append(i)
    out = {}
    for name, rows in sorted(groups.items()):
        r = np.asarray(rows)
        pair_acc, n_pairs = pairwise_accuracy([d.prompts[i] for i in rows], labels[r], scores[r])
        out[name] = {
            "n": len(rows),
            "accuracy": float(((scores[r] > 0.5) == labels[r]).mean()),
            "auc": roc_auc(labels[r], scores[r]),
            "pairwise_accuracy": pair_acc,
            "n_pairs": n_pairs,
        }
    return out


@torch.no_grad()
def _val_mse(module: RewardMLP, texts: torch.Tensor, d: _Data) -> float:
    """The early-stopping criterion; cheap (no prompt classification) because it runs every epoch."""
    module.eval()
    idx = torch.arange(len(d.prompts), device=texts.device)
    s0, _ = _batch_scores(module, texts, d, idx, 0.0)
    module.train()
    return float(((s0.float() - d.label) ** 2).mean())


@torch.no_grad()
def _evaluate(module: RewardMLP, texts: torch.Tensor, d: _Data, config: RewardConfig) -> dict:
    module.eval()
    s0_parts, correct, n_pc = [], 0, 0
    for start in range(0, len(d.prompts), 8192):
        idx = torch.arange(start, min(start + 8192, len(d.prompts)), device=texts.device)
        s0, s_all = _batch_scores(module, texts, d, idx, 1.0)
        s0_parts.append(s0)
        if s_all is not None:
            correct += int((s_all.argmax(dim=1) == 0).sum())
            n_pc += s_all.shape[0]
    s0 = torch.cat(s0_parts)
    scores = s0.cpu().numpy()
    labels = d.label.cpu().numpy()
    out = {
        "mse": float(((scores - labels) ** 2).mean()),
        "accuracy": float(((scores > 0.5) == (labels > 0.5)).mean()),
        "prompt_classification_accuracy": correct / n_pc if n_pc else float("nan"),
    }
    out.update(_ranking(d, scores))
    module.train()
    return out


def score(
    model: RewardModel, image_vectors: np.ndarray, text_vectors: np.ndarray, batch_size: int = 8192
) -> np.ndarray:
    """r(x, z) in (0, 1) for aligned rows of image and text embeddings (fp32)."""
    module = model.module
    device = next(module.parameters()).device
    out = []
    with torch.no_grad():
        for s in range(0, len(image_vectors), batch_size):
            img = torch.as_tensor(np.asarray(image_vectors[s : s + batch_size], np.float32), device=device)
            txt = torch.as_tensor(np.asarray(text_vectors[s : s + batch_size], np.float32), device=device)
            out.append(module(img, txt).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def save_reward(model: RewardModel, out_dir: str | Path) -> Path:
    """Write `model.safetensors` + `config.json` (config, input sizes, metrics)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in model.module.state_dict().items()},
        str(out / "model.safetensors"),
    )
    meta = {
        "kind": "reward",
        "config": asdict(model.config),
        "image_dim": model.image_dim,
        "text_dim": model.text_dim,
        **model.meta,
    }
    (out / "config.json").write_text(json.dumps(meta, indent=2, default=_json_default))
    return out


def _json_default(x: Any) -> Any:
    return None if isinstance(x, float) and math.isnan(x) else str(x)


def load_reward(path: str | Path, device: str | None = None) -> RewardModel:
    from safetensors.torch import load_file

    path = Path(path)
    meta = json.loads((path / "config.json").read_text())
    names = {f.name for f in fields(RewardConfig)}
    config = RewardConfig(**{k: v for k, v in meta["config"].items() if k in names})
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    module = RewardMLP(meta["image_dim"], meta["text_dim"], config.hidden)
    module.load_state_dict(load_file(str(path / "model.safetensors")))
    module.to(device).eval()
    extra = {k: v for k, v in meta.items() if k not in ("kind", "config", "image_dim", "text_dim")}
    return RewardModel(
        module=module, config=config, image_dim=meta["image_dim"], text_dim=meta["text_dim"], meta=extra
    )
