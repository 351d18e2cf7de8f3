"""Text-to-image generation from (prompt, seed) pairs, reproducible per image.

Every image gets its own `torch.Generator` seeded with its seed, so an image depends only on its
prompt, seed, settings and device, never on which other images shared its batch. Load a generator
once per process with `load_generator` and pass it to `generate` as often as needed (not from two
threads at once: the scheduler inside a pipeline keeps state during a call).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

SCHEDULERS = {
    "pndm": "PNDMScheduler",
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "lms": "LMSDiscreteScheduler",
}


class Cancelled(Exception):
    """Raised between batches when the caller's `should_cancel()` says so."""

    def __init__(self, done: int, total: int):
        super().__init__(f"cancelled after {done} of {total} images")
        self.done, self.total = done, total


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class Generator:
    """A loaded pipeline with what was loaded into it (for the settings recorded per image)."""

    pipe: Any
    model: str
    lora: str | None
    device: str
    dtype: torch.dtype
    base_scheduler: Any = None  # the model's own sampler, restored when a config names none


def load_generator(
    model: str | Path,
    lora: str | Path | None = None,
    device: str | None = None,
    dtype: torch.dtype | None = None,
    fuse_lora: bool = False,
) -> Generator:
    """Load a Stable Diffusion pipeline from a folder or hub id, optionally with a LoRA adapter
    folder (as written by `ml.finetune`) on top. fp16 on CUDA, fp32 on CPU unless `dtype` says.

    `fuse_lora` merges the adapter into the UNet's weights and drops the LoRA layers: each attention
    projection is one matmul again instead of three, for the same images up to float rounding. Off by
    default so that callers comparing losses to the last float (the shapes-world loop) see the same
    numbers as before; the worker and the command line fuse."""
    from diffusers import StableDiffusionPipeline

    device = device or default_device()
    dtype = dtype or (torch.float16 if device.startswith("cuda") else torch.float32)
    pipe = StableDiffusionPipeline.from_pretrained(
        str(model), dtype=dtype, safety_checker=None, requires_safety_checker=False
    )
    if lora is not None:
        pipe.load_lora_weights(str(lora))
        if fuse_lora:
            pipe.fuse_lora()
            pipe.unload_lora_weights()  # the fused weights stay; the adapter layers go
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    if device.startswith("cuda"):
        # SDPA kernels (flash / memory-efficient attention) instead of the explicit softmax path.
        from diffusers.models.attention_processor import AttnProcessor2_0

        pipe.unet.set_attn_processor(AttnProcessor2_0())
    return Generator(
        pipe=pipe,
        model=str(model),
        lora=None if lora is None else str(lora),
        device=device,
        dtype=dtype,
        base_scheduler=pipe.scheduler,
    )


@dataclass
class GenerationConfig:
    steps: int = field(default=50, metadata={"help": "denoising steps"})
    guidance_scale: float = field(default=7.5, metadata={"help": "classifier-free guidance scale"})
    scheduler: str | None = field(
        default=None, metadata={"help": f"sampler, one of {sorted(SCHEDULERS)}; None keeps the model's own"}
    )
    width: int | None = field(default=None, metadata={"help": "image width in px; None: model default"})
    height: int | None = field(default=None, metadata={"help": "image height in px; None: model default"})
    batch_size: int = field(default=8, metadata={"help": "images per forward pass"})
    negative_prompt: str | None = field(default=None, metadata={"help": "negative prompt for all images"})


@dataclass
class GeneratedImage:
    prompt: str
    seed: int
    image: Any  # PIL.Image.Image
    settings: dict


@dataclass
class GenerationResult:
    images: list[GeneratedImage]


def _set_scheduler(generator: Generator, name: str | None) -> str:
    pipe = generator.pipe
    if name is None and generator.base_scheduler is not None:
        pipe.scheduler = generator.base_scheduler
    if name is not None:
        if name not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {name!r}; choose from {sorted(SCHEDULERS)}")
        import diffusers

        if type(pipe.scheduler).__name__ != SCHEDULERS[name]:
            base = generator.base_scheduler or pipe.scheduler
            pipe.scheduler = getattr(diffusers, SCHEDULERS[name]).from_config(base.config)
    return type(pipe.scheduler).__name__


def generate(
    generator: Generator,
    requests: Sequence[tuple[str, int]],
    config: GenerationConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    interrupt: Callable[[], bool] | None = None,
) -> GenerationResult:
    """Images for (prompt, seed) pairs, in order, each with the settings that reproduce it.

    `progress(done, total)` is called after each batch; `should_cancel()` is checked before each
    batch and raises `Cancelled` (images already made are lost to the caller by design: a job that
    is cancelled writes nothing half-done). `interrupt()` is checked between denoising steps and
    raises `Cancelled` too: a batch of many images takes minutes on a CPU, a stopping process
    should not wait for it.
    """
    config = config or GenerationConfig()
    pipe = generator.pipe
    scheduler_name = _set_scheduler(generator, config.scheduler)
    scale = pipe.vae_scale_factor
    height = config.height or pipe.unet.config.sample_size * scale
    width = config.width or pipe.unet.config.sample_size * scale
    out: list[GeneratedImage] = []
    total = len(requests)
    extra: dict[str, Any] = {}
    if interrupt is not None:
        def between_steps(_pipe: Any, _step: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            if interrupt():
                raise Cancelled(len(out), total)
            return kwargs

        extra["callback_on_step_end"] = between_steps
    for start in range(0, total, config.batch_size):
        if should_cancel is not None and should_cancel():
            raise Cancelled(start, total)
        batch = requests[start : start + config.batch_size]
        gens = [torch.Generator(device=generator.device).manual_seed(int(s)) for _, s in batch]
        with torch.inference_mode():
            images = pipe(
                prompt=[p for p, _ in batch],
                negative_prompt=None
                if config.negative_prompt is None
                else [config.negative_prompt] * len(batch),
                num_inference_steps=config.steps,
                guidance_scale=config.guidance_scale,
                height=height,
                width=width,
                generator=gens,
                **extra,
            ).images
        for (prompt, seed), image in zip(batch, images, strict=True):
            settings = {
                "steps": config.steps,
                "guidance_scale": config.guidance_scale,
                "scheduler": scheduler_name,
                "width": width,
                "height": height,
                "seed": int(seed),
                "model": generator.model,
                "lora": generator.lora,
                "negative_prompt": config.negative_prompt,
                "device": generator.device,
                "dtype": str(generator.dtype).removeprefix("torch."),
            }
            out.append(GeneratedImage(prompt=prompt, seed=int(seed), image=image, settings=settings))
        if progress is not None:
            progress(len(out), total)
    return GenerationResult(images=out)
