"""Benchmarks of the ml/ library; prints figures, asserts nothing.

python bench/ml.py                # tiny models + reward training at the paper's data size, CPU
python bench/ml.py --full-size    # SD-1.5 / ViT-L/14 architectures with random weights (GPU)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the `ml`
# package; the repository root goes there instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np  # noqa: E402
import torch  # noqa: E402


def bench_reward(rows: int, dim: int) -> None:
    from ml.prompts import perturbed_texts
    from ml.reward import RewardConfig, train_reward
    from ml.synthetic import make_synthetic

    config = RewardConfig()
    data = make_synthetic(rows, dim=dim, n_prompts=2774, seed=0)
    # Cached embeddings: every text the training will ask for is already a lookup, as with a warm cache.
    prompts = sorted({r["prompt"] for r in data.rows})
    texts = set(prompts) | {
        t for ns in perturbed_texts(prompts, config.n_prompts - 1, config.seed).values() for t in ns
    }
    text_vectors = dict(zip(sorted(texts), data.embed_text(sorted(texts)), strict=True))
    # One small run first: the process-wide first-use costs (lazy imports inside torch.optim) are
    # paid once per worker process, not per training.
    t0 = time.perf_counter()
    train_reward(RewardConfig(max_epochs=1, hidden=16), data.rows[:200], data.image_vectors, text_vectors)
    print(f"reward training: first call in the process pays {time.perf_counter() - t0:.1f} s of warm-up")
    t0 = time.perf_counter()
    result = train_reward(config, data.rows, data.image_vectors, text_vectors)
    total = time.perf_counter() - t0
    m = result.metrics
    print(
        f"reward training: {rows} rows, {dim}-d, {len(text_vectors)} distinct texts: {total:.1f} s total, "
        f"{len(result.history)} epochs ({total / len(result.history):.2f} s/epoch incl. setup), "
        f"best epoch {result.best_epoch}"
    )
    print(
        f"  val AUC {m['auc']:.3f} (CLIP score {m['clip_auc']:.3f}), pairwise {m['pairwise_accuracy']:.3f} "
        f"(CLIP {m['clip_pairwise_accuracy']:.3f}), PC accuracy {m['prompt_classification_accuracy']:.3f} "
        f"[synthetic task]"
    )


def bench_embeddings(clip_dir: Path, device: str, n: int, size: int) -> None:
    from PIL import Image

    from ml.embeddings import EmbeddingConfig, embed_images, embed_texts, load_clip
    from ml.prompts import PromptSetConfig, generate_prompt_set

    clip = load_clip(clip_dir, device=device)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(n)]
    texts = [p.text for p in generate_prompt_set(PromptSetConfig(size=n))]
    cfg = EmbeddingConfig(batch_size=64)
    embed_images(clip, images[:8], config=cfg)  # warm-up
    t = time.perf_counter()
    embed_images(clip, images, config=cfg)
    ti = time.perf_counter() - t
    t = time.perf_counter()
    embed_texts(clip, texts, config=cfg)
    tt = time.perf_counter() - t
    print(f"embeddings ({clip_dir.name}, {device}): {n / ti:.0f} images/s, {n / tt:.0f} texts/s")


def bench_generation(sd_dir: Path, device: str, n: int, steps: int, batch: int) -> None:
    from ml.generation import GenerationConfig, generate, load_generator

    gen = load_generator(sd_dir, device=device)
    cfg = GenerationConfig(steps=steps, batch_size=batch)
    generate(gen, [("Two dogs", 0)], GenerationConfig(steps=2))  # warm-up
    t = time.perf_counter()
    out = generate(gen, [("Two blue dogs in the forest", i) for i in range(n)], cfg)
    dt = time.perf_counter() - t
    w, h = out.images[0].image.size
    print(
        f"generation ({sd_dir.name}, {device}, {w}x{h}, {steps} steps, batch {batch}): {n / dt:.2f} images/s"
    )


def bench_finetune(sd_dir: Path, batch: int, steps: int, resolution: int | None) -> None:
    import warnings

    from PIL import Image

    from ml.finetune import FinetuneConfig, ModelSample, PretrainSample, finetune

    size = resolution or 32
    rng = np.random.default_rng(0)
    img = [Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(batch)]
    samples = [ModelSample(im, "Two dogs", 0.7) for im in img]
    pre = [PretrainSample(im, "a photo") for im in img]
    for mode in ("full", "lora"):
        stamps: list[float] = []
        cfg = FinetuneConfig(mode=mode, max_steps=steps, batch_size=batch, checkpoint_every=10**9)
        with tempfile.TemporaryDirectory() as out, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            finetune(
                cfg,
                sd_dir,
                samples,
                out,
                pretrain=pre,
                progress=lambda *a, stamps=stamps: stamps.append(time.perf_counter()),
            )
        per_step = statistics.median(np.diff(stamps)) if len(stamps) > 2 else float("nan")
        print(
            f"fine-tuning step ({sd_dir.name}, {mode}, {batch}+{batch} images at {size}px): "
            f"{per_step * 1000:.0f} ms/step (median of {len(stamps) - 1})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full-size", action="store_true", help="SD-1.5 / ViT-L/14 sizes, random weights")
    parser.add_argument("--skip-reward", action="store_true")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    if not args.skip_reward:
        bench_reward(27528, 768)

    from ml.tiny import TinyConfig, write_tiny_clip, write_tiny_sd

    with tempfile.TemporaryDirectory() as tmp:
        name = "full-size" if args.full_size else "tiny"
        cfg = TinyConfig(full_size=args.full_size)
        t = time.perf_counter()
        sd = write_tiny_sd(Path(tmp) / f"{name}-sd", cfg)
        clip = write_tiny_clip(Path(tmp) / f"{name}-clip", cfg)
        print(f"wrote {name} models in {time.perf_counter() - t:.1f} s")
        if args.full_size:
            bench_embeddings(clip, device, n=256, size=512)
            bench_generation(sd, device, n=8, steps=20, batch=8)
            bench_finetune(sd, batch=1, steps=6, resolution=512)
        else:
            bench_embeddings(clip, device, n=512, size=32)
            bench_generation(sd, device, n=32, steps=20, batch=8)
            bench_finetune(sd, batch=4, steps=8, resolution=None)


if __name__ == "__main__":
    main()
