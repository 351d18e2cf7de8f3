"""Per-annotator counts and gold accuracy (gold answers stay on the server)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from app.annotation.schemas import AnnotatorStats, GoldAccuracy
from app.db.models import Comparison, ComparisonVote, Image, Rating, User


def stats(session: Session, user_id: int, since: datetime) -> AnnotatorStats:
    def count(model: type, *where: object) -> int:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0  # type: ignore[arg-type]

    return AnnotatorStats(
        ratings_today=count(Rating, Rating.annotator_id == user_id, Rating.created_at >= since),
        ratings_total=count(Rating, Rating.annotator_id == user_id),
        votes_today=count(ComparisonVote, ComparisonVote.annotator_id == user_id, ComparisonVote.created_at >= since),
        votes_total=count(ComparisonVote, ComparisonVote.annotator_id == user_id),
        since=since,
    )


def gold_accuracy(session: Session) -> list[GoldAccuracy]:
    rating_rows = session.execute(
        select(Rating.annotator_id, func.count(), func.sum(case((Rating.label == Image.gold_label, 1), else_=0)))
        .join(Image, Image.id == Rating.image_id)
        .where(Image.gold_label.is_not(None), Rating.label != "skip")
        .group_by(Rating.annotator_id)
    ).all()
    # a pair's gold answer may cover one question or both; each covered question counts once
    correct_expr = (
        case((and_(Comparison.gold_alignment.is_not(None), ComparisonVote.alignment == Comparison.gold_alignment), 1),
             else_=0)
        + case((and_(Comparison.gold_fidelity.is_not(None), ComparisonVote.fidelity == Comparison.gold_fidelity), 1),
               else_=0)
    )
    asked_expr = (case((Comparison.gold_alignment.is_not(None), 1), else_=0)
                  + case((Comparison.gold_fidelity.is_not(None), 1), else_=0))
    vote_rows = session.execute(
        select(ComparisonVote.annotator_id, func.sum(asked_expr), func.sum(correct_expr))
        .join(Comparison, Comparison.id == ComparisonVote.comparison_id)
        .where(or_(Comparison.gold_alignment.is_not(None), Comparison.gold_fidelity.is_not(None)))
        .group_by(ComparisonVote.annotator_id)
    ).all()
    per: dict[int, dict[str, int]] = {}
    for uid, n, ok in rating_rows:
        per.setdefault(uid, {}).update(r_n=int(n), r_ok=int(ok or 0))
    for uid, n, ok in vote_rows:
        per.setdefault(uid, {}).update(c_n=int(n or 0), c_ok=int(ok or 0))
    users = {u.id: u for u in session.scalars(select(User).where(User.id.in_(per)))} if per else {}
    out = []
    for uid in sorted(per):
        d, u = per[uid], users[uid]
        r_n, r_ok, c_n, c_ok = d.get("r_n", 0), d.get("r_ok", 0), d.get("c_n", 0), d.get("c_ok", 0)
        out.append(GoldAccuracy(
            annotator_id=uid, username=u.username, pseudonym=u.pseudonym,
            rating_gold_answered=r_n, rating_gold_correct=r_ok, rating_gold_accuracy=r_ok / r_n if r_n else None,
            comparison_gold_answered=c_n, comparison_gold_correct=c_ok,
            comparison_gold_accuracy=c_ok / c_n if c_n else None,
        ))
    return out
