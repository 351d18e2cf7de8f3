"""Reward-weighted fine-tuning of the Stable Diffusion UNet (the paper's section 4).

Loss(θ) = mean over generated samples of r(x, z)·ℓ(x, z) + β · mean over pre-training pairs of ℓ(x, z),
ℓ the ε-prediction (or v-prediction, as the scheduler says) denoising loss; r is a fixed weight.
Only the UNet trains (fully, or LoRA on its attention projections); VAE and text encoder are frozen.

The loop runs under `accelerate.Accelerator`, so `accelerate launch` spreads it over several GPUs.

With `objective="dpo"` the generated samples come in pairs (preferred, rejected) of one prompt and
the loss is Diffusion-DPO's (Wallace et al., 2023) instead of the reward-weighted one, β·ℓ_pre
still added; see `dpo_loss`.

Pre-training data (D_pre) is a folder in either form:
  * `metadata.jsonl` with one `{"file_name": "x.png", "text": "a caption"}` per line (the Hugging Face
    imagefolder format), or
  * image files with a caption file of the same stem beside them: `x.png` + `x.txt`.
Without pre-training data the β term is skipped and the result says so in `warnings`.

Checkpoints (`out_dir/checkpoint-<step>/`) are what `ml.generation.load_generator` reads: a full
pipeline folder (mode "full") or a LoRA adapter folder to put on the base model (mode "lora"), plus
`finetune.json`; the newest also holds `training_state.pt` (trained weights, optimizer, schedule, step,
RNG states, EMA) for resuming exactly where it stopped. Only the newest `keep_checkpoints` stay.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings as pywarnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ml.generation import Cancelled

if TYPE_CHECKING:
    from ml.latent_cache import LatentCache

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass
class FinetuneConfig:
    mode: str = field(default="lora", metadata={"help": "'full' (all UNet weights) or 'lora'"})
    lora_rank: int = field(default=8, metadata={"help": "LoRA rank (the paper's range: 4-32)"})
    lora_targets: str | None = field(
        default=None,
        metadata={
            "help": "UNet modules that get LoRA adapters: a regular expression over module names (peft's "
            "full-match rule), e.g. '.*attn2\\.(to_k|to_v)' for the cross-attention keys and values only; "
            "None: every attention projection (to_q, to_k, to_v, to_out.0)"
        },
    )
    lr: float | None = field(default=None, metadata={"help": "learning rate; None: 2e-5 full, 1e-4 LoRA"})
    adam_betas: tuple[float, float] = field(default=(0.9, 0.999), metadata={"help": "AdamW betas"})
    adam_eps: float = field(default=1e-8, metadata={"help": "AdamW epsilon"})
    weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay"})
    beta: float = field(default=1.0, metadata={"help": "β, weight of the pre-training denoising loss"})
    max_steps: int = field(default=1000, metadata={"help": "optimizer steps"})
    warmup_steps: int | None = field(
        default=None,
        metadata={
            "help": "steps of linear learning-rate warm-up, then constant; None: 10% of max_steps, at most 500. "
            "A fresh Adam moves every weight by about lr per step from the first step on: without warm-up "
            "that shakes a converged model before its gradients are known"
        },
    )
    batch_size: int = field(
        default=4,
        metadata={"help": "generated samples per micro-batch and device (and as many pre-training pairs)"},
    )
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per step"})
    mixed_precision: str = field(
        default="auto", metadata={"help": "'no', 'fp16', 'bf16'; auto: fp16 on CUDA"}
    )
    gradient_checkpointing: bool | None = field(default=None, metadata={"help": "None: on for CUDA"})
    caption_dropout: float = field(
        default=0.0,
        metadata={
            "help": "share of generated samples trained with the empty prompt (with their weight): the "
            "unconditional branch then follows the same data, so classifier-free guidance does not count "
            "twice what the samples already owe to it"
        },
    )
    snr_gamma: float | None = field(
        default=None,
        metadata={
            "help": "min-SNR-γ timestep weighting (Hang et al., 2023; e.g. 5.0): the low-noise steps, which "
            "hold pixel detail, weigh less than the high-noise ones, which decide layout, count and colour; "
            "use what the model was pre-trained with; None: plain mean over timesteps"
        },
    )
    min_timestep: int = field(
        default=0,
        metadata={
            "help": "train on noise levels from this timestep up only (0: all). What an image shows - how "
            "many objects, which colour, where - is decided in the noisy steps; the quiet ones draw the "
            "detail. Trained on its own samples, a model also learns their blur at the quiet steps; leaving "
            "those out spends the budget on what the labels judge and keeps the base's drawing"
        },
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm"})
    resolution: int | None = field(default=None, metadata={"help": "training image size; None: model's"})
    checkpoint_every: int = field(default=500, metadata={"help": "steps between checkpoints (and at end)"})
    keep_checkpoints: int = field(
        default=2,
        metadata={
            "help": "checkpoints kept on disk, newest first; older ones are deleted. Only the newest keeps the "
            "resume state (optimizer, RNG, the trained weights in fp32): a full SD1.5 fine-tune's is ~10 GB"
        },
    )
    checkpoint_dtype: str = field(
        default="auto",
        metadata={"help": "dtype of a full fine-tune's saved UNet: 'fp32', 'fp16'; auto: fp16 on CUDA, fp32 on CPU"},
    )
    ema_decay: float | None = field(
        default=None,
        metadata={
            "help": "keep an exponential moving average of the trained weights with this decay (e.g. 0.99) "
            "and save it instead of the last weights: smooths the noise of high learning rates; None: off"
        },
    )
    init_adapter: str | None = field(
        default=None,
        metadata={
            "help": "LoRA adapter folder (as this module writes) that the fine-tune starts from, on top of the "
            "base model: a LoRA fine-tune continues it (same rank and targets), a full one fuses it into the "
            "weights first. How a later round starts from the generator of the round before; None: the base"
        },
    )
    seed: int = field(default=0, metadata={"help": "seed of data order, noise and timesteps"})
    objective: str = field(
        default="reward_weighted",
        metadata={
            "help": "'reward_weighted' (the paper: each sample's loss times its reward) or 'dpo' (Diffusion-DPO "
            "on pairs of a preferred and a rejected sample of one prompt, against the frozen base as the "
            "reference; with LoRA the reference is the UNet with its adapter switched off)"
        },
    )
    dpo_beta: float = field(
        default=5000.0,
        metadata={
            "help": "β of Diffusion-DPO, in the reference implementation's scale (the T of the paper's bound "
            "folded in, losses as means over latent elements): 5000 is what Wallace et al. used for SD1.5"
        },
    )
    use_8bit_adam: bool = field(
        default=False,
        metadata={
            "help": "AdamW with 8-bit states (bitsandbytes, installed separately): the optimizer's memory "
            "falls from 8 to 2 bytes per trained weight (a full SD1.5 fine-tune: 6.4 GB to 1.6 GB)"
        },
    )
    data_workers: int = field(
        default=0,
        metadata={
            "help": "threads that read and decode a batch's images in parallel the first time the VAE needs "
            "them (image decoding and resizing release the GIL; the order and the result are unchanged); 0: "
            "in the training loop's thread"
        },
    )


# Named starting points for FinetuneConfig (a job's own settings override them).
PRESETS: dict[str, dict[str, Any]] = {
    # The shapes world's small UNet (measured: docs/world.md). LoRA on the attention layers at a high
    # learning rate moves what the prompt makes it draw; a full fine-tune that moves as much blurs the
    # shapes. Trained on its own samples, the model also drifts to faint, blended shapes unless the
    # loss keeps its pre-training's min-SNR-5 weighting (layout and colour are decided at high noise)
    # and a share of samples also trains the unconditional branch that guidance subtracts.
    "world": {"mode": "lora", "lora_rank": 8, "lr": 2e-3, "max_steps": 500, "batch_size": 64, "beta": 1.0,
              "caption_dropout": 0.3, "snr_gamma": 5.0},
    # The paper's settings (docs/method.md §4): full UNet, AdamW (0.9, 0.999, 1e-8, wd 1e-2), lr 2e-5 (the
    # likely value; not reported), 10,000 steps of 256 generated + 256 pre-training samples (32 per
    # micro-batch × 8 accumulated on one GPU; under `accelerate launch` on n GPUs, divide the
    # accumulation by n), β 1, fp16 mixed precision on CUDA.
    "paper": {"mode": "full", "lr": 2e-5, "adam_betas": (0.9, 0.999), "adam_eps": 1e-8, "weight_decay": 1e-2,
              "max_steps": 10_000, "batch_size": 32, "gradient_accumulation_steps": 8, "beta": 1.0,
              "mixed_precision": "auto"},
}


@dataclass
class ModelSample:
    """A generated image with its prompt and reward-model score. The image is a path, bytes, a PIL image,
    or any object with `read_bytes()` (and optionally `sha256`, its bytes' hash, so the latent cache need
    not read it): such an image is read only when the VAE first needs it, so a large set is streamed
    from storage instead of held in memory."""

    image: Any
    prompt: str
    reward: float


@dataclass
class PretrainSample:
    image: Any
    caption: str


@dataclass
class FinetuneResult:
    checkpoint: Path  # folder to pass to load_generator (kind "full") or as its `lora` (kind "lora")
    kind: str
    base_model: str
    steps: int
    curve: list[dict]  # per step: loss, model_loss, pretrain_loss
    warnings: list[str]
    seconds: float


def read_pretrain_folder(path: str | Path) -> list[PretrainSample]:
    """Image-caption pairs from `metadata.jsonl` or from `x.png` + `x.txt` files."""
    root = Path(path)
    meta = root / "metadata.jsonl"
    if meta.exists():
        out = []
        for line in meta.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                out.append(PretrainSample(root / rec["file_name"], rec.get("text") or rec["caption"]))
        return out
    pairs = [
        PretrainSample(p, p.with_suffix(".txt").read_text().strip())
        for p in sorted(root.iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES and p.with_suffix(".txt").exists()
    ]
    if not pairs:
        raise ValueError(f"{root}: no metadata.jsonl and no image + .txt caption pairs")
    return pairs


def reward_weighted_loss(
    model_losses: torch.Tensor, rewards: torch.Tensor, pretrain_losses: torch.Tensor | None, beta: float
) -> torch.Tensor:
    """mean(r · ℓ_model) + β · mean(ℓ_pre); rewards are weights, never differentiated."""
    loss = (rewards.detach().to(model_losses.dtype) * model_losses).mean()
    if pretrain_losses is not None and pretrain_losses.numel() and beta:
        loss = loss + beta * pretrain_losses.mean()
    return loss


def dpo_loss(
    model_losses: torch.Tensor, ref_losses: torch.Tensor, beta_dpo: float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Diffusion-DPO (Wallace et al. 2023, eq. 14; their train.py's form): per pair i,
    −log σ(−β/2 · [(ℓ_θ(w_i) − ℓ_ref(w_i)) − (ℓ_θ(l_i) − ℓ_ref(l_i))]), the mean over pairs.

    `model_losses` and `ref_losses` hold the P preferred samples' denoising losses first, then the P
    rejected ones' (pair i: rows i and P + i, drawn with the same noise and timestep). β has the T of
    the paper's bound folded in, as in the reference code (β = 5000 for SD1.5). `weights` (per pair,
    e.g. min-SNR) scale each pair's difference. At θ = ref the loss is log 2 and its gradient lowers the
    preferred sample's loss and raises the rejected one's, equally."""
    p = model_losses.shape[0] // 2
    if model_losses.shape[0] != 2 * p or ref_losses.shape != model_losses.shape:
        raise ValueError("dpo_loss needs the preferred losses then the rejected ones, for model and reference alike")
    diff = (model_losses[:p] - ref_losses[:p].detach()) - (model_losses[p:] - ref_losses[p:].detach())
    if weights is not None:
        diff = diff * weights.detach().to(diff.dtype)
    return -F.logsigmoid(-0.5 * beta_dpo * diff).mean()


