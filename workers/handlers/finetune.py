"""finetune: generator version + reward version + the prompt set's generated images (labelled and
unlabelled, weighted by reward) + pre-training pairs -> a new generator version (LoRA or full)."""

from __future__ import annotations

import importlib.util
import socket
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import Select, or_, select

from app.db.models import Image, Job, ModelVersion, Prompt, PromptSet, Rating, RewardScore
from app.jobs import loop
from app.jobs.schemas import FinetuneParams
from workers.artifacts import publish, work_dir
from workers.handlers.comparison_votes import VotedPair, max_vote_id, voted_pairs
from workers.lifecycle import JobContext, JobFailed
from workers.version import code_version


@dataclass(frozen=True)
class StoredImage:
    """A training image read from storage only when the fine-tune's VAE first needs it (then dropped):
    the job never holds its whole image set in memory (~17 GB at the paper's ~48k images). `sha256` is
    the storage's content hash, which keys the latent cache without reading the image."""

    storage: Any
    key: str
    sha256: str

    def read_bytes(self) -> bytes:
        return bytes(self.storage.get(self.key))


# Settings that change how a run is kept or fed, never what it computes: a checkpoint written under
# other values of these still continues the same run.
RESUME_NEUTRAL = ("checkpoint_every", "keep_checkpoints", "data_workers")


def resume_point(config: Any, base_model: str, out_dirs: list[Path],
                 processes: int = 1) -> tuple[Path | None, list[str]]:
    """Where a job continues after a crash: the newest complete checkpoint (with its resume state:
    trained weights, optimizer, RNG) that this job or a failed job it retries wrote, if it was written
    by the same settings from the same base model on as many processes (each has its own noise
    generator in the resume state), so the job ends as it would have without the crash.
    Returns it (or None) and log lines saying why other checkpoints were passed over."""
    import json

    from ml.finetune import latest_checkpoint as newest

    found, notes = [], []
    for out in out_dirs:
        ckpt = newest(out) if out.is_dir() else None
        if ckpt is None:
            continue
        meta = json.loads((ckpt / "finetune.json").read_text())
        want = {k: v for k, v in asdict(config).items() if k not in RESUME_NEUTRAL}
        had = {k: v for k, v in meta.get("config", {}).items() if k not in RESUME_NEUTRAL}
        # JSON turns tuples into lists: compare both through JSON
        differs = sorted(k for k in want if json.dumps(want[k]) != json.dumps(had.get(k)))
        if meta.get("base_model") != str(base_model) or differs:
            notes.append(f"not resuming from {ckpt}: written with other settings "
                         f"({', '.join(differs) or 'base model'})")
            continue
        if int(meta.get("processes", 1)) != processes:
            notes.append(f"not resuming from {ckpt}: written by {meta.get('processes', 1)} training processes, "
                         f"this worker runs {processes}")
            continue
        found.append((int(meta["step"]), ckpt))
    return (max(found, key=lambda f: f[0])[1] if found else None), notes


