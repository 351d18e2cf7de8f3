"""Train the world's models from scratch: a VAE, a CLIP and a text-conditional diffusion UNet.

`write_world_models(out, WorldModelsConfig())` writes `out/sd` (a Stable Diffusion pipeline folder:
VAE, CLIP text encoder, tokenizer, UNet, DDIM scheduler) and `out/clip` (a CLIP model folder with
its tokenizer and image processor), in the formats of `stable-diffusion-v1-5` and
`openai/clip-vit-large-patch14`, so that `ml.generation.load_generator` and `ml.embeddings.load_clip`
load them like the real ones. Weights are stored in fp16 (the package ships them) and load as fp32.

Order, and why:
1. VAE (32 px RGB <-> 4 x 8 x 8 latents), trained on random scenes with L1 + MSE and a small KL term;
   fully convolutional, so it trains on 16 px crops at a quarter of the cost.
2. CLIP, trained contrastively on scenes with *clean* captions: it knows the world, as a CLIP trained
   on far more data than the generator would. Its text tower is the generator's frozen text encoder,
   as in Stable Diffusion.
3. UNet, trained on VAE latents of scenes with *noisy* captions (`ml.world.corpus`), 10% of them
   empty for classifier-free guidance; the exponential moving average of its weights is kept.

Everything is seeded; the same config and thread count give the same weights.
"""

from __future__ import annotations

import copy
import json
import math
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ml.prompts import WORLD_VOCABULARY, render
from ml.world.corpus import CLEAN, CaptionNoise, caption
from ml.world.scene import SIZE, draw, random_scene

Progress = Callable[[str, int, int, float], None]  # (stage, done, total, loss)

# CLIP's pixel normalisation (what its image processor applies); training must see the same inputs.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class WorldModelsConfig:
    seed: int = field(default=0, metadata={"help": "seed of scenes, captions, initial weights and noise"})
    scale: float = field(default=1.0, metadata={"help": "multiplies every step count (0.01: a smoke build)"})
    vae_steps: int = field(default=4000, metadata={"help": "VAE optimizer steps"})
    vae_batch: int = field(default=32, metadata={"help": "VAE batch (16 px crops)"})
    vae_lr: float = field(default=3e-3, metadata={"help": "VAE peak learning rate (one-cycle)"})
    clip_steps: int = field(default=800, metadata={"help": "CLIP optimizer steps"})
    clip_batch: int = field(default=256, metadata={"help": "CLIP batch (contrastive)"})
    clip_lr: float = field(default=1e-3, metadata={"help": "CLIP peak learning rate (one-cycle)"})
    clip_width: int = field(default=64, metadata={"help": "CLIP hidden size (text and vision) and embedding size"})
    unet_steps: int = field(default=3000, metadata={"help": "UNet pre-training optimizer steps"})
    unet_batch: int = field(default=128, metadata={"help": "UNet pre-training batch"})
    unet_lr: float = field(default=1e-3, metadata={"help": "UNet peak learning rate (warm-up, cosine decay)"})
    unet_ema: float = field(default=0.999, metadata={"help": "decay of the UNet weights' moving average"})
    corpus_size: int = field(default=30000, metadata={"help": "scenes in the UNet's pre-training corpus"})
    uncond_rate: float = field(default=0.1, metadata={"help": "share of empty captions (classifier-free guidance)"})
    noise: CaptionNoise = field(default_factory=CaptionNoise, metadata={"help": "how the corpus captions are wrong"})

    def steps(self, n: int) -> int:
        return max(1, round(n * self.scale))


def _pixels(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W, 3) images -> float (B, 3, H, W) in [-1, 1], the VAE's range."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _one_cycle(opt: torch.optim.Optimizer, lr: float, steps: int) -> Any:
    return torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=min(0.3, 100 / steps))


def new_vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(32, 64, 64),  # three levels: 32 px -> 8 x 8 latents
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1,
        norm_num_groups=16,
        sample_size=SIZE,
        mid_block_add_attention=False,  # fully convolutional: trainable on crops
    )


