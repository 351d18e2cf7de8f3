"""evaluate: evaluation prompts x two generator versions with shared seeds (and optionally the
baseline's best-of-n by reward as a third arm) -> comparisons that want N votes each."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sqlalchemy import select

from app.db.models import Comparison, ComparisonImage, Evaluation, Image, Job, ModelVersion, Prompt, PromptSet
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


Query = tuple[int, list[int], list[int]]  # prompt id, baseline images, candidate images (same seeds, in order)


def queries_of(pid: int, seeds: list[int], per_side: int, a: dict[tuple[int, int], int],
               b: dict[tuple[int, int], int]) -> list[Query]:
    """A prompt's seeds in queries of `per_side` images a side: seed i of side a faces seed i of side b."""
    chunks = [seeds[i:i + per_side] for i in range(0, len(seeds), per_side)]
    return [(pid, [a[(pid, sd)] for sd in chunk], [b[(pid, sd)] for sd in chunk]) for chunk in chunks]


def _pairs(s: Any, evaluation_id: int, votes: int, queries: list[Query]) -> int:
    """One comparison per query (its first images as image_a / image_b) and its images a side, in order;
    a re-run adds nothing twice."""
    if not queries:
        return 0
    stmt = (
        upsert_insert(s)(Comparison)
        .values(
            [
                {
                    "evaluation_id": evaluation_id,
                    "prompt_id": pid,
                    "image_a_id": a[0],
                    "image_b_id": b[0],
                    "votes_wanted": votes,
                    "votes_open": votes,
                }
                for pid, a, b in queries
            ]
        )
        .on_conflict_do_nothing()
        .returning(Comparison.id)
    )
    made = len(list(s.scalars(stmt)))
    ids = {
        (r.image_a_id, r.image_b_id): r.id
        for r in s.execute(select(Comparison.id, Comparison.image_a_id, Comparison.image_b_id)
                           .where(Comparison.evaluation_id == evaluation_id))
    }
    rows = [
        {"comparison_id": ids[(a[0], b[0])], "side": side, "position": i, "image_id": image}
        for _, a, b in queries for side, images in (("a", a), ("b", b)) for i, image in enumerate(images)
    ]
    for start in range(0, len(rows), 5000):
        s.execute(upsert_insert(s)(ComparisonImage).values(rows[start:start + 5000]).on_conflict_do_nothing())
    return made


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
        per_side = min(p.images_per_side, len(seeds))
        made = _pairs(s, main_id, votes, [q for pid, _ in prompts for q in queries_of(pid, seeds, per_side, a, b)])
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
    """The paper's rejection-sampling baseline: each baseline image of the shared seeds against the
    best by reward of n samples of the baseline drawn for it alone (shared seed i has its own group of
    n seeds), shown in queries of `images_per_side` as the main arm."""
    from ml.reward import score

    rt = ctx.rt
    n = p.best_of_n or 16
    groups = bon_seed_groups(p.base_seed, seeds, n)
    draw(
        ctx,
        job,
        base,
        prompts,
        [sd for group in groups for sd in group],
        p.sampler,
        prompt_set_id=p.prompt_set_id,
        wanted=0,
        progress_span=(0.8, 0.95),
        label="best-of-n samples",
    )
    model = rt.reward(reward)
    with rt.tx() as s:
        rows = s.execute(
            select(Image.id, Image.prompt_id, Image.seed, Image.content_hash, Image.storage_key).where(
                Image.job_id.in_(ctx.lineage), Image.generator_version_id == base.id
            )
        ).all()
    by_key = {(r.prompt_id, r.seed): r for r in rows}
    baseline = {(pid, sd): by_key[(pid, sd)].id for pid, _ in prompts for sd in seeds}
    best: dict[tuple[int, int], int] = {}
    for pid, text in prompts:
        cands = [[by_key[(pid, sd)] for sd in group if (pid, sd) in by_key] for group in groups]
        flat = [r for group in cands for r in group]
        vecs = image_vectors(rt, [(r.content_hash, r.storage_key) for r in flat])
        img = np.stack([vecs[r.content_hash] for r in flat])
        txt = np.repeat(text_vectors(rt, [text]), len(flat), axis=0)
        rewards = score(model, img, txt)
        for sd, i in zip(seeds, best_in_groups(rewards, [len(g) for g in cands]), strict=True):
            best[(pid, sd)] = flat[i].id
    per_side = min(p.images_per_side, len(seeds))
    with rt.tx() as s:
        return _pairs(s, evaluation_id, votes,
                      [q for pid, _ in prompts for q in queries_of(pid, seeds, per_side, baseline, best)])


def bon_seed_groups(base_seed: int, seeds: list[int], n: int) -> list[list[int]]:
    """The n best-of-n sample seeds of each shared seed, apart from every evaluation seed."""
    first = base_seed + BEST_OF_N_SEED_OFFSET
    return [list(range(first + i * n, first + (i + 1) * n)) for i in range(len(seeds))]


def best_in_groups(rewards: np.ndarray, sizes: list[int]) -> list[int]:
    """Index (into the flat array) of the highest reward of each consecutive group; the first on ties."""
    out, start = [], 0
    for size in sizes:
        if size == 0:
            raise JobFailed("a best-of-n group has no samples")
        out.append(start + int(np.argmax(rewards[start:start + size])))
        start += size
    return out
