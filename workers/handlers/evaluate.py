"""evaluate: evaluation prompts x two generator versions with shared seeds (and optionally the
baseline's best-of-n by reward as a third arm) -> comparisons that want N votes each."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sqlalchemy import select

from app.db.models import Comparison, Evaluation, Image, Job, ModelVersion, Prompt, PromptSet
from app.db.session import upsert_insert
from app.jobs.schemas import EvaluateParams
from workers.handlers.embeddings import image_vectors, text_vectors
from workers.handlers.generate import draw
from workers.lifecycle import JobContext, JobFailed

BEST_OF_N_SEED_OFFSET = 100_000


def _evaluation(s: Any, ctx: JobContext, job: Job, p: EvaluateParams, kind: str, name: str) -> int:
    ev = s.scalar(select(Evaluation).where(Evaluation.job_id.in_(ctx.lineage),
                                           Evaluation.candidate_kind == kind).order_by(Evaluation.id).limit(1))
    if ev is None:
        ev = Evaluation(
            name=name,
            prompt_set_id=p.prompt_set_id,
            job_id=job.id,
            baseline_version_id=p.baseline_version_id,
            candidate_version_id=p.candidate_version_id if kind == "model" else p.baseline_version_id,
            candidate_kind=kind,
            votes_per_comparison=p.votes_per_comparison,
            params=p.model_dump(mode="json"),
        )
        s.add(ev)
        s.flush()
    return ev.id


def _images(s: Any, ctx: JobContext, version_id: int) -> dict[tuple[int, int], int]:
    return {
        (r.prompt_id, r.seed): r.id
        for r in s.execute(
            select(Image.id, Image.prompt_id, Image.seed).where(
                Image.job_id.in_(ctx.lineage), Image.generator_version_id == version_id
            )
        )
    }


def _pairs(s: Any, evaluation_id: int, votes: int, pairs: list[tuple[int, int, int]]) -> int:
    if not pairs:
        return 0
    stmt = (
        upsert_insert(s)(Comparison)
        .values(
            [
                {
                    "evaluation_id": evaluation_id,
                    "prompt_id": pid,
                    "image_a_id": a,
                    "image_b_id": b,
                    "votes_wanted": votes,
                    "votes_open": votes,
                }
                for pid, a, b in pairs
            ]
        )
        .on_conflict_do_nothing()
        .returning(Comparison.id)
    )
    return len(list(s.scalars(stmt)))


def run(ctx: JobContext, job: Job) -> dict[str, Any]:
    rt = ctx.rt
    p = EvaluateParams.model_validate(job.params)
    votes = p.votes_per_comparison or 9
    with rt.tx() as s:
        ps = s.get(PromptSet, p.prompt_set_id)
        base, cand = s.get(ModelVersion, p.baseline_version_id), s.get(ModelVersion, p.candidate_version_id)
        reward = s.get(ModelVersion, p.reward_version_id) if p.reward_version_id else None
        if ps is None or base is None or cand is None:
            raise JobFailed("the prompt set or a generator version no longer exists")
        prompts = [
            (r.id, r.text)
            for r in s.execute(
                select(Prompt.id, Prompt.text).where(Prompt.prompt_set_id == ps.id).order_by(Prompt.position, Prompt.id)
            )
        ]
        main_id = _evaluation(s, ctx, job, p, "model", f"#{cand.id} vs #{base.id} on {ps.name}")
        bon_id = (
            _evaluation(s, ctx, job, p, "best_of_n", f"best-of-{p.best_of_n} of #{base.id} vs #{base.id} on {ps.name}")
            if p.best_of_n
            else None
        )
        for obj in (base, cand, reward):
            if obj is not None:
                s.expunge(obj)
    if not prompts:
        raise JobFailed("the evaluation prompt set has no prompts")
    seeds = list(range(p.base_seed, p.base_seed + p.images_per_prompt))
    span = 0.4 if p.best_of_n else 0.5
    draw(
        ctx,
        job,
        base,
        prompts,
        seeds,
        p.sampler,
        prompt_set_id=ps.id,
        wanted=0,
        progress_span=(0, span),
        label="baseline images",
    )
    draw(
        ctx,
        job,
        cand,
        prompts,
        seeds,
        p.sampler,
        prompt_set_id=ps.id,
        wanted=0,
        progress_span=(span, 2 * span),
        label="candidate images",
    )
    with rt.tx() as s:
        a, b = _images(s, ctx, base.id), _images(s, ctx, cand.id)
        made = _pairs(s, main_id, votes, [(pid, a[(pid, sd)], b[(pid, sd)]) for pid, _ in prompts for sd in seeds])
    result: dict[str, Any] = {"evaluation_ids": [main_id], "comparisons": made}
    if is_world_model(rt, base) or is_world_model(rt, cand):
        oracle = oracle_measure(ctx, main_id, [(text, a[(pid, sd)], b[(pid, sd)]) for pid, text in prompts
                                               for sd in seeds])
        result["oracle"] = {"gain": oracle["gain"], "sentence": oracle["sentence"]}
    if p.best_of_n and bon_id is not None and reward is not None:
        result["comparisons"] += best_of_n_arm(ctx, job, p, base, reward, prompts, seeds, bon_id, votes)
        result["evaluation_ids"].append(bon_id)
    return result


def is_world_model(rt: Any, version: ModelVersion) -> bool:
    """A generator of the shapes world (its folder carries world.json): the oracle can judge its images."""
    from pathlib import Path

    folder, _ = rt.generator_source(version)
    return (Path(folder) / "world.json").exists()


def oracle_measure(ctx: JobContext, evaluation_id: int, pairs: list[tuple[str, int, int]]) -> dict[str, Any]:
    """The world oracle's verdict on both sides' images (pairs: prompt, baseline image, candidate image),
    stored on the evaluation beside the raters' votes."""
    from ml.world.measure import compare, verdict_sentence

    rt = ctx.rt
    ctx.progress(0.97, "the world oracle judges both sides", force=True)
    with rt.tx() as s:
        keys = dict(s.execute(select(Image.id, Image.storage_key).where(
            Image.id.in_([i for _, a, b in pairs for i in (a, b)]))).all())
    measured = compare([rt.storage.get(keys[a]) for _, a, _ in pairs], [rt.storage.get(keys[b]) for _, _, b in pairs],
                       [text for text, _, _ in pairs])
    measured["sentence"] = verdict_sentence(measured["gain"], measured["baseline"]["aligned"]["rate"],
                                            measured["candidate"]["aligned"]["rate"])
    measured = _finite(measured)
    with rt.tx() as s:
        ev = s.get(Evaluation, evaluation_id)
        if ev is not None:
            ev.oracle = measured
    ctx.log(measured["sentence"])
    return measured


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: store them as null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def best_of_n_arm(
    ctx: JobContext,
    job: Job,
    p: EvaluateParams,
    base: ModelVersion,
    reward: ModelVersion,
    prompts: list[tuple[int, str]],
    seeds: list[int],
    evaluation_id: int,
    votes: int,
) -> int:
    """The paper's rejection-sampling baseline: n samples of the baseline per prompt, the best by
    reward paired against the baseline's images of the shared seeds."""
    from ml.reward import score

    rt = ctx.rt
    n = p.best_of_n or 16
    bon_seeds = list(range(p.base_seed + BEST_OF_N_SEED_OFFSET, p.base_seed + BEST_OF_N_SEED_OFFSET + n))
    draw(
        ctx,
        job,
        base,
        prompts,
        bon_seeds,
        p.sampler,
        prompt_set_id=p.prompt_set_id,
        wanted=0,
        progress_span=(0.8, 0.95),
        label="best-of-n samples",
    )
    model = rt.reward(reward)
    pairs = []
    with rt.tx() as s:
        rows = s.execute(
            select(Image.id, Image.prompt_id, Image.seed, Image.content_hash, Image.storage_key).where(
                Image.job_id.in_(ctx.lineage), Image.generator_version_id == base.id
            )
        ).all()
    by_key = {(r.prompt_id, r.seed): r for r in rows}
    for pid, text in prompts:
        cands = [by_key[(pid, sd)] for sd in bon_seeds if (pid, sd) in by_key]
        vecs = image_vectors(rt, [(r.content_hash, r.storage_key) for r in cands])
        img = np.stack([vecs[r.content_hash] for r in cands])
        txt = np.repeat(text_vectors(rt, [text]), len(cands), axis=0)
        order = np.argsort(-score(model, img, txt), kind="stable")
        best = [cands[i] for i in order[: len(seeds)]]
        pairs += [(pid, by_key[(pid, sd)].id, b.id) for sd, b in zip(seeds, best, strict=False)]
    with rt.tx() as s:
        return _pairs(s, evaluation_id, votes, pairs)