def train_vae(config: WorldModelsConfig, progress: Progress | None = None) -> Any:
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    data = _pixels([draw(random_scene(rng)) for _ in range(config.corpus_size // 2)])
    vae = new_vae()
    steps = config.steps(config.vae_steps)
    opt = torch.optim.AdamW(vae.parameters(), config.vae_lr, weight_decay=0.0)
    sched = _one_cycle(opt, config.vae_lr, steps)
    gen = torch.Generator().manual_seed(config.seed)
    crop = 16
    vae.train()
    for step in range(steps):
        x = data[torch.randint(0, len(data), (config.vae_batch,), generator=gen)]
        r, c = (4 * int(v) for v in torch.randint(0, (SIZE - crop) // 4 + 1, (2,), generator=gen))
        x = x[:, :, r : r + crop, c : c + crop]
        posterior = vae.encode(x).latent_dist
        rec = vae.decode(posterior.sample(generator=gen)).sample
        # L1 keeps edges sharp; the KL term only keeps the latents from drifting
        loss = (rec - x).abs().mean() + F.mse_loss(rec, x) + 1e-6 * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress:
            progress("vae", step + 1, steps, loss.item())
    return vae.eval().requires_grad_(False)


def new_clip(tokenizer_dir: Path, width: int) -> Any:
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    vocab = json.loads((tokenizer_dir / "vocab.json").read_text())
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    common: dict[str, Any] = dict(
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=3,
        num_attention_heads=4,
        projection_dim=width,
        hidden_act="quick_gelu",
    )
    text = CLIPTextConfig(
        vocab_size=len(vocab),
        max_position_embeddings=77,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=eos,
        **common,
    )
    vision = CLIPVisionConfig(image_size=SIZE, patch_size=4, **common)
    return CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=width))


def clip_pixels(images: list[np.ndarray]) -> torch.Tensor:
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0 - mean) / std


def train_clip(config: WorldModelsConfig, tokenizer_dir: Path, progress: Progress | None = None) -> Any:
    from transformers import CLIPTokenizer

    rng = random.Random(config.seed + 1)
    torch.manual_seed(config.seed + 1)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    model = new_clip(tokenizer_dir, config.clip_width)
    steps = config.steps(config.clip_steps)
    opt = torch.optim.AdamW(model.parameters(), config.clip_lr, weight_decay=0.05)
    sched = _one_cycle(opt, config.clip_lr, steps)
    model.train()
    for step in range(steps):
        scenes = [random_scene(rng) for _ in range(config.clip_batch)]
        ids = tokenizer([caption(s, CLEAN, rng) for s in scenes], padding=True, return_tensors="pt")
        out = model(
            input_ids=ids.input_ids,
            attention_mask=ids.attention_mask,
            pixel_values=clip_pixels([draw(s) for s in scenes]),
            return_loss=True,
        )
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        sched.step()
        if progress:
            progress("clip", step + 1, steps, out.loss.item())
    return model.eval().requires_grad_(False)


def all_captions() -> list[str]:
    """Every caption the corpus can write (and the empty one): the text encoder runs once per text."""
    v = WORLD_VOCABULARY
    texts = [""]
    for obj in v.objects:
        for count in (None, *v.counts):
            for color in (None, *v.colors):
                for bg in (None, *v.backgrounds):
                    texts.append(render(obj, count, color, bg))
    return texts


@torch.no_grad()
def encode_texts(text_encoder: Any, tokenizer: Any, texts: list[str], batch: int = 256) -> torch.Tensor:
    """Token-level hidden states, padded as the pipeline pads them (max_length)."""
    out = []
    for i in range(0, len(texts), batch):
        ids = tokenizer(
            texts[i : i + batch],
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        out.append(text_encoder(ids)[0])
    return torch.cat(out)


def new_unet(cross_attention_dim: int) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=SIZE // 4,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        norm_num_groups=8,
        attention_head_dim=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
    )


def noise_scheduler_config() -> dict[str, Any]:
    """DDPM's linear schedule. Stable Diffusion's scaled-linear one keeps 7% of the signal at the last
    step; in 8 x 8 latents whose mean is the background colour that leaks the background into pure
    noise, and sampling (which starts from pure noise) then collapses onto two backgrounds."""
    return dict(
        num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", prediction_type="epsilon"
    )


@torch.no_grad()
def encode_corpus(vae: Any, scenes: list, batch: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent means and standard deviations of the scenes (unscaled)."""
    means, stds = [], []
    for i in range(0, len(scenes), batch):
        dist = vae.encode(_pixels([draw(s) for s in scenes[i : i + batch]])).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
    return torch.cat(means), torch.cat(stds)


def pretrain_unet(
    config: WorldModelsConfig, vae: Any, text_encoder: Any, tokenizer: Any, progress: Progress | None = None
) -> Any:
    """Train the UNet on the noisy-caption corpus; sets the VAE's scaling factor; returns the EMA UNet."""
    from diffusers import DDPMScheduler

    rng = random.Random(config.seed + 2)
    torch.manual_seed(config.seed + 2)
    scenes = [random_scene(rng) for _ in range(config.corpus_size)]
    mean, std = encode_corpus(vae, scenes)
    scaling = float(1.0 / mean.std())
    vae.register_to_config(scaling_factor=scaling)
    texts = all_captions()
    index = {t: i for i, t in enumerate(texts)}
    text_states = encode_texts(text_encoder, tokenizer, texts)
    unet = new_unet(text_states.shape[-1])
    ema = copy.deepcopy(unet).requires_grad_(False)
    scheduler: Any = DDPMScheduler(**noise_scheduler_config())
    alphas = scheduler.alphas_cumprod
    steps = config.steps(config.unet_steps)
    warmup = min(200, steps // 10)
    opt = torch.optim.AdamW(unet.parameters(), config.unet_lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / (warmup + 1)
            if s < warmup
            else 0.1 + 0.45 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup)))
        ),
    )
    gen = torch.Generator().manual_seed(config.seed + 2)
    unet.train()
    for step in range(steps):
        idx = torch.randint(0, len(scenes), (config.unet_batch,), generator=gen)
        caps = [
            "" if rng.random() < config.uncond_rate else caption(scenes[i], config.noise, rng) for i in idx.tolist()
        ]
        latents = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)) * scaling
        noise = torch.randn(latents.shape, generator=gen)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(idx),), generator=gen)
        pred = unet(scheduler.add_noise(latents, noise, t), t, text_states[[index[c] for c in caps]]).sample
        # min-SNR-5 weighting (Hang et al. 2023): the easy low-noise steps stop dominating; converges faster
        snr = alphas[t] / (1 - alphas[t])
        loss = (F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3)) * snr.clamp(max=5.0) / snr).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        decay = min(config.unet_ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), unet.parameters(), strict=True):
                e.lerp_(p, 1 - decay)
        if progress:
            progress("unet", step + 1, steps, loss.item())
    return ema.eval()


