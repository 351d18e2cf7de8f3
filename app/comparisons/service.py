"""Blind pairwise comparisons: N votes from N distinct annotators per pair, sides random per lease."""

from __future__ import annotations

import random

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.annotation import leases
from app.annotation.leases import COMPARISON
from app.auth.identity import UserIdentity
from app.comparisons.schemas import (
    ComparisonCreate,
    ComparisonGoldUpdate,
    ComparisonRead,
    ComparisonTask,
    ComparisonTaskBatch,
    PairImage,
    VoteRead,
    VoteSubmit,
)
from app.config import Settings
from app.db.base import utcnow
from app.db.models import (
    Comparison,
    ComparisonAssignment,
    ComparisonImage,
    ComparisonVote,
    Evaluation,
    Image,
    Prompt,
)
from app.errors import Conflict, Invalid, NotFound

TO_MODEL = {True: {"left": "a", "right": "b", "tie": "tie"}, False: {"left": "b", "right": "a", "tie": "tie"}}
TO_SCREEN = {flag: {v: k for k, v in m.items()} for flag, m in TO_MODEL.items()}


def pair_image_url(assignment_id: int, side: str, index: int = 0) -> str:
    """A pair's image by assignment, side and place on that side: nothing in it tells which model made
    the image (image ids would: a candidate's images are generated after the baseline's, so they have
    higher ids)."""
    base = f"/api/v1/comparison-tasks/{assignment_id}/images/{side}"
    return base if index == 0 else f"{base}/{index}"


def side_images(session: Session, comparisons: list[Comparison]) -> dict[int, dict[str, list[int]]]:
    """{comparison id: {"a": image ids, "b": image ids}} in order; a comparison without listed images
    (one pair by hand, or made before the 0007 migration) has its image_a / image_b alone."""
    out: dict[int, dict[str, list[int]]] = {c.id: {"a": [], "b": []} for c in comparisons}
    if comparisons:
        rows = session.execute(
            select(ComparisonImage.comparison_id, ComparisonImage.side, ComparisonImage.image_id)
            .where(ComparisonImage.comparison_id.in_(list(out)))
            .order_by(ComparisonImage.comparison_id, ComparisonImage.side, ComparisonImage.position)
        )
        for r in rows:
            out[r.comparison_id][r.side].append(r.image_id)
    for c in comparisons:
        out[c.id]["a"] = out[c.id]["a"] or [c.image_a_id]
        out[c.id]["b"] = out[c.id]["b"] or [c.image_b_id]
    return out


def pair_image(session: Session, user: UserIdentity, assignment_id: int, side: str, index: int = 0) -> Image:
    """The image shown at `index` on `side` of the caller's own comparison assignment (404 for anyone
    else's)."""
    a = session.get(ComparisonAssignment, assignment_id)
    if a is None or a.annotator_id != user.id or side not in ("left", "right"):
        raise NotFound(f"Comparison task {assignment_id} has no {side} image for you.")
    c = session.get(Comparison, a.comparison_id)
    if c is None:
        raise NotFound(f"Comparison task {assignment_id} no longer exists.")
    ids = side_images(session, [c])[c.id]["a" if (side == "left") == a.left_is_a else "b"]
    image = session.get(Image, ids[index]) if 0 <= index < len(ids) else None
    if image is None:
        raise NotFound(f"Comparison task {assignment_id} has no {side} image {index}.")
    return image


def _tasks(session: Session, assignments: list[ComparisonAssignment]) -> list[ComparisonTask]:
    if not assignments:
        return []
    rows = {
        c.id: (c, text)
        for c, text in session.execute(
            select(Comparison, Prompt.text)
            .join(Prompt, Prompt.id == Comparison.prompt_id)
            .where(Comparison.id.in_([a.comparison_id for a in assignments]))
        )
    }
    sides = side_images(session, [c for c, _ in rows.values()])

    def side(a: ComparisonAssignment, screen: str) -> PairImage:
        n = len(sides[a.comparison_id]["a" if (screen == "left") == a.left_is_a else "b"])
        return PairImage(image_url=pair_image_url(a.id, screen),
                         image_urls=[pair_image_url(a.id, screen, i) for i in range(n)])

    return [
        ComparisonTask(assignment_id=a.id, prompt=rows[a.comparison_id][1], left=side(a, "left"),
                       right=side(a, "right"), lease_expires_at=a.lease_expires_at)
        for a in assignments
    ]


def next_tasks(
    session: Session,
    settings: Settings,
    user: UserIdentity,
    *,
    evaluation_id: int | None = None,
    prefetch: int = 1,
    sweep_interval: float = 1.0,
    rng: random.Random | None = None,
    draws: leases.Draws | None = None,
) -> list[ComparisonTask]:
    """The caller's live leases first, topped up with new ones to `prefetch`, gold mixed in at
    T2IF_COMPARISON_GOLD_RATE (leases.serve; hotpath.next_pair on Postgres). `draws`: this call's
    draws (gold, sides), already made (by the hot path, which hands them on); otherwise drawn here
    from `rng`."""
    draws = draws if draws is not None else leases.draw(COMPARISON, prefetch, rng)
    now = utcnow()
    leases.sweep_expired(session, COMPARISON, now, min_interval=sweep_interval)
    filters = [Comparison.evaluation_id == evaluation_id] if evaluation_id is not None else []
    held = leases.held_leases(session, COMPARISON, user.id, now, *filters)
    need = max(0, prefetch - len(held))
    new_ids = (leases.serve(session, COMPARISON, user.id, need, draws, settings.comparison_gold_rate, now,
                            settings.lease_seconds, *filters) if need else [])
    fresh = (
        list(session.scalars(select(ComparisonAssignment).where(ComparisonAssignment.id.in_(new_ids))))
        if new_ids
        else []
    )
    fresh.sort(key=lambda a: new_ids.index(a.id))
    mine = leases.with_held_now(session, COMPARISON, user.id, now, held + fresh, prefetch, *filters)
    return _tasks(session, mine)[: max(prefetch, 1)]


