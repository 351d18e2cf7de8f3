"""What a fine-tune will need, before it starts: device memory, disk and time.

Computed from the model's config (no weights are read: the UNet, VAE and text encoder are built on
PyTorch's "meta" device, which has shapes but no storage), the batch, the precision and the device.
The UNet's forward FLOPs and the activations it keeps for the backward pass come from one forward
pass on meta tensors under `torch.utils.flop_counter.FlopCounterMode`, so they follow whatever
architecture the config describes.

These are estimates, good to a factor of about 1.5: the activation figure counts every layer's output
once (attention's softmax buffers, allocator slack and CUDA's own ~1 GB are not in it), and the time
assumes a share `UTILISATION` of the device's dense fp16 (or fp32) peak.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

GB = 1024**3
UTILISATION = 0.35  # share of peak FLOP/s a diffusion training step reaches (measured 0.3-0.45 on A100s)
# Dense peak FLOP/s (fp16/bf16 tensor cores, fp32) by a substring of the CUDA device name.
PEAK_FLOPS: list[tuple[str, float, float]] = [
    ("H200", 989e12, 67e12),
    ("H100", 989e12, 67e12),
    ("A100", 312e12, 19.5e12),
    ("L40", 181e12, 90e12),
    ("A10", 125e12, 31e12),
    ("4090", 165e12, 83e12),
    ("3090", 71e12, 36e12),
    ("L4", 121e12, 30e12),
    ("V100", 125e12, 15.7e12),
    ("T4", 65e12, 8.1e12),
]
CPU_FLOPS_PER_THREAD = 2e10  # an AVX2/AVX-512 core in fp32, about


@dataclass
class FinetuneEstimate:
    device: str
    device_memory_gb: float | None  # what the device has (None: CPU)
    unet_params: int
    trainable_params: int
    frozen_params: int  # VAE and text encoder
    samples_per_step: int  # generated + pre-training, over accumulation and processes
    flops_per_step: float
    memory_gb: float  # peak on one device: weights, gradients, optimizer, EMA, activations
    memory_parts_gb: dict[str, float]
    checkpoint_gb: float  # one checkpoint's weights (what inference loads)
    resume_state_gb: float  # the newest checkpoint's training_state.pt
    disk_gb: float  # at most on disk while a run saves: keep_checkpoints + 1 checkpoints, two resume states
    seconds: float
    fits: bool | None  # memory_gb within the device's memory (None: CPU)

    def lines(self) -> list[str]:
        """The estimate as log lines, for a job's log."""
        parts = ", ".join(f"{k} {v:.2f}" for k, v in self.memory_parts_gb.items())
        mem = f" of {self.device_memory_gb:.0f} GB" if self.device_memory_gb else ""
        return [
            f"estimate on {self.device}: UNet {self.unet_params / 1e6:.1f}M parameters, "
            f"{self.trainable_params / 1e6:.2f}M trained; {self.samples_per_step} samples per step",
            f"estimate: memory {self.memory_gb:.1f} GB{mem}{'' if self.fits is not False else ' (DOES NOT FIT)'} "
            f"({parts})",
            f"estimate: disk {self.disk_gb:.2f} GB at most (checkpoint {self.checkpoint_gb:.2f} GB, "
            f"resume state {self.resume_state_gb:.2f} GB)",
            f"estimate: time {self.seconds / 3600:.2f} h ({self.flops_per_step / 1e12:.2f} TFLOP per step "
            f"at {UTILISATION:.0%} of peak)",
        ]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _meta_models(base_model: str | Path) -> tuple[Any, Any, Any]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    base = str(base_model)
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(base, subfolder="unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(base, subfolder="vae"))
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(base, subfolder="text_encoder"))
    return unet, vae, text


def _lora_params(unet: Any, rank: int) -> int:
    from ml.finetune import LORA_TARGETS

    return sum(
        rank * (m.in_features + m.out_features)
        for name, m in unet.named_modules()
        if isinstance(m, torch.nn.Linear) and any(name.endswith(t) for t in LORA_TARGETS)
    )


