"""`ml` command line: every stage of the library on plain files (JSONL, PNG folders, model folders).

Mounted by the service as `t2i-feedback ml ...`; usable alone as `python -m ml.cli ...`.
File formats are described in docs/ml.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ml.best_of_n import BestOfNConfig
from ml.cli_util import bar, build_config, config_options, read_jsonl, resolve, write_jsonl
from ml.finetune import PRESETS, FinetuneConfig
from ml.generation import GenerationConfig
from ml.prompts import CATEGORIES, PromptSetConfig, generate_prompt_set, parse_prompt
from ml.reward import RewardConfig
from ml.tiny import TinyConfig
from ml.world.active import ActiveConfig
from ml.world.build import WorldModelsConfig
from ml.world.loop import WorldLoopConfig
from ml.world.pairs import PairsConfig
from ml.world.rounds import RoundsConfig

_clip_opt = click.option(
    "--clip", "clip_model", required=True, help="CLIP folder or hub id, e.g. openai/clip-vit-large-patch14"
)
_cache_opt = click.option(
    "--cache",
    type=click.Path(dir_okay=False),
    default=None,
    help="embedding cache file (SQLite); reused across runs",
)
_device_opt = click.option("--device", default=None, help="torch device [default: cuda if available]")


@click.group(name="ml")
def cli() -> None:
    """Prompts, generation, embeddings, reward model and fine-tuning on local files."""


@cli.command()
@click.option("--out", default="-", help="output JSONL ('-': stdout)")
@click.option(
    "--parse",
    "parse_file",
    type=click.Path(exists=True, dir_okay=False),
    help="parse a text file of prompts (one per line) instead of generating a set",
)
@click.option(
    "--category",
    "categories",
    multiple=True,
    type=click.Choice(CATEGORIES),
    help="categories to include (repeatable) [default: all]",
)
@click.option(
    "--split",
    "splits",
    multiple=True,
    type=click.Choice(["seen", "unseen"]),
    help="splits to include (repeatable) [default: seen; the unseen objects are held out for evaluation]",
)
@config_options(PromptSetConfig, skip=("categories", "splits"))
def prompts(out: str, parse_file: str | None, categories: tuple, splits: tuple, **kw) -> None:
    """Write a prompt set (or a parsed prompt list) as JSONL, one prompt with its attributes per line."""
    if parse_file:
        lines = [t.strip() for t in Path(parse_file).read_text().splitlines() if t.strip()]
        parsed = [(t, parse_prompt(t)) for t in lines]
        bad = [t for t, p in parsed if p is None]
        if bad:
            raise click.ClickException(f"{len(bad)} line(s) are not probe prompts, e.g. {bad[:3]}")
        rows = [p.attributes() for _, p in parsed if p is not None]
    else:
        fixed: dict[str, Any] = {k: v for k, v in (("categories", categories), ("splits", splits)) if v}
        rows = [p.attributes() for p in generate_prompt_set(build_config(PromptSetConfig, kw, **fixed))]
    write_jsonl(out, rows)
    click.echo(f"{len(rows)} prompts", err=True)


def _prompt_texts(path: str) -> list[str]:
    missing = click.ClickException(f"{path}: every line needs a 'text' (or 'prompt') field")
    texts: list[str] = []
    for r in read_jsonl(path):
        text = r.get("text") or r.get("prompt")
        if not text:
            raise missing
        texts.append(text)
    if not texts:
        raise missing
    return texts


@cli.command()
@click.option("--model", required=True, help="pipeline folder or hub id")
@click.option(
    "--lora", default=None, type=click.Path(exists=True, file_okay=False), help="LoRA adapter folder"
)
@click.option(
    "--prompts",
    "prompts_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="prompts JSONL (field 'text')",
)
@click.option("--images-per-prompt", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--seed", "base_seed", type=int, default=0, show_default=True, help="first seed; then +1 per image"
)
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="folder for PNGs + manifest.jsonl"
)
@_device_opt
@config_options(GenerationConfig)
def generate(model, lora, prompts_file, images_per_prompt, base_seed, out, device, **kw) -> None:
    """Generate images for a prompts file; writes PNGs and manifest.jsonl (file, prompt, seed, settings)."""
    from ml.generation import generate, load_generator

    config = build_config(GenerationConfig, kw)
    texts = _prompt_texts(prompts_file)
    requests = [
        (t, base_seed + i * images_per_prompt + j)
        for i, t in enumerate(texts)
        for j in range(images_per_prompt)
    ]
    gen = load_generator(model, lora=lora, device=device, fuse_lora=True)
    pbar, progress = bar("generate")
    result = generate(gen, requests, config, progress=progress)
    pbar.close()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, g in enumerate(result.images):
        name = f"{i:06d}_seed{g.seed}.png"
        g.image.save(out_dir / name)
        rows.append({"file": name, "prompt": g.prompt, "seed": g.seed, "settings": g.settings})
    write_jsonl(out_dir / "manifest.jsonl", rows)
    click.echo(f"{len(rows)} images in {out_dir}", err=True)


def _image_rows(path: str) -> tuple[list[dict], list[Path]]:
    rows = read_jsonl(path)
    base = Path(path).parent
    files = []
    for n, r in enumerate(rows, 1):
        f = r.get("image") or r.get("file")
        if not f:
            raise click.ClickException(f"{path}:{n}: needs an 'image' (or 'file') path")
        p = resolve(base, f)
        if not p.exists():
            raise click.ClickException(f"{path}:{n}: image {p} not found")
        files.append(p)
    return rows, files


def _load_clip(clip_model: str, device: str | None, cache: str | None):
    from ml.embeddings import EmbeddingCache, load_clip

    return load_clip(clip_model, device=device), (EmbeddingCache(cache) if cache else None)


@cli.command()
@click.option(
    "--manifest",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="JSONL with 'image' or 'file' paths (relative to the JSONL) and optional 'prompt'",
)
@_clip_opt
@_cache_opt
@_device_opt
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="also write vectors to this .npz")
def embed(manifest, clip_model, cache, device, out) -> None:
    """Embed the images (and prompts) of a manifest into the cache."""
    import numpy as np

    from ml.embeddings import embed_images, embed_texts

    rows, files = _image_rows(manifest)
    clip, store = _load_clip(clip_model, device, cache)
    pbar, progress = bar("embed images")
    images = embed_images(clip, files, store, progress=progress)
    pbar.close()
    texts = sorted({r["prompt"] for r in rows if r.get("prompt")})
    text = embed_texts(clip, texts, store)
    click.echo(
        json.dumps(
            {
                "images": len(files),
                "images_embedded": images.computed,
                "texts": len(texts),
                "texts_embedded": text.computed,
            }
        )
    )
    if out:
        np.savez(
            out,
            image_keys=np.array(images.keys),
            image=images.vectors,
            texts=np.array(texts),
            text=text.vectors,
        )


@cli.command("train-reward")
@click.option(
    "--labels",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="JSONL: image (path), prompt, label (good|bad|skip)",
)
@_clip_opt
@_cache_opt
@_device_opt
@click.option("--out", required=True, type=click.Path(file_okay=False), help="reward model folder to write")
@config_options(RewardConfig, skip=("device",))
def train_reward_cmd(labels, clip_model, cache, device, out, **kw) -> None:
    """Train the reward model on labelled images; prints validation metrics as JSON."""
    from ml.embeddings import embed_images, embed_texts
    from ml.reward import save_reward, train_reward

    config = build_config(RewardConfig, kw, device=device)
    rows, files = _image_rows(labels)
    for n, r in enumerate(rows, 1):
        if r.get("label") not in ("good", "bad", "skip") or not r.get("prompt"):
            raise click.ClickException(f"{labels}:{n}: needs 'prompt' and 'label' good|bad|skip")
    clip, store = _load_clip(clip_model, device, cache)
    pbar, progress = bar("embed images")
    emb = embed_images(clip, files, store, progress=progress)
    pbar.close()
    vectors = dict(zip(emb.keys, emb.vectors, strict=True))
    data = [
        {"image_key": k, "prompt": r["prompt"], "label": r["label"]}
        for k, r in zip(emb.keys, rows, strict=True)
    ]
    pbar, progress = bar("train")
    result = train_reward(
        config, data, vectors, lambda texts: embed_texts(clip, texts, store).vectors, progress
    )
    pbar.close()
    result.model.meta["clip_model"] = clip.model_id
    save_reward(result.model, out)
    click.echo(
        json.dumps(
            {
                "metrics": result.metrics,
                "best_epoch": result.best_epoch,
                "n_train": result.n_train,
                "n_val": result.n_val,
                "seconds": round(result.seconds, 2),
            },
            default=str,
        )
    )


@cli.command()
@click.option("--reward", "reward_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--manifest",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="JSONL with image/file and prompt",
)
@_clip_opt
@_cache_opt
@_device_opt
@click.option("--out", default="-", help="JSONL: the input rows plus 'reward' and 'clip_score'")
def score(reward_dir, manifest, clip_model, cache, device, out) -> None:
    """Score images with a reward model (and the CLIP-score baseline)."""
    from ml.embeddings import clip_score, embed_images, embed_texts
    from ml.reward import load_reward
    from ml.reward import score as reward_score

    rows, files = _image_rows(manifest)
    if any(not r.get("prompt") for r in rows):
        raise click.ClickException(f"{manifest}: every line needs a 'prompt'")
    model = load_reward(reward_dir, device=device)
    clip, store = _load_clip(clip_model, device, cache)
    img = embed_images(clip, files, store).vectors
    txt = embed_texts(clip, [r["prompt"] for r in rows], store).vectors
    if img.shape[1] != model.image_dim:
        raise click.ClickException(
            f"CLIP gives {img.shape[1]}-d vectors, the reward model wants {model.image_dim}"
        )
    r, c = reward_score(model, img, txt), clip_score(img, txt)
    write_jsonl(
        out,
        [{**row, "reward": float(a), "clip_score": float(b)} for row, a, b in zip(rows, r, c, strict=True)],
    )


@cli.command()
@click.option("--model", required=True, help="base pipeline folder or hub id")
@click.option(
    "--samples",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="JSONL with image/file, prompt, reward (the output of `score`)",
)
@click.option(
    "--pretrain",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="pre-training image-caption folder (metadata.jsonl, or x.png + x.txt)",
)
@click.option(
    "--resume", default=None, type=click.Path(exists=True, file_okay=False), help="checkpoint folder"
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="folder for checkpoint-<step>/")
@click.option("--preset", default=None, type=click.Choice(sorted(PRESETS)),
              help="start from a named set of settings (options given still win); 'paper': the paper's")
@click.option("--estimate-only", is_flag=True, help="print the memory, disk and time estimate and stop")
@config_options(FinetuneConfig)
def finetune(model, samples, pretrain, resume, out, preset, estimate_only, **kw) -> None:
    """Reward-weighted fine-tuning of the UNet (full or LoRA); prints the checkpoint folder.

    Before it starts it prints (to stderr) an estimate of device memory, disk and time."""
    from ml.finetune import ModelSample
    from ml.finetune import finetune as run
    from ml.finetune_estimate import estimate_finetune

    named = {k: v for k, v in kw.items() if v is not None}  # the options given; the rest: preset, defaults
    config = build_config(FinetuneConfig, {**(PRESETS[preset] if preset else {}), **named})
    if config.mode not in ("full", "lora"):
        raise click.BadParameter("must be 'full' or 'lora'", param_hint="--mode")
    rows, files = _image_rows(samples)
    if any("reward" not in r or not r.get("prompt") for r in rows):
        raise click.ClickException(f"{samples}: every line needs 'prompt' and 'reward'")
    data = [ModelSample(f, r["prompt"], float(r["reward"])) for f, r in zip(files, rows, strict=True)]
    for line in estimate_finetune(config, model, with_pretrain=pretrain is not None).lines():
        click.echo(line, err=True)
    if estimate_only:
        return
    pbar, progress = bar("finetune")
    result = run(config, model, data, out, pretrain=pretrain, resume_from=resume, progress=progress)
    pbar.close()
    write_jsonl(Path(out) / "curve.jsonl", result.curve)
    click.echo(
        json.dumps(
            {
                "checkpoint": str(result.checkpoint),
                "kind": result.kind,
                "steps": result.steps,
                "final_loss": result.curve[-1]["loss"] if result.curve else None,
                "warnings": result.warnings,
            }
        )
    )


@cli.command("best-of-n")
@click.option("--model", required=True, help="pipeline folder or hub id")
@click.option("--lora", default=None, type=click.Path(exists=True, file_okay=False))
@click.option("--reward", "reward_dir", required=True, type=click.Path(exists=True, file_okay=False))
@_clip_opt
@_cache_opt
@_device_opt
@click.option("--prompts", "prompts_file", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="folder for kept PNGs + manifest"
)
@config_options(BestOfNConfig)
@config_options(GenerationConfig)
def best_of_n(model, lora, reward_dir, clip_model, cache, device, prompts_file, out, **kw) -> None:
    """Sample n images per prompt and keep the k with the highest reward."""
    from ml.best_of_n import best_of_n as run
    from ml.generation import load_generator
    from ml.reward import load_reward

    gen_cfg = build_config(GenerationConfig, kw)
    config = build_config(BestOfNConfig, kw, generation=gen_cfg)
    if not 1 <= config.k <= config.n:
        raise click.BadParameter(f"need 1 <= k <= n (k={config.k}, n={config.n})", param_hint="--k")
    texts = _prompt_texts(prompts_file)
    clip, store = _load_clip(clip_model, device, cache)
    gen = load_generator(model, lora=lora, device=device, fuse_lora=True)
    pbar, progress = bar("best-of-n")
    result = run(config, gen, clip, load_reward(reward_dir, device=device), texts, store, progress)
    pbar.close()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, s in enumerate(result.kept):
        name = f"{i:06d}_seed{s.image.seed}.png"
        s.image.image.save(out_dir / name)
        rows.append(
            {
                "file": name,
                "prompt": s.image.prompt,
                "seed": s.image.seed,
                "reward": s.reward,
                "rank": s.rank,
                "settings": s.image.settings,
            }
        )
    write_jsonl(out_dir / "manifest.jsonl", rows)
    click.echo(f"{len(rows)} images kept in {out_dir}", err=True)


@cli.command("make-tiny-models")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="writes <out>/sd and <out>/clip")
@config_options(TinyConfig)
def make_tiny_models(out, **kw) -> None:
    """Write random-weight SD and CLIP folders (tiny, or full-size architectures with --full-size)."""
    from ml.tiny import write_tiny_clip, write_tiny_sd

    config = build_config(TinyConfig, kw)
    sd = write_tiny_sd(Path(out) / "sd", config)
    clip = write_tiny_clip(Path(out) / "clip", config)
    click.echo(json.dumps({"sd": str(sd), "clip": str(clip)}))


def _stage_bars() -> tuple[dict[str, Any], Any]:
    """One tqdm bar per stage name, created as stages start (stages that run side by side, such as
    the world round's fine-tunes, get a line each); `progress(stage, done, total, *_)`."""
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int, *_: Any) -> None:
        if stage not in bars:
            for b in bars.values():
                if b.total is not None and b.n >= b.total:
                    b.close()
            open_bars = [b for b in bars.values() if not b.disable and b.n < (b.total or 0)]
            bars[stage] = tqdm(desc=stage, total=total, unit="it", leave=False, position=len(open_bars))
        b = bars[stage]
        b.total = total
        b.update(done - b.n)  # redraws at most every tqdm mininterval

    return bars, progress


