"""Good / bad / skip ratings: hand out images, store answers exactly once, undo."""

from __future__ import annotations

import random

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.annotation import leases
from app.annotation.leases import RATING
from app.annotation.schemas import RatingRead, RatingSubmit, RatingTask, RatingTaskBatch
from app.auth.identity import UserIdentity
from app.config import Settings
from app.db.base import utcnow
from app.db.enums import PromptSetPurpose
from app.db.models import Image, Prompt, PromptSet, Rating, RatingAssignment
from app.errors import Conflict, NotFound
from app.images.service import image_url
from app.prompts.grammar import highlights

MAX_PREFETCH = 5


def _tasks(session: Session, assignments: list[RatingAssignment]) -> list[RatingTask]:
    if not assignments:
        return []
    rows = {
        r.id: r
        for r in session.execute(
            select(Image.id, Image.prompt_set_id, Prompt.text, Prompt.category)
            .join(Prompt, Prompt.id == Image.prompt_id)
            .where(Image.id.in_([a.image_id for a in assignments]))
        )
    }
    out = []
    for a in assignments:
        r = rows[a.image_id]
        out.append(RatingTask(
            assignment_id=a.id, image_id=a.image_id, image_url=image_url(a.image_id), prompt=r.text,
            prompt_set_id=r.prompt_set_id, category=r.category, lease_expires_at=a.lease_expires_at,
            highlights=list(highlights(r.text)),
        ))
    return out


def _candidate_sets(session: Session, prompt_set_id: int | None) -> list[PromptSet]:
    if prompt_set_id is not None:
        ps = session.get(PromptSet, prompt_set_id)
        return [ps] if ps is not None else []
    return list(session.scalars(
        select(PromptSet).where(PromptSet.purpose == PromptSetPurpose.training.value).order_by(PromptSet.id)
    ))


def next_tasks(session: Session, settings: Settings, user: UserIdentity, *, prompt_set_id: int | None = None,
               prefetch: int = 1, sweep_interval: float = 1.0, rng: random.Random | None = None,
               draws: leases.Draws | None = None) -> list[RatingTask]:
    """The caller's live leases first (no hoarding), topped up with new ones to `prefetch`: from
    the first candidate set, then (when it ran dry for this annotator) the next, gold mixed in at
    each set's rate (leases.serve).

    `draws`: this call's draws, already made (by the hot path, which hands them on); otherwise
    drawn here from `rng`. A further set draws afresh."""
    draws = draws if draws is not None else leases.draw(RATING, prefetch, rng)
    now = utcnow()
    leases.sweep_expired(session, RATING, now, min_interval=sweep_interval)
    set_filter = [Image.prompt_set_id == prompt_set_id] if prompt_set_id is not None else []
    held = leases.held_leases(session, RATING, user.id, now, *set_filter)
    need = max(0, prefetch - len(held))
    new_ids: list[int] = []
    for ps in _candidate_sets(session, prompt_set_id) if need else []:
        got = leases.serve(session, RATING, user.id, need, draws, ps.gold_rate, now, ps.lease_seconds,
                           Image.prompt_set_id == ps.id)
        new_ids += got
        need -= len(got)
        if not need:
            break
        draws = leases.draw(RATING, need, rng)
    fresh = list(session.scalars(select(RatingAssignment).where(RatingAssignment.id.in_(new_ids)))) if new_ids else []
    fresh.sort(key=lambda a: new_ids.index(a.id))
    mine = leases.with_held_now(session, RATING, user.id, now, held + fresh, prefetch, *set_filter)
    return _tasks(session, mine)[:max(prefetch, 1)] if mine else []


def as_batch(tasks: list[RatingTask]) -> RatingTaskBatch:
    first, rest = tasks[0], tasks[1:]
    return RatingTaskBatch(**first.model_dump(), prefetched=rest)


def submit(session: Session, user: UserIdentity, body: RatingSubmit) -> tuple[RatingRead, bool]:
    """Store one answer per assignment. Returns (rating, created): an identical repeat gives the
    stored rating back with created=False; a different answer is a conflict."""
    now = utcnow()
    item, assignment = leases.lock_assignment(session, RATING, body.assignment_id, user.id)
    reason = body.skip_reason.strip() if body.label == "skip" and body.skip_reason else None
    if assignment.state == "submitted":
        stored = session.scalars(select(Rating).where(Rating.assignment_id == assignment.id)).one()
        if stored.label == body.label and (stored.skip_reason or None) == reason:
            return RatingRead.model_validate(stored), False
        raise Conflict(
            f"This image was already answered '{stored.label}'. Undo that answer first to change it.",
            code="already_answered",
        )
    leases.claim_answer(RATING, item, assignment, now, uses_slot=body.label != "skip")
    rating = Rating(assignment_id=assignment.id, image_id=item.id, prompt_set_id=item.prompt_set_id,
                    annotator_id=user.id, label=body.label, skip_reason=reason, duration_ms=body.duration_ms,
                    created_at=now)
    session.add(rating)
    session.flush()
    return RatingRead.model_validate(rating), True


def stored_answer(session: Session, user: UserIdentity, assignment_id: int) -> RatingRead:
    """The answer stored on the caller's assignment: what a page shows when another tab (or a page
    restored from the back/forward cache) answered first."""
    rating = session.scalars(select(Rating).where(Rating.assignment_id == assignment_id,
                                                  Rating.annotator_id == user.id)).first()
    if rating is None:
        raise NotFound(f"Assignment {assignment_id} has no answer of yours.", code="not_answered")
    return RatingRead.model_validate(rating)


def undo(session: Session, user: UserIdentity, assignment_id: int) -> RatingTask:
    now = utcnow()
    item, assignment = leases.lock_assignment(session, RATING, assignment_id, user.id)
    stored = session.scalars(select(Rating).where(Rating.assignment_id == assignment.id)).first()
    leases.unclaim_answer(RATING, item, assignment, now, used_slot=bool(stored and stored.label != "skip"))
    if stored is not None:
        session.delete(stored)
    session.flush()
    return _tasks(session, [assignment])[0]
