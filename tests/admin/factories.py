"""ORM rows for dashboard tests: exact, hand-countable data without going through the hot paths."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import (
    Comparison,
    ComparisonAssignment,
    ComparisonVote,
    Evaluation,
    Image,
    Prompt,
    PromptSet,
    Rating,
    RatingAssignment,
)

_n = iter(range(1, 1_000_000))


def prompt_set(db: Session, name: str = "set", k: int = 1, **kw) -> PromptSet:
    ps = PromptSet(name=name, labels_per_image=k, **kw)
    db.add(ps)
    db.flush()
    return ps


def prompt(db: Session, ps: PromptSet, text: str, category: str, split: str = "seen") -> Prompt:
    p = Prompt(prompt_set_id=ps.id, text=text, category=category, split=split)
    db.add(p)
    db.flush()
    return p


def image(
    db: Session, p: Prompt, *, wanted: int = 1, gold: str | None = None, storage_key: str | None = None
) -> Image:
    i = next(_n)
    im = Image(
        prompt_id=p.id,
        prompt_set_id=p.prompt_set_id,
        source="uploaded",
        storage_key=storage_key or f"x/{i}.png",
        content_hash=hashlib.sha256(str(i).encode()).hexdigest(),
        mime_type="image/png",
        width=16,
        height=16,
        byte_size=100,
        gold_label=gold,
        ratings_wanted=0 if gold else wanted,
        ratings_open=0,
    )
    db.add(im)
    db.flush()
    return im


def rating(
    db: Session,
    im: Image,
    user_id: int,
    label: str,
    *,
    duration_ms: int | None = 2000,
    at: datetime | None = None,
) -> Rating:
    at = at or utcnow()
    a = RatingAssignment(
        image_id=im.id,
        annotator_id=user_id,
        state="submitted",
        is_gold=im.gold_label is not None,
        leased_at=at - timedelta(seconds=5),
        lease_expires_at=at + timedelta(minutes=10),
        submitted_at=at,
    )
    db.add(a)
    db.flush()
    r = Rating(
        assignment_id=a.id,
        image_id=im.id,
        prompt_set_id=im.prompt_set_id,
        annotator_id=user_id,
        label=label,
        duration_ms=duration_ms,
        created_at=at,
    )
    db.add(r)
    db.flush()
    return r


def evaluation(db: Session, ps: PromptSet, name: str = "eval", votes: int = 3, **kw) -> Evaluation:
    ev = Evaluation(name=name, prompt_set_id=ps.id, votes_per_comparison=votes, **kw)
    db.add(ev)
    db.flush()
    return ev


def comparison(db: Session, ev: Evaluation, p: Prompt, a: Image, b: Image) -> Comparison:
    c = Comparison(
        evaluation_id=ev.id,
        prompt_id=p.id,
        image_a_id=a.id,
        image_b_id=b.id,
        votes_wanted=ev.votes_per_comparison,
        votes_open=0,
    )
    db.add(c)
    db.flush()
    return c


def vote(
    db: Session,
    c: Comparison,
    user_id: int,
    alignment: str,
    fidelity: str,
    *,
    left_is_a: bool = True,
    duration_ms: int = 3000,
) -> ComparisonVote:
    now = utcnow()
    a = ComparisonAssignment(
        comparison_id=c.id,
        annotator_id=user_id,
        left_is_a=left_is_a,
        state="submitted",
        leased_at=now,
        lease_expires_at=now + timedelta(minutes=10),
        submitted_at=now,
    )
    db.add(a)
    db.flush()
    v = ComparisonVote(
        assignment_id=a.id,
        comparison_id=c.id,
        annotator_id=user_id,
        alignment=alignment,
        fidelity=fidelity,
        duration_ms=duration_ms,
    )
    db.add(v)
    db.flush()
    return v