@cli.command("make-world-models")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="writes <out>/sd, <out>/clip, world.json")
@config_options(WorldModelsConfig)
def make_world_models(out, **kw) -> None:
    """Train the shapes world's VAE, CLIP and diffusion model from scratch (seeded; minutes on a CPU)."""
    import time

    from ml.world.build import write_world_models

    config = build_config(WorldModelsConfig, kw)
    t0 = time.perf_counter()
    bars, progress = _stage_bars()
    result = write_world_models(out, config, progress)
    for b in bars.values():
        b.close()
    times = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    click.echo(f"world models in {out} after {time.perf_counter() - t0:.0f} s ({times})", err=True)
    click.echo(json.dumps({"sd": str(result.sd), "clip": str(result.clip), "seconds": result.seconds}))


_world_models_opt = click.option(
    "--models",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="world models folder (sd/ and clip/) [default: the shipped ones]",
)


def _world_run(run: Any, summary: Any, config: Any, models: str | None, out: str, files: dict[str, str]) -> None:
    """Run a world experiment `run(config, models, out, progress)` with stage bars; print its summary
    (stderr) and where its files are (stdout, JSON)."""
    from ml.world import SHIPPED_MODELS

    bars, progress = _stage_bars()
    report = run(config, models or SHIPPED_MODELS, out, progress)
    for b in bars.values():
        b.close()
    click.echo(summary(report), err=True)
    click.echo(json.dumps({k: str(Path(out) / name) for k, name in files.items()}))


