"""train_reward: a recorded snapshot of usable labels -> cached embeddings -> reward model ->
metrics -> a new reward version with lineage -> every image of the prompt set scored (and, with
`label_order`, ranked for labelling)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
from sqlalchemy import func, select, update

from app.db.models import Image, Job, ModelVersion, Prompt, PromptSet, Rating, RewardScore
from app.db.session import upsert_insert
from app.jobs import loop
from app.jobs import service as jobs
from app.jobs.schemas import LABEL_ORDER_MEANING, TrainRewardParams
from workers.artifacts import publish, work_dir
from workers.handlers.comparison_votes import max_vote_id, voted_pairs
from workers.handlers.embeddings import image_vectors, text_vectors
from workers.lifecycle import JobContext, JobFailed
from workers.version import code_version


def run(ctx: JobContext, job: Job) -> dict[str, Any]:
    from ml.reward import PairRow, RewardConfig, RewardRow, save_reward, train_reward

    rt = ctx.rt
    p = TrainRewardParams.model_validate(job.params)
    with rt.tx() as s:
        ps = s.get(PromptSet, p.prompt_set_id)
        if ps is None:
            raise JobFailed("the prompt set no longer exists")
        snap = s.scalar(select(func.max(Rating.id)).where(Rating.prompt_set_id == ps.id)) or 0
        rows = s.execute(
            select(Rating.label, Image.content_hash, Image.storage_key, Prompt.text, Rating.annotator_id,
                   Image.gold_label)
            .join(Image, Image.id == Rating.image_id).join(Prompt, Prompt.id == Image.prompt_id)
            .where(Rating.prompt_set_id == ps.id, Rating.id <= snap)
        ).all()
        vote_snap = max_vote_id(s, ps.id) if p.reward.pairs else 0
        pairs = voted_pairs(s, ps.id, vote_snap) if p.reward.pairs else []
        previous = jobs.latest_reward(s, ps.id)
        previous_id = previous.id if previous else None
        vocabulary = p.reward.vocabulary or (ps.source or {}).get("template", {}).get("vocabulary", "paper")
    counts = {k: sum(1 for r in rows if r.label == k) for k in ("good", "bad", "skip")}
    usable = counts["good"] + counts["bad"]
    snapshot = {"prompt_set_id": p.prompt_set_id, "max_rating_id": snap, "labels": usable, **counts}
    ctx.log(f"label snapshot: up to rating {snap}: {counts['good']} good, {counts['bad']} bad, "
            f"{counts['skip']} skipped (kept, not trained on)")
    if usable < p.min_labels:
        raise JobFailed(f"only {usable} usable labels (good/bad); at least {p.min_labels} are needed")
    if p.reward.pairs:
        if not pairs:
            raise JobFailed(f"reward.pairs: prompt set {ps.id} has no comparison votes to learn from; compare "
                            "images of its prompts first or train without pairs")
        snapshot.update({"max_vote_id": vote_snap, "pairs": len(pairs), "pair_votes": sum(q.votes for q in pairs)})
        ctx.log(f"pairs: {len(pairs)} compared image pairs with {snapshot['pair_votes']} alignment votes "
                f"(up to vote {vote_snap}), Bradley-Terry weight {p.reward.lambda_pair}")

    ctx.progress(0.05, "embedding images", force=True)
    vectors = image_vectors(rt, [(r.content_hash, r.storage_key) for r in rows if r.label != "skip"]
                            + [(im.content_hash, im.storage_key) for q in pairs for im in (q.a, q.b)])
    config = RewardConfig(lambda_pc=p.reward.lambda_pc, temperature=p.reward.temperature, n_prompts=p.reward.n_prompts,
                          max_epochs=p.reward.max_epochs, min_steps=p.reward.min_steps, patience=p.reward.patience,
                          val_fraction=p.reward.val_fraction, hold_out_unseen=p.reward.hold_out_unseen,
                          lr=p.reward.lr, vocabulary=vocabulary, lambda_pair=p.reward.lambda_pair,
                          seed=p.reward.seed)
    train_rows = [RewardRow(r.content_hash, r.text, r.label) for r in rows]
    raters: dict[str, Any] | None = None
    if p.reward.rater_weighting:
        train_rows, raters = rater_weighted_rows(rows)
        ctx.log(f"rater weighting: {raters['images']} images from {raters['labels']} labels of "
                f"{len(raters['annotators'])} annotators; the posterior turned {raters['changed']} "
                f"majority verdicts ({raters['gold']} gold images anchor it)")
    ctx.progress(0.2, "training", force=True)
    try:
        result = train_reward(
            config, train_rows, vectors,
            lambda texts: text_vectors(rt, texts),
            progress=lambda done, total: ctx.progress(0.2 + 0.5 * done / max(total, 1), f"epoch {done}/{total}"),
            pairs=[PairRow(q.a.content_hash, q.b.content_hash, q.prompt, q.share_a, q.votes) for q in pairs] or None,
        )
    except ValueError as exc:  # e.g. too few prompts to hold some out for validation
        raise JobFailed(f"reward training refused the data: {exc}") from exc
    if ctx.should_cancel():
        from ml.generation import Cancelled

        raise Cancelled(0, 0)

    key = f"artifacts/reward/job-{job.id}"
    save_reward(result.model, work_dir(rt, key))
    url = publish(rt, work_dir(rt, key), key)
    metrics = {**result.metrics, "history": result.history, "best_epoch": result.best_epoch,
               "n_train": result.n_train, "n_val": result.n_val, "n_val_unseen": result.n_val_unseen,
               **({"n_pairs_train": result.n_pairs_train, "n_pairs_val": result.n_pairs_val} if pairs else {}),
               "seconds": round(result.seconds, 3), **({"raters": raters} if raters else {})}
    with rt.tx() as s:
        version = s.scalar(select(ModelVersion).where(ModelVersion.job_id == job.id))
        if version is None:  # a re-run after a crash reuses the version its first run made
            version = ModelVersion(kind="reward", name=f"reward {ps.name} #{job.id}", mode="mlp", job_id=job.id,
                                   parent_id=previous_id, prompt_set_id=p.prompt_set_id, artifact_url=url,
                                   hyperparams={**asdict(config), "clip_model": rt.settings.clip_model},
                                   label_snapshot=snapshot, code_version=code_version(), metrics=_jsonable(metrics))
            s.add(version)
            s.flush()
        version_id = version.id
    scored = score_prompt_set(ctx, version_id, p.prompt_set_id, label_order=p.label_order)
    if p.label_order != "keep":
        ctx.log(f"label order: {p.label_order} ({LABEL_ORDER_MEANING[p.label_order]})")
    with rt.tx() as s:
        this_job = s.get(Job, job.id)
        if this_job is None:
            raise JobFailed(f"job {job.id} no longer exists")
        next_job = loop.chain_after(s, rt.settings, this_job, s.get(ModelVersion, version_id))
    return {"reward_version_id": version_id, "label_snapshot": snapshot, "images_scored": scored,
            "metrics": _jsonable(result.metrics), "next_job_id": next_job}


def rater_weighted_rows(rows: Sequence[Any]) -> tuple[list[Any], dict[str, Any]]:
    """One row per image whose target is the Dawid-Skene posterior P(good) over all its labels (gold
    images clamped to their gold label), and the estimate of every annotator's reliability."""
    from ml.reliability import dawid_skene
    from ml.reward import RewardRow

    used = [r for r in rows if r.label != "skip"]
    if not used:
        raise JobFailed("no good/bad labels to estimate rater reliability from")
    gold = {r.content_hash: r.gold_label == "good" for r in used if r.gold_label in ("good", "bad")}
    rel = dawid_skene([(r.content_hash, r.annotator_id, r.label == "good") for r in used], gold=gold)
    text = {r.content_hash: r.text for r in used}
    out = [RewardRow(h, text[h], "good" if q > 0.5 else "bad", q) for h, q in rel.posterior.items()]
    changed = sum(1 for h, q in rel.posterior.items() if (q > 0.5) != (rel.majority[h] > 0.5) and h not in gold)
    return out, {
        "method": "dawid-skene",
        "labels": len(used),
        "images": len(out),
        "gold": len(gold),
        "changed": changed,
        "prior_good": rel.prior_good,
        "em_iterations": rel.iterations,
        "annotators": {
            str(uid): {"sensitivity": e.sensitivity, "specificity": e.specificity, "labels": e.n}
            for uid, e in rel.raters.items()
        },
    }