def as_batch(tasks: list[ComparisonTask]) -> ComparisonTaskBatch:
    return ComparisonTaskBatch(**tasks[0].model_dump(), prefetched=tasks[1:])


def _vote_read(vote: ComparisonVote, left_is_a: bool) -> VoteRead:
    screen = TO_SCREEN[left_is_a]
    return VoteRead(
        assignment_id=vote.assignment_id,
        alignment=screen[vote.alignment],  # type: ignore[arg-type]
        fidelity=screen[vote.fidelity],
        duration_ms=vote.duration_ms,  # type: ignore[arg-type]
        created_at=vote.created_at,
    )


def submit_vote(session: Session, user: UserIdentity, body: VoteSubmit) -> tuple[VoteRead, bool]:
    now = utcnow()
    item, assignment = leases.lock_assignment(session, COMPARISON, body.assignment_id, user.id)
    to_model = TO_MODEL[assignment.left_is_a]
    alignment, fidelity = to_model[body.alignment], to_model[body.fidelity]
    if assignment.state == "submitted":
        stored = session.scalars(select(ComparisonVote).where(ComparisonVote.assignment_id == assignment.id)).one()
        if (stored.alignment, stored.fidelity) == (alignment, fidelity):
            return _vote_read(stored, assignment.left_is_a), False
        raise Conflict("This pair was already answered differently.", code="already_answered")
    leases.claim_answer(COMPARISON, item, assignment, now, uses_slot=True)
    vote = ComparisonVote(
        assignment_id=assignment.id,
        comparison_id=item.id,
        annotator_id=user.id,
        alignment=alignment,
        fidelity=fidelity,
        duration_ms=body.duration_ms,
        created_at=now,
    )
    session.add(vote)
    session.flush()
    return _vote_read(vote, assignment.left_is_a), True


def undo_vote(session: Session, user: UserIdentity, assignment_id: int) -> ComparisonTask:
    """Withdraw the caller's vote while their lease on the pair still runs: the vote goes and the
    lease comes back to the same rater with the same sides. A vote holds its slot and so does the
    lease it turns back into, so the pair still ends with exactly N votes from N distinct raters."""
    now = utcnow()
    item, assignment = leases.lock_assignment(session, COMPARISON, assignment_id, user.id)
    stored = session.scalars(select(ComparisonVote).where(ComparisonVote.assignment_id == assignment.id)).first()
    leases.unclaim_answer(COMPARISON, item, assignment, now, used_slot=True)
    if stored is not None:
        session.delete(stored)
    session.flush()
    return _tasks(session, [assignment])[0]


def create_comparison(session: Session, settings: Settings, body: ComparisonCreate) -> ComparisonRead:
    a, b = session.get(Image, body.image_a_id), session.get(Image, body.image_b_id)
    if a is None or b is None:
        missing = body.image_a_id if a is None else body.image_b_id
        raise Invalid(f"image {missing} does not exist")
    if a.prompt_id != b.prompt_id:
        raise Invalid("image_a_id and image_b_id must be images of the same prompt")
    wanted = body.votes_wanted
    if body.evaluation_id is not None:
        ev = session.get(Evaluation, body.evaluation_id)
        if ev is None:
            raise Invalid(f"evaluation_id: evaluation {body.evaluation_id} does not exist")
        wanted = wanted or ev.votes_per_comparison
    wanted = wanted or settings.votes_per_comparison
    existing = session.scalars(
        select(Comparison).where(
            Comparison.evaluation_id.is_(None)
            if body.evaluation_id is None
            else Comparison.evaluation_id == body.evaluation_id,
            Comparison.image_a_id == a.id,
            Comparison.image_b_id == b.id,
        )
    ).first()
    if existing is not None:
        raise Conflict(f"This pair already exists as comparison {existing.id}.", code="duplicate_pair")
    c = Comparison(
        evaluation_id=body.evaluation_id,
        prompt_id=a.prompt_id,
        image_a_id=a.id,
        image_b_id=b.id,
        votes_wanted=wanted,
        votes_open=wanted,
        gold_alignment=body.gold_alignment,
        gold_fidelity=body.gold_fidelity,
    )
    session.add(c)
    session.flush()
    return ComparisonRead.model_validate(c)


def set_gold(session: Session, comparison_id: int, body: ComparisonGoldUpdate) -> ComparisonRead:
    c = session.scalars(select(Comparison).where(Comparison.id == comparison_id).with_for_update()).first()
    if c is None:
        raise NotFound(f"Comparison {comparison_id} does not exist.")
    c.gold_alignment, c.gold_fidelity = body.gold_alignment, body.gold_fidelity
    gold = c.gold_alignment is not None or c.gold_fidelity is not None
    votes = session.scalar(select(func.count()).where(ComparisonVote.comparison_id == c.id)) or 0
    leases.recount_open(session, COMPARISON, c, answered=votes, is_gold=gold)
    session.flush()
    return ComparisonRead.model_validate(c)