def denoising_losses(
    unet: Any,
    scheduler: Any,
    latents: torch.Tensor,
    text_emb: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
) -> torch.Tensor:
    """Per-sample denoising loss ℓ: MSE between the UNet output and its target (ε or v)."""
    noisy = scheduler.add_noise(latents, noise, timesteps)
    pred = unet(noisy, timesteps, text_emb).sample
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    return F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))


@torch.no_grad()
def sample_losses(pipe: Any, images: Sequence[Any], prompts: Sequence[str], seed: int = 0,
                  batch_size: int = 256) -> np.ndarray:
    """Per-image denoising loss of a pipeline's UNet on (image, prompt) pairs, with noise and
    timesteps fixed by `seed` (the same draw for every model): how well a model fits each sample.
    Comparing models on the same draw shows what their training data taught them."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    frozen = _FrozenCache(pipe.vae, pipe.text_encoder, pipe.tokenizer, images, size, pipe.unet.dtype)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(images), batch_size):
        idx = list(range(i, min(i + batch_size, len(images))))
        mean, _ = frozen.latent_dist(idx)
        latents = mean * pipe.vae.config.scaling_factor
        text = frozen.text_states([prompts[j] for j in idx])
        noise = torch.randn(latents.shape, generator=gen).to(latents.device, latents.dtype)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),), generator=gen).to(latents.device)
        out.append(denoising_losses(pipe.unet, scheduler, latents, text, noise, t).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def min_snr_weights(scheduler: Any, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample min-SNR-γ loss weights: min(SNR, γ) / SNR for ε targets, / (SNR + 1) for v."""
    from diffusers.training_utils import compute_snr

    snr = compute_snr(scheduler, timesteps)
    capped = torch.clamp(snr, max=gamma)
    return capped / (snr + 1 if scheduler.config.prediction_type == "v_prediction" else snr)