def certainty(scores: np.ndarray) -> np.ndarray:
    """How sure a reward model is of each image, in permille (Image.certainty): 2·|score − ½|."""
    return np.rint(np.abs(np.clip(scores, 0.0, 1.0) - 0.5) * 2000).astype(int)


def score_prompt_set(ctx: JobContext, version_id: int, prompt_set_id: int, chunk: int = 2048,
                     label_order: str = "keep") -> int:
    """Score every image of the set with the new reward model (one row per image and version);
    with `label_order` 'uncertain' or 'arrival', also set each image's place in the labelling order
    (Image.certainty; the lease order reads it). Chunks go in id order, each its own transaction, so
    annotators wait on no more than one chunk's row locks, taken in the order every other path
    takes several items' locks."""
    from ml.reward import score

    rt = ctx.rt
    with rt.tx() as s:
        version = s.get(ModelVersion, version_id)
        if version is None:
            raise JobFailed(f"reward version {version_id} no longer exists")
        s.expunge(version)
        images = s.execute(
            select(Image.id, Image.content_hash, Image.storage_key, Prompt.text)
            .join(Prompt, Prompt.id == Image.prompt_id).where(Image.prompt_set_id == prompt_set_id)
            .order_by(Image.id)
        ).all()
    model = rt.reward(version)
    done = 0
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk]
        vecs = image_vectors(rt, [(r.content_hash, r.storage_key) for r in part])
        img = np.stack([vecs[r.content_hash] for r in part])
        txt = text_vectors(rt, [r.text for r in part])
        scores = score(model, img, txt)
        with rt.tx() as s:
            s.execute(upsert_insert(s)(RewardScore).values([
                {"image_id": r.id, "reward_version_id": version_id, "score": float(np.clip(v, 0.0, 1.0))}
                for r, v in zip(part, scores, strict=True)
            ]).on_conflict_do_nothing())
            if label_order != "keep":
                ranks = certainty(scores) if label_order == "uncertain" else np.zeros(len(part), int)
                s.execute(update(Image), [{"id": r.id, "certainty": int(c)}  # ORM bulk update by primary key
                                          for r, c in zip(part, ranks, strict=True)])
        done += len(part)
        ctx.progress(0.75 + 0.25 * done / len(images), f"scored {done}/{len(images)} images")
    return done


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return None if f != f else f
    if isinstance(value, np.integer):
        return int(value)
    return value