def finetune_config(p: FinetuneParams) -> Any:
    """The job's settings over its preset's (ml.finetune.PRESETS): what the job names wins."""
    from ml.finetune import PRESETS, FinetuneConfig

    fields = ("mode", "lora_rank", "lr", "beta", "max_steps", "batch_size", "gradient_accumulation_steps",
              "caption_dropout", "snr_gamma", "seed", "objective", "dpo_beta")
    values = {**(PRESETS[p.preset] if p.preset else {}),
              **{k: getattr(p, k) for k in fields if k in p.model_fields_set or not p.preset}}
    steps = values.get("max_steps", p.max_steps)
    every = p.checkpoint_every or max(1, min(500, steps // 4 or 1))
    return FinetuneConfig(**values, checkpoint_every=every, keep_checkpoints=p.keep_checkpoints,
                          ema_decay=p.ema_decay, use_8bit_adam=p.use_8bit_adam, data_workers=p.data_workers)


def continue_from(config: Any, parent: ModelVersion, adapter: str) -> Any:
    """A fine-tune of a generator that is itself a LoRA fine-tune starts from that generator, not from
    its base: a LoRA fine-tune continues the parent's adapter (so it must have the same rank and
    targets), a full one fuses it into the weights first. Without this a later round would quietly
    start again from the base model."""
    had = parent.hyperparams or {}
    if config.mode == "lora" and (had.get("lora_rank") != config.lora_rank
                                  or had.get("lora_targets") != config.lora_targets):
        raise JobFailed(
            f"generator version {parent.id} is a rank-{had.get('lora_rank')} LoRA fine-tune"
            + (f" on {had['lora_targets']!r}" if had.get("lora_targets") else "")
            + f"; a LoRA fine-tune of it continues its adapter, so give lora_rank {had.get('lora_rank')} "
            f"(this job asks for {config.lora_rank}), or mode 'full'")
    return replace(config, init_adapter=str(adapter))


def check_worker_can_run(p: FinetuneParams) -> None:
    """Fail a job this worker cannot run before it loads a model or an image: the API cannot know what
    the worker that picks a job up has installed."""
    if p.use_8bit_adam and importlib.util.find_spec("bitsandbytes") is None:
        raise JobFailed(f"use_8bit_adam: bitsandbytes is not installed on worker {socket.gethostname()}; "
                        "install it there (pip install bitsandbytes, CUDA workers) or resubmit without "
                        "use_8bit_adam")


def estimate_lines(config: Any, base_model: str, with_pretrain: bool) -> list[str]:
    """The job's expected memory, disk and time, for its log before it starts; a model whose config
    cannot be read (an odd architecture) gets a line saying so instead of failing the job."""
    from ml.finetune_estimate import estimate_finetune

    try:
        return estimate_finetune(config, base_model, with_pretrain=with_pretrain).lines()
    except Exception as e:  # an estimate must never stop the job it describes
        return [f"no estimate of memory, disk and time: {type(e).__name__}: {e}"]


def training_images(prompt_set_id: int, reward_version_id: int) -> Select[int, str, str, float, str]:
    """D_model: the set's generated images with their reward, but never an evaluation's images (an
    evaluate job once could draw into a training set; those images must not train the next round)."""
    evaluation_jobs = select(Job.id).where(Job.kind == "evaluate")
    return (
        select(Image.id, Image.storage_key, Prompt.text, RewardScore.score, Image.content_hash)
        .join(Prompt, Prompt.id == Image.prompt_id)
        .join(RewardScore, (RewardScore.image_id == Image.id) & (RewardScore.reward_version_id == reward_version_id))
        .where(Image.prompt_set_id == prompt_set_id, Image.source == "generated",
               or_(Image.job_id.is_(None), Image.job_id.not_in(evaluation_jobs)))
        .order_by(Image.id)
    )


def dpo_pairs(voted: list[VotedPair]) -> tuple[list[VotedPair], list[tuple[int, int]], list[Any]]:
    """(pairs with a majority, (preferred, rejected) indices into the images, the images): the side
    most alignment votes chose is preferred; tied pairs teach nothing and are left out."""
    decided = [q for q in voted if q.votes_a != q.votes_b]
    index: dict[int, int] = {}
    images: list[Any] = []
    pairs = []
    for q in decided:
        for im in (q.a, q.b):
            if im.image_id not in index:
                index[im.image_id] = len(images)
                images.append((im, q.prompt))
        w, lose = (q.a, q.b) if q.votes_a > q.votes_b else (q.b, q.a)
        pairs.append((index[w.image_id], index[lose.image_id]))
    return decided, pairs, images


def run(ctx: JobContext, job: Job) -> dict[str, Any]:
    import torch

    from ml.finetune import ModelSample, finetune

    rt = ctx.rt
    p = FinetuneParams.model_validate(job.params)
    check_worker_can_run(p)
    dpo = p.objective == "dpo"
    pairs: list[tuple[int, int]] | None = None
    vote_info: dict[str, Any] = {}
    with rt.tx() as s:
        ps, gv = s.get(PromptSet, p.prompt_set_id), s.get(ModelVersion, p.generator_version_id)
        rv = s.get(ModelVersion, p.reward_version_id) if p.reward_version_id is not None else None
        if ps is None or gv is None or (rv is None and not dpo):
            raise JobFailed("the prompt set, generator version or reward version no longer exists")
        if dpo:
            snap = max_vote_id(s, ps.id)
            voted = voted_pairs(s, ps.id, snap)
        else:
            rows = s.execute(training_images(ps.id, rv.id)).all() if rv is not None else []
        labelled = set(s.scalars(select(Rating.image_id).where(Rating.prompt_set_id == ps.id, Rating.label != "skip")))
        for obj in (gv, rv):
            if obj is not None:
                s.expunge(obj)
    if dpo:
        decided, pairs, images = dpo_pairs(voted)
        if not pairs:
            raise JobFailed(f"objective dpo: prompt set {ps.id} has no compared pair with a majority of alignment "
                            f"votes ({len(voted)} pairs, all tied or none)")
        samples = [ModelSample(image=StoredImage(rt.storage, im.storage_key, im.content_hash), prompt=text, reward=0.0)
                   for im, text in images]
        n_labelled = sum(1 for im, _ in images if im.image_id in labelled)
        vote_info = {"max_vote_id": snap, "pairs": len(pairs), "tied_pairs": len(voted) - len(decided),
                     "pair_votes": sum(q.votes for q in decided)}
        ctx.log(f"D_pairs: {len(pairs)} preferred/rejected pairs of {len(samples)} images from "
                f"{vote_info['pair_votes']} alignment votes (up to vote {snap}; {vote_info['tied_pairs']} tied pairs "
                f"left out); Diffusion-DPO, β {p.dpo_beta}")
    else:
        if rv is None or not rows:
            raise JobFailed(f"no generated images of prompt set {ps.id} carry a score of reward version "
                            f"{p.reward_version_id}")
        samples = [ModelSample(image=StoredImage(rt.storage, r.storage_key, r.content_hash), prompt=r.text,
                               reward=float(r.score)) for r in rows]
        n_labelled = sum(1 for r in rows if r.id in labelled)
        ctx.log(f"D_model: {len(samples)} images ({n_labelled} human-labelled, {len(samples) - n_labelled} "
                f"unlabelled), weighted by reward version {rv.id}")
    base_model, parent_adapter = rt.generator_source(gv)
    pretrain = p.pretrain_dir or rt.settings.pretrain_dir
    key = f"artifacts/generator/job-{job.id}"
    out = work_dir(rt, key)
    config = finetune_config(p)
    if parent_adapter is not None:
        config = continue_from(config, gv, parent_adapter)
        ctx.log(f"starting from generator version {gv.id}: "
                + ("continuing its LoRA adapter" if config.mode == "lora" else "its adapter fused into the weights"))
    # this job's own folder first, then those of the failed or cancelled jobs it retries
    earlier = [work_dir(rt, f"artifacts/generator/job-{j}", create=False) for j in ctx.lineage if j != job.id]
    processes = rt.settings.finetune_processes
    resume, notes = resume_point(config, base_model, [out, *earlier], processes)
    for note in notes:
        ctx.log(note, "warning")
    if resume is not None:
        ctx.log(f"resuming from {resume.name}" + ("" if resume.parent == out else f" of {resume.parent.name}"))
    for line in estimate_lines(config, base_model, with_pretrain=bool(pretrain)):
        ctx.log(line)
    # ml.finetune seeds data order and noise from config.seed, but LoRA's initial weights come from
    # torch's global generator: seeded here, a job is repeatable, whichever jobs its process ran before
    # (a resumed one takes them from its checkpoint)
    torch.manual_seed(config.seed)

    def progress(step: int, total: int, loss: float) -> None:
        ctx.progress(step / max(total, 1), f"step {step}/{total}, loss {loss:.4f}")

    if processes > 1 and dpo:
        ctx.log("objective dpo trains in this worker's process (the multi-process launcher takes reward-weighted "
                "samples only)", "warning")
    if processes > 1 and not dpo:
        from ml.finetune import FinetuneResult
        from workers.finetune_launch import run_launched, write_spec

        ctx.log(f"training on {processes} processes under accelerate: {processes} × batch_size "
                f"{config.batch_size} samples per micro-batch")
        spec = write_spec(out, config=config, base_model=str(base_model), storage_url=rt.settings.storage_url,
                          samples=[(r.storage_key, r.content_hash, r.text, float(r.score)) for r in rows],
                          pretrain=pretrain, resume_from=resume, latent_cache=rt.latent_cache().path)
        try:
            launched = run_launched(spec, processes, progress=progress, should_cancel=ctx.should_cancel, log=ctx.log)
        except RuntimeError as e:
            raise JobFailed(str(e)[-2000:]) from e
        result = FinetuneResult(**{**launched, "checkpoint": Path(launched["checkpoint"])})
    else:
        result = finetune(config, base_model, samples, out, pretrain=pretrain, resume_from=resume,
                          latent_cache=rt.latent_cache(), progress=progress, should_cancel=ctx.should_cancel,
                          pairs=pairs)
    for warning in result.warnings:
        ctx.log(warning, "warning")
    url = publish(rt, Path(result.checkpoint), f"{key}/{Path(result.checkpoint).name}")
    losses = [c.get("loss") for c in result.curve if c.get("loss") is not None]
    with rt.tx() as s:
        version = s.scalar(select(ModelVersion).where(ModelVersion.job_id == job.id))
        if version is None:
            version = ModelVersion(
                kind="generator", mode=config.mode, name=f"{config.mode} of #{gv.id} on {ps.name} #{job.id}",
                parent_id=gv.id,
                job_id=job.id, prompt_set_id=ps.id, artifact_url=url,
                hyperparams={**asdict(config),
                             # a LoRA adapter always sits on the root model (a parent adapter was continued)
                             "base_model": (gv.hyperparams["base_model"] if gv.mode == "lora" else gv.artifact_url)
                             if config.mode == "lora" else url,
                             "init_adapter": gv.artifact_url if parent_adapter is not None else None,
                             "pretrain_dir": pretrain, "reward_version_id": rv.id if rv else None},
                label_snapshot={**((rv.label_snapshot or {}) if rv else {}), "reward_version_id": rv.id if rv else None,
                                "images": len(samples), "labelled_images": n_labelled, **vote_info},
                code_version=code_version(),
                metrics={"curve": result.curve, "steps": result.steps, "final_loss": losses[-1] if losses else None,
                         "warnings": result.warnings, "seconds": round(result.seconds, 3)},
            )
            s.add(version)
            s.flush()
        version_id = version.id
        this_job = s.get(Job, job.id)
        if this_job is None:
            raise JobFailed(f"job {job.id} no longer exists")
        next_job = loop.chain_after(s, rt.settings, this_job, version)
    return {"generator_version_id": version_id, "steps": result.steps, "images": len(samples),
            "warnings": result.warnings, "next_job_id": next_job}