@cli.command("world-loop")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="writes report.json and grid.png here")
@_world_models_opt
@config_options(WorldLoopConfig)
def world_loop(out, models, **kw) -> None:
    """One offline round in the shapes world: pool -> oracle labels -> reward -> fine-tune -> oracle
    evaluation of base / uniform / reward-weighted; writes report.json and grid.png."""
    from ml.world.loop import run_world_loop, summary

    _world_run(run_world_loop, summary, build_config(WorldLoopConfig, kw), models, out,
               {"report": "report.json", "grid": "grid.png"})


@cli.command("world-active")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="writes active.json here")
@_world_models_opt
@config_options(ActiveConfig)
def world_active(out, models, **kw) -> None:
    """What to label next, in the shapes world: the reward model's AUC on unseen prompts as labels are
    added at random or where the current reward model is least sure; writes active.json."""
    from ml.world.active import run_active, summary

    _world_run(run_active, summary, build_config(ActiveConfig, kw), models, out, {"report": "active.json"})


@cli.command("world-rounds")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="writes rounds.json and grid.png here")
@_world_models_opt
@config_options(RoundsConfig)
def world_rounds(out, models, **kw) -> None:
    """Several rounds in the shapes world, each fine-tuning the model of the round before on new images it
    drew and new oracle labels: alignment per round beside the uniform-weight chain, and a fidelity guard
    (drawing quality, distance to the pre-training images) that shows reward hacking; writes rounds.json."""
    from ml.world.rounds import run_world_rounds, summary

    _world_run(run_world_rounds, summary, build_config(RoundsConfig, kw), models, out,
               {"report": "rounds.json", "grid": "grid.png"})


@cli.command("world-pairs")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="writes report.json here")
@_world_models_opt
@config_options(PairsConfig)
def world_pairs(out, models, **kw) -> None:
    """Pairs as a training signal, in the shapes world: the paper's reward-weighted fine-tune, the same
    with a reward model that also learns from pairwise votes, and Diffusion-DPO on the voted pairs,
    measured by the oracle on the same evaluation seeds; writes report.json."""
    from ml.world.pairs import run_pairs, summary

    _world_run(run_pairs, summary, build_config(PairsConfig, kw), models, out, {"report": "report.json"})

if __name__ == "__main__":
    cli()