def _forward_cost(unet: Any, latent_size: int, text_len: int) -> tuple[float, int]:
    """FLOPs of one sample's UNet forward and the number of activation elements its layers output."""
    from torch.utils.flop_counter import FlopCounterMode

    acts = [0]

    def count(_m: Any, _i: Any, out: Any) -> None:
        if torch.is_tensor(out):
            acts[0] += out.numel()

    leaves = [m for m in unet.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    cfg = unet.config
    x = torch.zeros(1, cfg.in_channels, latent_size, latent_size, device="meta")
    emb = torch.zeros(1, text_len, cfg.cross_attention_dim, device="meta")
    try:
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            unet(x, torch.tensor([500], device="meta"), emb)
    finally:
        for h in hooks:
            h.remove()
    return float(fc.get_total_flops()), acts[0]


def _device() -> tuple[str, float | None, float, float]:
    """Name, memory (GB) and dense peak FLOP/s (half, full precision) of the device training will use."""
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        half, full = next(((h, f) for key, h, f in PEAK_FLOPS if key in props.name), (100e12, 20e12))
        return props.name, props.total_memory / GB, half, full
    threads = torch.get_num_threads()
    return f"CPU ({threads} threads)", None, threads * CPU_FLOPS_PER_THREAD, threads * CPU_FLOPS_PER_THREAD


def estimate_finetune(config: Any, base_model: str | Path, with_pretrain: bool = True,
                      num_processes: int = 1) -> FinetuneEstimate:
    """Memory, disk and time a `FinetuneConfig` will take on `base_model` on this machine's device."""
    from ml.finetune import _checkpoint_dtype

    unet, vae, text = _meta_models(base_model)
    unet_params = sum(p.numel() for p in unet.parameters())
    frozen = sum(p.numel() for p in vae.parameters()) + sum(p.numel() for p in text.parameters())
    trainable = unet_params if config.mode == "full" else _lora_params(unet, config.lora_rank)
    name, device_mem, half_peak, full_peak = _device()
    cuda = device_mem is not None
    mp = ("fp16" if cuda else "no") if config.mixed_precision == "auto" else config.mixed_precision
    half = mp in ("fp16", "bf16")
    act_bytes = 2 if half else 4
    ckpt_grad = config.gradient_checkpointing if config.gradient_checkpointing is not None else cuda

    vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
    size = config.resolution or unet.config.sample_size * vae_scale
    fwd_flops, act_elems = _forward_cost(unet, size // vae_scale, text.config.max_position_embeddings)
    micro = config.batch_size * (2 if with_pretrain else 1)  # generated + as many pre-training pairs
    samples_per_step = micro * config.gradient_accumulation_steps * num_processes
    # backward costs two forwards; gradient checkpointing recomputes the forward once more
    flops_per_step = fwd_flops * (4 if ckpt_grad else 3) * samples_per_step
    acts = act_elems * act_bytes * micro
    if ckpt_grad:  # only the blocks' inputs stay, and one block's activations at a time
        blocks = len(unet.down_blocks) + len(unet.up_blocks) + 1
        acts = acts * 2 / blocks

    adam_bytes = 2 if config.use_8bit_adam else 8
    parts = {
        "unet": unet_params * 4 / GB,  # fp32 master weights; autocast makes half copies on the fly
        "frozen": frozen * (2 if half else 4) / GB,
        "gradients": trainable * 4 / GB,
        "optimizer": trainable * adam_bytes / GB,
        "ema": trainable * 4 / GB if config.ema_decay else 0.0,
        "activations": acts / GB,
    }
    memory = sum(parts.values())

    if config.mode == "full":
        checkpoint = (unet_params * (2 if _checkpoint_dtype(config) == torch.float16 else 4) + frozen * 4) / GB
    else:
        checkpoint = trainable * 4 / GB
    resume_state = trainable * (4 + adam_bytes + (4 if config.ema_decay else 0)) / GB
    disk = (max(1, config.keep_checkpoints) + 1) * checkpoint + 2 * resume_state
    peak = half_peak if half else full_peak
    seconds = config.max_steps * flops_per_step / (peak * UTILISATION * num_processes)
    return FinetuneEstimate(
        device=name,
        device_memory_gb=device_mem,
        unet_params=unet_params,
        trainable_params=trainable,
        frozen_params=frozen,
        samples_per_step=samples_per_step,
        flops_per_step=flops_per_step,
        memory_gb=memory,
        memory_parts_gb=parts,
        checkpoint_gb=checkpoint,
        resume_state_gb=resume_state,
        disk_gb=disk,
        seconds=seconds,
        fits=None if device_mem is None else memory <= device_mem,
    )
