"""generate: prompt set x generator version x images per prompt -> images in storage and rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.db.models import Job, ModelVersion, Prompt, PromptSet
from app.jobs.schemas import GenerateParams, SamplerParams
from workers.handlers.common import existing_keys, image_row, png, store_generated
from workers.lifecycle import JobContext, JobFailed


def generation_config(sampler: SamplerParams) -> Any:
    from ml.generation import GenerationConfig

    return GenerationConfig(steps=sampler.steps, guidance_scale=sampler.guidance_scale, scheduler=sampler.scheduler,
                            width=sampler.width, height=sampler.height, batch_size=sampler.batch_size)


def draw(ctx: JobContext, job: Job, version: ModelVersion, prompts: list[tuple[int, str]], seeds: list[int],
         sampler: SamplerParams, *, prompt_set_id: int, wanted: int, progress_span: tuple[float, float] = (0, 1),
         label: str = "images") -> int:
    """Generate every (prompt, seed) not yet stored for this job (or a job it retries) and version,
    committing per batch so that a crash or a cancel leaves only whole images behind and a re-run or a
    retry skips what is done."""
    from ml.generation import generate

    rt = ctx.rt
    with rt.tx() as s:
        done = existing_keys(s, ctx.lineage, version.id)
    todo = [(pid, text, seed) for pid, text in prompts for seed in seeds if (pid, seed) not in done]
    total = len(prompts) * len(seeds)
    if not todo:
        return 0
    generator = rt.generator(version)
    config = generation_config(sampler)
    chunk = max(1, sampler.batch_size)
    lo, hi = progress_span
    made = 0
    for start in range(0, len(todo), chunk):
        if ctx.should_cancel():
            from ml.generation import Cancelled

            raise Cancelled(start, len(todo))
        batch = todo[start:start + chunk]
        result = generate(generator, [(text, seed) for _, text, seed in batch], config,
                          interrupt=ctx.should_cancel)
        rows = [
            image_row(rt, data=png(img.image), prompt_id=pid, prompt_set_id=prompt_set_id, job_id=job.id,
                      generator_version_id=version.id, seed=seed, settings=img.settings, wanted=wanted)
            for (pid, _, seed), img in zip(batch, result.images, strict=True)
        ]
        with rt.tx() as s:
            made += store_generated(s, rows)
        finished = len(done) + start + len(batch)
        ctx.progress(lo + (hi - lo) * finished / total, f"{finished}/{total} {label}")
    return made


def run(ctx: JobContext, job: Job) -> dict[str, Any]:
    p = GenerateParams.model_validate(job.params)
    with ctx.rt.tx() as s:
        ps = s.get(PromptSet, p.prompt_set_id)
        version = s.get(ModelVersion, p.generator_version_id)
        if ps is None or version is None:
            raise JobFailed("the prompt set or generator version no longer exists")
        query = select(Prompt.id, Prompt.text).where(Prompt.prompt_set_id == ps.id).order_by(Prompt.position, Prompt.id)
        if p.prompt_ids:
            query = query.where(Prompt.id.in_(p.prompt_ids))
        prompts = [(r.id, r.text) for r in s.execute(query)]
        # evaluation sets' images are compared, not rated: they stay out of the rating pool
        wanted = ps.labels_per_image if ps.purpose == "training" else 0
        s.expunge(version)
    if not prompts:
        raise JobFailed("the prompt set has no prompts")
    seeds = list(range(p.base_seed, p.base_seed + p.images_per_prompt))
    ctx.log(f"{len(prompts)} prompts x {len(seeds)} seeds with generator version {version.id} ({version.name})")
    made = draw(ctx, job, version, prompts, seeds, p.sampler, prompt_set_id=ps.id, wanted=wanted)
    return {"images": made, "requested": len(prompts) * len(seeds), "generator_version_id": version.id}
