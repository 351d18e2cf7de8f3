"""The pool an annotator works on, as the status bar shows it: wanted, done, left, and their own share.

Whole-pool counts (one aggregate over the set's images or pairs); the pages ask at most every
half minute, never per answer."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.annotation.schemas import PoolProgress
from app.db.models import Comparison, ComparisonVote, Image, Rating


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