def text_encoder_of(clip: Any) -> Any:
    """CLIP's text tower as a stand-alone CLIPTextModel (the generator's frozen text encoder)."""
    from transformers import CLIPTextModel

    encoder = CLIPTextModel(clip.config.text_config)
    encoder.load_state_dict(clip.text_model.state_dict())
    return encoder.eval().requires_grad_(False)


def save_pipeline(out: Path, vae: Any, text_encoder: Any, tokenizer: Any, unet: Any) -> Path:
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    # "trailing" spacing starts sampling at the last training step, where the noise is pure
    scheduler = DDIMScheduler(
        **noise_scheduler_config(), clip_sample=False, set_alpha_to_one=False, timestep_spacing="trailing"
    )
    pipe: Any = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(torch.float16)
    pipe.save_pretrained(out)
    return out


@dataclass
class WorldModels:
    sd: Path
    clip: Path
    seconds: dict[str, float]


def write_world_models(
    out_dir: str | Path, config: WorldModelsConfig | None = None, progress: Progress | None = None
) -> WorldModels:
    """Train every world model and write `out/sd`, `out/clip` and `out/world.json`."""
    from transformers import CLIPTokenizer

    from ml.tiny import save_clip_folder, write_clip_tokenizer

    config = config or WorldModelsConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = write_clip_tokenizer(tmp)
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
        t0 = time.perf_counter()
        vae = train_vae(config, progress)
        seconds["vae"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        clip = train_clip(config, tok_dir, progress)
        seconds["clip"] = time.perf_counter() - t0
        text_encoder = text_encoder_of(clip)
        t0 = time.perf_counter()
        unet = pretrain_unet(config, vae, text_encoder, tokenizer, progress)
        seconds["unet"] = time.perf_counter() - t0
        sd = save_pipeline(out / "sd", vae, text_encoder, tokenizer, unet)
        clip_dir = save_clip_folder(clip.to(torch.float16), tok_dir, out / "clip", SIZE)
    meta = json.dumps(
        {"kind": "shapes-world", "config": asdict(config), "seconds": {k: round(v, 1) for k, v in seconds.items()}},
        indent=2,
    )
    (out / "world.json").write_text(meta)
    # inside the pipeline folder too: it tells the service that the oracle can judge this model's images
    (sd / "world.json").write_text(meta)
    return WorldModels(sd=sd, clip=clip_dir, seconds=seconds)
