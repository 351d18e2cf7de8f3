"""The pool an annotator works on, as the status bar shows it: wanted, done, left, and their own share.

Whole-pool counts (one aggregate over the set's images or pairs); the pages ask at most every
half minute, never per answer."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from app.annotation.schemas import PoolProgress, PoolWaiting
from app.db.base import utcnow
from app.db.enums import JobKind, PromptSetPurpose
from app.db.models import (
    Comparison,
    ComparisonAssignment,
    ComparisonVote,
    Image,
    Job,
    Prompt,
    PromptSet,
    Rating,
    RatingAssignment,
)


def pool(session: Session, user_id: int, kind: Literal["ratings", "votes"], *, prompt_set_id: int | None = None,
         evaluation_id: int | None = None) -> PoolProgress:
    if kind == "ratings":
        wanted_q = select(func.coalesce(func.sum(Image.ratings_wanted), 0)).where(Image.gold_label.is_(None))
        done_q = (select(func.count()).select_from(Rating).join(Image, Image.id == Rating.image_id)
                  .where(Rating.label != "skip", Image.gold_label.is_(None)))
        if prompt_set_id is not None:
            wanted_q = wanted_q.where(Image.prompt_set_id == prompt_set_id)
            done_q = done_q.where(Rating.prompt_set_id == prompt_set_id)
        mine_q = done_q.where(Rating.annotator_id == user_id)
    else:
        wanted_q = select(func.coalesce(func.sum(Comparison.votes_wanted), 0))
        done_q = select(func.count()).select_from(ComparisonVote).join(
            Comparison, Comparison.id == ComparisonVote.comparison_id)
        if evaluation_id is not None:
            wanted_q = wanted_q.where(Comparison.evaluation_id == evaluation_id)
            done_q = done_q.where(Comparison.evaluation_id == evaluation_id)
        mine_q = done_q.where(ComparisonVote.annotator_id == user_id)
    wanted, done, mine = (int(session.scalar(q) or 0) for q in (wanted_q, done_q, mine_q))
    return PoolProgress(kind=kind, prompt_set_id=prompt_set_id if kind == "ratings" else None,
                        evaluation_id=evaluation_id if kind == "votes" else None, wanted=wanted, done=done,
                        left=max(wanted - done, 0), mine=mine, my_share=mine / done if done else None)


def waiting(session: Session, user_id: int, kind: Literal["ratings", "votes"], *, prompt_set_id: int | None = None,
            evaluation_id: int | None = None) -> PoolWaiting:
    """What the caller is waiting for when `next` hands out nothing: images still being generated,
    items other annotators hold (and when the first lease runs out), or nothing at all. A few
    indexed counts; the pages ask only while they have nothing to show, with a growing pause."""
    now = utcnow()
    jobs_q = select(Job).where(Job.state.in_(("queued", "running")))
    item: Any
    A: Any
    gold: Any
    if kind == "ratings":
        item, A, fk = Image, RatingAssignment, RatingAssignment.image_id
        scope = [Image.prompt_set_id == prompt_set_id] if prompt_set_id is not None else [
            Image.prompt_set_id.in_(select(PromptSet.id).where(PromptSet.purpose == PromptSetPurpose.training.value))]
        open_filters = [Image.ratings_open > 0, Image.gold_label.is_(None), *scope]
        jobs_q = jobs_q.where(Job.kind == JobKind.generate.value)
        if prompt_set_id is not None:
            jobs_q = jobs_q.where(Job.prompt_set_id == prompt_set_id)
        else:
            jobs_q = jobs_q.where(Job.prompt_set_id.in_(
                select(PromptSet.id).where(PromptSet.purpose == PromptSetPurpose.training.value)))
        gold = Image.gold_label.is_(None)
    else:
        item, A, fk = Comparison, ComparisonAssignment, ComparisonAssignment.comparison_id
        scope = [Comparison.evaluation_id == evaluation_id] if evaluation_id is not None else []
        open_filters = [Comparison.votes_open > 0, Comparison.gold_alignment.is_(None),
                        Comparison.gold_fidelity.is_(None), *scope]
        jobs_q = jobs_q.where(Job.kind == JobKind.evaluate.value)
        gold = Comparison.gold_alignment.is_(None) & Comparison.gold_fidelity.is_(None)
    jobs = list(session.scalars(jobs_q))
    generating = sum(images_to_come(session, job) for job in jobs) if kind == "ratings" else 0
    # items the caller has not answered nor holds: what other annotators' leases keep from them
    mine = aliased(A)  # the outer query of `others` reads the same table
    seen = (select(mine.id).where(getattr(mine, fk.key) == item.id, mine.annotator_id == user_id,
                                  mine.state != "released").correlate(item).exists())
    answerable = session.scalar(select(func.count()).select_from(item).where(*open_filters, ~seen)) or 0
    others = (select(func.count(func.distinct(fk)), func.min(A.lease_expires_at))
              .join(item, item.id == fk)
              .where(A.state == "leased", A.lease_expires_at > now, A.annotator_id != user_id,
                     A.is_gold.is_(False), gold, ~seen, *scope))
    held, back_at = session.execute(others).one()
    return PoolWaiting(kind=kind, generating=generating, jobs=len(jobs), held_by_others=int(held or 0),
                       next_back_at=back_at, answerable=int(answerable))


def images_to_come(session: Session, job: Job) -> int:
    """A generation job's images not written yet: prompts x seeds it was asked for, less those it made."""
    params = job.params or {}
    try:
        per_prompt = int(params.get("images_per_prompt") or 0)
    except (TypeError, ValueError):
        return 0
    prompt_ids = params.get("prompt_ids")
    if prompt_ids:
        n_prompts = len(prompt_ids)
    else:
        n_prompts = session.scalar(select(func.count()).where(Prompt.prompt_set_id == job.prompt_set_id)) or 0
    made = session.scalar(select(func.count()).select_from(Image).where(Image.job_id == job.id)) or 0
    return max(0, n_prompts * per_prompt - made)