def _pixels(image: Any, size: int) -> torch.Tensor:
    from PIL import Image

    if not isinstance(image, bytes | str | Path | Image.Image) and hasattr(image, "read_bytes"):
        image = image.read_bytes()  # a lazy image (ModelSample): read now, dropped after encoding
    if isinstance(image, bytes):
        import io

        image = Image.open(io.BytesIO(image))
    elif isinstance(image, str | Path):
        image = Image.open(image)
    image = image.convert("RGB")
    scale = size / min(image.size)
    w, h = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    image = image.resize((w, h), Image.Resampling.BICUBIC)
    left, top = (w - size) // 2, (h - size) // 2
    arr = np.asarray(image.crop((left, top, left + size, top + size)), np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1)


class _FrozenCache:
    """What the frozen encoders make of each sample, computed the first time a batch needs it and kept:
    the VAE's latent distribution (mean, std) of each image and the text encoder's states of each caption.

    The frozen VAE and text encoder give the same answer every epoch, so each image is decoded and
    encoded once instead of once per visit (measured on the shapes world: a step took 0.50 s, of which
    the encoders 0.22 s). Latents are still *sampled* from the stored distribution every step, with the
    same generator calls as encoding on the fly, so the loss curve is the same. Kept on the CPU: 2 × 4 ×
    (H/8) × (W/8) floats per image (128 KB at 512 px in fp32).

    With a `store` (ml.latent_cache.LatentCache) the latents also outlive the run: an image met before,
    by any run with the same VAE, is not encoded again. Images encoded in other batches may differ from
    this run's by float rounding (~1e-7), the only difference a stored latent makes.
    """

    def __init__(self, vae: Any, text_encoder: Any, tokenizer: Any, images: Sequence[Any], size: int, dtype: Any,
                 store: LatentCache | None = None, vae_id: str = "", workers: Any = None):
        self.vae, self.text_encoder, self.tokenizer = vae, text_encoder, tokenizer
        self.images, self.size, self.dtype = images, size, dtype
        self.store, self.vae_id = store, vae_id  # on disk, across runs (ml.latent_cache); None: this run only
        self.workers = workers  # a concurrent.futures executor decoding images, or None
        self.device = next(vae.parameters()).device
        self.dist: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.text: dict[str, torch.Tensor] = {}  # captions of generated samples and pre-training pairs alike

    @torch.no_grad()
    def latent_dist(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        missing = [i for i in dict.fromkeys(idx) if i not in self.dist]
        hashes: dict[int, str] = {}
        if missing and self.store is not None:
            from ml.latent_cache import content_hash

            hashes = {i: content_hash(self.images[i]) for i in missing}
            stored = self.store.get_many(self.vae_id, self.size, list(hashes.values()))
            for i in missing:
                if hashes[i] in stored:
                    mean, std = stored[hashes[i]]
                    self.dist[i] = (mean.to(self.dtype), std.to(self.dtype))
            missing = [i for i in missing if i not in self.dist]
        if missing:
            todo = [self.images[i] for i in missing]
            decoded = (self.workers.map(_pixels, todo, [self.size] * len(todo)) if self.workers is not None
                       else (_pixels(im, self.size) for im in todo))
            pixels = torch.stack(list(decoded))
            d = self.vae.encode(pixels.to(self.device, self.dtype)).latent_dist
            for i, mean, std in zip(missing, d.mean.cpu(), d.std.cpu(), strict=True):
                self.dist[i] = (mean, std)
            if self.store is not None:
                self.store.put_many(self.vae_id, self.size, {hashes[i]: self.dist[i] for i in missing})
        return (
            torch.stack([self.dist[i][0] for i in idx]).to(self.device),
            torch.stack([self.dist[i][1] for i in idx]).to(self.device),
        )

    @torch.no_grad()
    def text_states(self, texts: Sequence[str]) -> torch.Tensor:
        missing = list(dict.fromkeys(t for t in texts if t not in self.text))
        if missing:
            ids = self.tokenizer(
                missing,
                padding="max_length",
                truncation=True,
                max_length=self.tokenizer.model_max_length,
                return_tensors="pt",
            ).input_ids
            for t, states in zip(missing, self.text_encoder(ids.to(self.device))[0].cpu(), strict=True):
                self.text[t] = states
        return torch.stack([self.text[t] for t in texts]).to(self.device)


def _forever(loader: Any) -> Iterator[dict]:
    while True:
        yield from loader


def finetune(
    config: FinetuneConfig,
    base_model: str | Path,
    samples: Sequence[ModelSample],
    out_dir: str | Path,
    pretrain: str | Path | Sequence[PretrainSample] | None = None,
    resume_from: str | Path | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    resume: bool = False,
    latent_cache: LatentCache | None = None,
    pairs: Sequence[tuple[int, int]] | None = None,
) -> FinetuneResult:
    """Fine-tune `base_model` (folder or hub id) on reward-weighted `samples`; see module doc.

    `resume=True` continues from the newest complete checkpoint in `out_dir` (if any), as `resume_from`
    would: with the same config, samples and seed, a run that was killed and resumed ends with the same
    weights as one that never stopped. `latent_cache` keeps the VAE's latents of each image on disk across
    runs (ml.latent_cache); without it they are kept for this run only.

    With `config.objective == "dpo"`, `pairs` are (preferred, rejected) indices into `samples`, both of
    one prompt; the samples' rewards are then not used, and a micro-batch holds batch_size // 2 pairs
    (as many images as the reward-weighted loss takes) and batch_size pre-training pairs."""
    from accelerate import Accelerator
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    t0 = time.perf_counter()
    if config.mode not in ("full", "lora"):
        raise ValueError(f"mode must be 'full' or 'lora', not {config.mode!r}")
    if not samples:
        raise ValueError("no generated samples to fine-tune on")
    if config.min_timestep < 0:
        raise ValueError(f"min_timestep must be >= 0, not {config.min_timestep}")
    dpo = config.objective == "dpo"
    if config.objective not in ("reward_weighted", "dpo"):
        raise ValueError(f"objective must be 'reward_weighted' or 'dpo', not {config.objective!r}")
    if dpo:
        pairs = check_pairs(samples, pairs)
    elif pairs:
        raise ValueError("pairs are for objective 'dpo'; the reward-weighted loss takes each sample's reward")
    out = Path(out_dir)
    notes: list[str] = []
    cuda = torch.cuda.is_available()
    mp = ("fp16" if cuda else "no") if config.mixed_precision == "auto" else config.mixed_precision
    acc = Accelerator(
        mixed_precision=mp, gradient_accumulation_steps=config.gradient_accumulation_steps, cpu=not cuda
    )
    if resume and resume_from is None:
        resume_from = latest_checkpoint(out)
    state = _read_resume(resume_from, config) if resume_from else None
    # Older checkpoints (before the trained weights were kept in the resume state) hold them only as a
    # pipeline (full) or in adapter_state.safetensors (LoRA).
    legacy = state is not None and "params" not in state
    load_from = resume_from if legacy and config.mode == "full" else base_model
    pipe = StableDiffusionPipeline.from_pretrained(
        str(load_from), dtype=torch.float32, safety_checker=None, requires_safety_checker=False
    )
    if config.init_adapter and config.mode == "full" and not legacy:  # a legacy full checkpoint holds it fused
        pipe.load_lora_weights(str(config.init_adapter))
        pipe.fuse_lora()
        pipe.unload_lora_weights()
        pipe.unet.requires_grad_(True)  # peft froze the base weights to load the adapter
    unet, vae, text_encoder, tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    if config.min_timestep >= noise_scheduler.config.num_train_timesteps:
        raise ValueError(
            f"min_timestep {config.min_timestep} leaves no timestep: the model has "
            f"{noise_scheduler.config.num_train_timesteps}"
        )
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mp, torch.float32)
    vae.requires_grad_(False)
    text_encoder.requires_grad_(False)
    for frozen in (vae, text_encoder):
        frozen.to(acc.device)
        if weight_dtype != torch.float32:  # frozen parts run in half precision only where it is asked
            frozen.to(dtype=weight_dtype)
    if config.mode == "lora":
        from peft import LoraConfig

        unet.requires_grad_(False)
        # the adapter's random start comes from the seed, not from whatever the process drew before
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            unet.add_adapter(
                LoraConfig(
                    r=config.lora_rank,
                    lora_alpha=config.lora_rank,
                    init_lora_weights="gaussian",
                    target_modules=config.lora_targets or LORA_TARGETS,
                )
            )
        if legacy:
            if not resume_from:  # state is only ever read from resume_from
                raise RuntimeError("resume state without a folder to resume from")
            from peft.utils import set_peft_model_state_dict
            from safetensors.torch import load_file

            set_peft_model_state_dict(unet, load_file(str(Path(resume_from) / "adapter_state.safetensors")))
        elif config.init_adapter:
            _load_adapter(unet, config.init_adapter)
    if config.gradient_checkpointing if config.gradient_checkpointing is not None else cuda:
        unet.enable_gradient_checkpointing()
    params = [p for p in unet.parameters() if p.requires_grad]
    lr = config.lr or (2e-5 if config.mode == "full" else 1e-4)
    opt = _adamw(config.use_8bit_adam)(
        params, lr=lr, betas=config.adam_betas, eps=config.adam_eps, weight_decay=config.weight_decay
    )
    warmup = config.warmup_steps if config.warmup_steps is not None else min(500, config.max_steps // 10)
    lr_at = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (warmup + 1)))

    size = config.resolution or unet.config.sample_size * pipe.vae_scale_factor
    loader_gen = torch.Generator().manual_seed(config.seed)
    if dpo and pairs:  # one row per pair: its preferred and its rejected sample
        model_ds = torch.utils.data.TensorDataset(torch.tensor([w for w, _ in pairs]),
                                                  torch.tensor([r for _, r in pairs]))
    else:
        model_ds = torch.utils.data.TensorDataset(
            torch.arange(len(samples)), torch.tensor([float(s.reward) for s in samples])
        )
    model_loader = torch.utils.data.DataLoader(
        model_ds, batch_size=max(1, config.batch_size // 2) if dpo else config.batch_size, shuffle=True,
        generator=loader_gen, drop_last=False
    )

    def batch_samples(batch: Any) -> list[int]:
        """Sample indices of a loader batch: the samples, or (dpo) the preferred ones then the rejected ones."""
        return batch[0].tolist() + batch[1].long().tolist() if dpo else batch[0].tolist()
    vae_id = ""
    if latent_cache is not None:
        from ml.latent_cache import vae_identity

        vae_id = vae_identity(base_model, vae, weight_dtype)
    decode_pool = None
    if config.data_workers > 0:
        from concurrent.futures import ThreadPoolExecutor

        decode_pool = ThreadPoolExecutor(config.data_workers, thread_name_prefix="finetune-decode")
    model_cache = _FrozenCache(vae, text_encoder, tokenizer, [s.image for s in samples], size, weight_dtype,
                               latent_cache, vae_id, decode_pool)
    model_texts = [s.prompt for s in samples]
    pre = read_pretrain_folder(pretrain) if isinstance(pretrain, str | Path) else pretrain
    pre_loader, pre_cache = None, None
    if pre:
        pre_loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.arange(len(pre))),
            batch_size=config.batch_size,
            shuffle=True,
            generator=loader_gen,
        )
        pre_cache = _FrozenCache(vae, text_encoder, tokenizer, [p.image for p in pre], size, weight_dtype,
                                 latent_cache, vae_id, decode_pool)
    elif config.beta:
        notes.append(
            "no pre-training data: the β regulariser was skipped; the model may drift "
            "towards the generated set"
        )
        pywarnings.warn(notes[-1], stacklevel=2)
    ref_unet = None
    if dpo and config.mode == "full":  # the frozen base as the reference (LoRA: the adapter switched off)
        import copy

        ref_unet = copy.deepcopy(unet).requires_grad_(False).eval().to(acc.device)
    unet, opt, model_loader = acc.prepare(unet, opt, model_loader)
    if pre_loader is not None:
        pre_loader = acc.prepare(pre_loader)
    step, curve = 0, []
    if state:
        if not legacy:
            with torch.no_grad():
                for p, saved in zip(params, state["params"], strict=True):
                    p.copy_(saved.to(p.device, p.dtype))
        opt.load_state_dict(state["optimizer"])
        step, curve = state["step"], state["curve"]
        if "lr_scheduler" in state:
            lr_at.load_state_dict(state["lr_scheduler"])
        else:
            for _ in range(step):  # the warm-up goes on where it stopped
                lr_at.step()
    ema = _Ema(params, config.ema_decay, state.get("ema") if state else None) if config.ema_decay else None

    noise_gen = torch.Generator(device=acc.device).manual_seed(config.seed * 1000 + acc.process_index + step)
    model_iter = _forever(model_loader)
    pre_iter = _forever(pre_loader) if pre_loader is not None else None
    if state and not legacy:
        # Replaying the loaders' draws (index batches only: no image is read) puts the data order where it
        # stopped; the noise generator and the global RNG come back as they were saved.
        # The frozen encoders see the images in the batches they first saw them in: a batch's latents do
        # not depend on its company only up to float rounding.
        for _ in range(step * config.gradient_accumulation_steps):
            model_cache.latent_dist(batch_samples(next(model_iter)))
            if pre_iter is not None and pre_cache is not None:
                pre_cache.latent_dist(next(pre_iter)[0].tolist())
        # a copy: the saved states are rows of one gathered tensor, and set_state of a row with a storage
        # offset (any process but the first) crashes the process
        noise_gen.set_state(state["noise_rng"][acc.process_index].cpu().clone())
        torch.set_rng_state(state["torch_rng"])
        if cuda and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
    unet.train()
    ckpt = None
    micro: list[torch.Tensor] = []
    while step < config.max_steps:
        if should_cancel is not None and should_cancel():
            raise Cancelled(step, config.max_steps)
        model_batch = next(model_iter)
        model_weight = model_batch[1]
        idx = batch_samples(model_batch)
        n_model = len(idx)
        texts = [model_texts[i] for i in idx]
        if config.caption_dropout and not dpo:  # a preference holds for its prompt, not for the empty one
            drop = torch.rand(n_model, generator=noise_gen, device=acc.device) < config.caption_dropout
            texts = ["" if d else t for t, d in zip(texts, drop.tolist(), strict=True)]
        mean, std = model_cache.latent_dist(idx)
        if pre_iter is not None and pre_cache is not None and pre:
            pre_idx = next(pre_iter)[0].tolist()
            pre_mean, pre_std = pre_cache.latent_dist(pre_idx)
            mean, std = torch.cat([mean, pre_mean]), torch.cat([std, pre_std])
            texts += [pre[i].caption for i in pre_idx]
        with acc.accumulate(unet):
            with torch.no_grad():
                # the same draw as AutoencoderKL's latent_dist.sample(generator)
                eps = torch.randn(mean.shape, generator=noise_gen, device=acc.device, dtype=mean.dtype)
                latents = ((mean + std * eps) * vae.config.scaling_factor).float()
                text_emb = model_cache.text_states(texts)
            noise = torch.randn(latents.shape, generator=noise_gen, device=acc.device)
            t = torch.randint(
                config.min_timestep,
                noise_scheduler.config.num_train_timesteps,
                (len(latents),),
                generator=noise_gen,
                device=acc.device,
            )
            if dpo:  # the two samples of a pair share their noise and timestep
                half = n_model // 2
                noise[half:n_model], t[half:n_model] = noise[:half], t[:half]
            with acc.autocast():
                losses = denoising_losses(unet, noise_scheduler, latents, text_emb, noise, t)
            snr_w = min_snr_weights(noise_scheduler, t, config.snr_gamma) if config.snr_gamma else None
            if dpo:
                with torch.no_grad(), acc.autocast():
                    ref = _reference_losses(acc, unet, ref_unet, noise_scheduler, latents[:n_model],
                                            text_emb[:n_model], noise[:n_model], t[:n_model])
                pre_part = losses[n_model:] * snr_w[n_model:] if snr_w is not None else losses[n_model:]
                loss = dpo_loss(losses[:n_model], ref, config.dpo_beta,
                                snr_w[: n_model // 2] if snr_w is not None else None)
                if pre_iter and pre_part.numel() and config.beta:
                    loss = loss + config.beta * pre_part.mean()
            else:
                if snr_w is not None:
                    losses = losses * snr_w
                pre_losses = losses[n_model:] if pre_iter else None
                loss = reward_weighted_loss(
                    losses[:n_model], model_weight.to(acc.device), pre_losses, config.beta
                )
            acc.backward(loss)
            if acc.sync_gradients and config.max_grad_norm:
                acc.clip_grad_norm_(params, config.max_grad_norm)
            opt.step()
            if acc.sync_gradients:
                lr_at.step()
            opt.zero_grad(set_to_none=True)
        # The curve shows each optimizer step's mean over its micro-batches (and over processes).
        micro.append(
            torch.stack(
                [
                    loss.detach(),
                    losses[:n_model].detach().mean(),
                    losses[n_model:].detach().mean() if pre_iter else loss.new_tensor(float("nan")),
                ]
            )
        )
        if acc.sync_gradients:
            step += 1
            if ema is not None:
                ema.update(step)
            mean = acc.gather(torch.stack(micro).mean(0, keepdim=True)).mean(0).tolist()
            micro = []
            curve.append(
                {
                    "step": step,
                    "loss": mean[0],
                    "model_loss": mean[1],
                    "pretrain_loss": None if pre_iter is None else mean[2],
                }
            )
            if progress is not None:
                progress(step, config.max_steps, curve[-1]["loss"])
            if step % config.checkpoint_every == 0 or step == config.max_steps:
                ckpt = _save_checkpoint(
                    acc, pipe, unet, opt, out / f"checkpoint-{step}", config, base_model, step, curve, ema,
                    resume_state={"params": [p.detach().cpu().clone() for p in params],
                                  "ema": ema.state() if ema else None,  # taken before the save swaps it in
                                  "lr_scheduler": lr_at.state_dict(), "noise_rng": _gather_rng(acc, noise_gen),
                                  "torch_rng": torch.get_rng_state(),
                                  "cuda_rng": torch.cuda.get_rng_state_all() if cuda else None},
                )
                _prune_checkpoints(out, keep=config.keep_checkpoints, newest=ckpt, main=acc.is_main_process)
    if decode_pool is not None:
        decode_pool.shutdown()
    if ckpt is None:  # resumed at or past max_steps: nothing new to save
        ckpt = Path(resume_from) if resume_from else out
    acc.wait_for_everyone()
    return FinetuneResult(
        checkpoint=ckpt,
        kind=config.mode,
        base_model=str(base_model),
        steps=step,
        curve=curve,
        warnings=notes,
        seconds=time.perf_counter() - t0,
    )


def check_pairs(samples: Sequence[ModelSample], pairs: Sequence[tuple[int, int]] | None) -> list[tuple[int, int]]:
    """DPO's pairs: (preferred, rejected) indices into `samples`, two different images of one prompt."""
    if not pairs:
        raise ValueError("objective 'dpo' needs pairs of (preferred, rejected) sample indices")
    out = []
    for w, r in pairs:
        w, r = int(w), int(r)
        if not (0 <= w < len(samples) and 0 <= r < len(samples)):
            raise ValueError(f"pair ({w}, {r}) points outside the {len(samples)} samples")
        if w == r:
            raise ValueError(f"pair ({w}, {r}) compares a sample with itself")
        if samples[w].prompt != samples[r].prompt:
            raise ValueError(f"pair ({w}, {r}) has two prompts: {samples[w].prompt!r} and {samples[r].prompt!r}")
        out.append((w, r))
    return out


def _reference_losses(acc: Any, unet: Any, ref_unet: Any, scheduler: Any, latents: torch.Tensor,
                      text_emb: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The reference model's denoising losses: a frozen copy (full fine-tune) or the trained UNet with
    its LoRA adapter switched off (no second UNet in memory)."""
    if ref_unet is not None:
        return denoising_losses(ref_unet, scheduler, latents, text_emb, noise, t)
    model = acc.unwrap_model(unet)
    model.disable_adapters()
    try:
        return denoising_losses(unet, scheduler, latents, text_emb, noise, t)
    finally:
        model.enable_adapters()


def _adamw(eight_bit: bool) -> Any:
    if not eight_bit:
        return torch.optim.AdamW
    try:
        import bitsandbytes
    except ImportError:
        raise ValueError("use_8bit_adam needs bitsandbytes: pip install bitsandbytes (CUDA only)") from None
    return bitsandbytes.optim.AdamW8bit


def latest_checkpoint(out: str | Path) -> Path | None:
    """The newest complete checkpoint under `out` that can be resumed from (finetune.json is written last)."""
    done = [p for p in Path(out).glob("checkpoint-*")
            if (p / "finetune.json").exists() and (p / "training_state.pt").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


def _prune_checkpoints(out: Path, keep: int, newest: Path, main: bool) -> None:
    """Keep the `keep` newest checkpoints; only `newest` keeps its resume state."""
    if not main:
        return
    ckpts = sorted((p for p in out.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for i, p in enumerate(ckpts):
        if p == newest:
            continue
        if i >= max(1, keep):
            shutil.rmtree(p, ignore_errors=True)
        else:
            (p / "training_state.pt").unlink(missing_ok=True)


def _checkpoint_dtype(config: FinetuneConfig) -> torch.dtype:
    name = config.checkpoint_dtype
    if name == "auto":
        name = "fp16" if torch.cuda.is_available() else "fp32"
    if name not in ("fp16", "fp32"):
        raise ValueError(f"checkpoint_dtype must be 'auto', 'fp16' or 'fp32', not {name!r}")
    return torch.float16 if name == "fp16" else torch.float32


def _gather_rng(acc: Any, gen: torch.Generator) -> list[torch.Tensor]:
    """Every process's noise generator state (each draws its own noise), as CPU byte tensors."""
    state = gen.get_state()
    if acc.num_processes == 1:
        return [state]
    return [s.cpu() for s in acc.gather(state.to(acc.device)[None])]


def _load_adapter(unet: Any, folder: str | Path) -> None:
    """Set the UNet's (fresh) LoRA adapter to the weights saved in `folder`; a saved adapter of another
    rank or on other modules is refused, since continuing it would silently drop part of the model."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_unet_state_dict_to_peft
    from peft.utils import set_peft_model_state_dict

    try:
        state, _ = StableDiffusionPipeline.lora_state_dict(str(folder))
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read the LoRA adapter in {folder}: {e}") from e
    unet_state = {k.removeprefix("unet."): v for k, v in state.items() if k.startswith("unet.")}
    if not unet_state:
        raise ValueError(f"{folder} holds no UNet LoRA weights")
    peft_state = convert_unet_state_dict_to_peft(unet_state)
    want = {k for k in unet.state_dict() if "lora_" in k}
    try:
        result = set_peft_model_state_dict(unet, peft_state)
    except RuntimeError as e:  # size mismatch: another rank
        raise ValueError(f"the adapter in {folder} does not match this fine-tune's LoRA rank: {str(e)[:300]}") from e
    unexpected = list(getattr(result, "unexpected_keys", []))
    missing = [k for k in getattr(result, "missing_keys", []) if k in want]
    if unexpected or missing:
        raise ValueError(
            f"the adapter in {folder} is on other modules than this fine-tune's LoRA targets "
            f"({len(missing)} of this fine-tune's adapter weights not in it, {len(unexpected)} of its weights "
            f"unused, e.g. {(missing or unexpected)[0]}); continue it with the same lora_rank and lora_targets"
        )


def _read_resume(path: str | Path, config: FinetuneConfig) -> dict:
    p = Path(path)
    meta = json.loads((p / "finetune.json").read_text())
    if meta["kind"] != config.mode:
        raise ValueError(f"checkpoint {p} is a {meta['kind']} checkpoint, config asks for {config.mode}")
    state = torch.load(p / "training_state.pt", map_location="cpu", weights_only=False)
    return state


def _save_checkpoint(
    acc: Any,
    pipe: Any,
    unet: Any,
    opt: Any,
    path: Path,
    config: FinetuneConfig,
    base_model: str | Path,
    step: int,
    curve: list[dict],
    ema: _Ema | None = None,
    resume_state: dict | None = None,
) -> Path:
    acc.wait_for_everyone()
    if ema is not None:
        ema.swap()  # the averaged weights are what gets saved; swapped back below
    if acc.is_main_process:
        path.mkdir(parents=True, exist_ok=True)
        model = acc.unwrap_model(unet)
        if config.mode == "full":
            pipe.unet = model
            pipe.save_pretrained(path)
            if _checkpoint_dtype(config) == torch.float16:  # half the disk; loading casts it back as asked
                from safetensors.torch import save_file

                save_file({k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()},
                          str(path / "unet" / "diffusion_pytorch_model.safetensors"))
            marker = Path(str(base_model)) / "world.json"
            if marker.is_file():  # a shapes-world model stays one: its images can still be judged by the oracle
                shutil.copy(marker, path / "world.json")
        else:
            from diffusers import StableDiffusionPipeline
            from diffusers.utils import convert_state_dict_to_diffusers
            from peft.utils import get_peft_model_state_dict

            peft_state = get_peft_model_state_dict(model)
            StableDiffusionPipeline.save_lora_weights(
                path, unet_lora_layers=convert_state_dict_to_diffusers(peft_state), safe_serialization=True
            )
        torch.save(
            {"optimizer": opt.state_dict(), "step": step, "curve": curve, **(resume_state or {})},
            path / "training_state.pt",
        )
        (path / "finetune.json").write_text(
            json.dumps(
                {"kind": config.mode, "base_model": str(base_model), "step": step, "config": asdict(config),
                 "processes": acc.num_processes},  # the resume state holds one noise generator per process
                indent=2,
            )
        )
    if ema is not None:
        ema.swap()
    acc.wait_for_everyone()
    return path


class _Ema:
    """Exponential moving average of the trainable parameters (warm-up: decay (1+t)/(10+t) at first)."""

    def __init__(self, params: list[torch.Tensor], decay: float, state: list[torch.Tensor] | None = None):
        self.params, self.decay = params, decay
        src = state if state is not None else [p.detach() for p in params]
        self.shadow = [s.detach().clone().to(p.device, p.dtype) for s, p in zip(src, params, strict=True)]

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow, self.params, strict=True):
            s.lerp_(p.detach(), 1 - d)

    @torch.no_grad()
    def swap(self) -> None:
        for s, p in zip(self.shadow, self.params, strict=True):
            tmp = p.detach().clone()
            p.copy_(s)
            s.copy_(tmp)

    def state(self) -> list[torch.Tensor]:
        return [s.detach().cpu().clone() for s in self.shadow]  # .cpu() of a CPU tensor is no copy
