"""Annotator speed and quality: labels, median time, skips, gold accuracy, agreement and flags."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.admin.agreement import Alpha, PairwiseAgreement, krippendorff_alpha_nominal, pairwise_agreement
from app.admin.timeseries import median
from app.annotation.quality import gold_accuracy
from app.annotation.schemas import GoldAccuracy
from app.db.models import ComparisonVote, Image, Rating, User

# A rater whose median time per item is below this many seconds is flagged as suspiciously fast...
FAST_MEDIAN_SECONDS = 1.0
# ...once at least this many of their answers carry a time.
FAST_MIN_TIMED = 5
# Gold accuracy below this, over at least GOLD_MIN_ANSWERS gold answers, flags a rater.
GOLD_MIN_ACCURACY = 0.7
GOLD_MIN_ANSWERS = 5
# Pairwise agreement this far below the median of the other raters (on enough shared items) flags a rater.
AGREEMENT_GAP = 0.15
AGREEMENT_MIN_ITEMS = 5


@dataclass
class AnnotatorRow:
    user: User
    labels_done: int = 0  # good + bad
    skips: int = 0
    votes: int = 0
    timed: int = 0
    median_seconds: float | None = None
    gold: GoldAccuracy | None = None
    agreement: PairwiseAgreement | None = None
    flags: list[str] = field(default_factory=list)

    @property
    def answers(self) -> int:
        return self.labels_done + self.skips

    @property
    def skip_rate(self) -> float | None:
        return self.skips / self.answers if self.answers else None


@dataclass
class AnnotatorReport:
    rows: list[AnnotatorRow]
    alpha: Alpha
    median_agreement: float | None


def _medians(session: Session) -> dict[int, tuple[int, float | None]]:
    """annotator id -> (timed answers, median seconds) over all their ratings, skips included."""
    timed = Rating.duration_ms.is_not(None)
    if session.get_bind().dialect.name == "postgresql":
        rows = session.execute(
            select(
                Rating.annotator_id, func.count(), func.percentile_cont(0.5).within_group(Rating.duration_ms)
            )
            .where(timed)
            .group_by(Rating.annotator_id)
        )
        return {uid: (n, float(m) / 1000 if m is not None else None) for uid, n, m in rows}
    per: dict[int, list[float]] = defaultdict(list)  # SQLite (the demo) has no percentile function
    for uid, ms in session.execute(select(Rating.annotator_id, Rating.duration_ms).where(timed)):
        per[uid].append((ms or 0) / 1000)
    return {uid: (len(v), median(v)) for uid, v in per.items()}


def shared_labels(session: Session) -> dict[int, dict[int, str]]:
    """image id -> {annotator id: good|bad} for non-gold images with at least two good/bad labels.

    Gold images are left out: they are shown to many raters on purpose and already scored
    against their known answer, so counting them here would measure gold accuracy twice.
    """
    usable = Rating.label != "skip"
    multi = (
        select(Rating.image_id)
        .join(Image, Image.id == Rating.image_id)
        .where(usable, Image.gold_label.is_(None))
        .group_by(Rating.image_id)
        .having(func.count() >= 2)
    )
    units: dict[int, dict[int, str]] = defaultdict(dict)
    for image_id, uid, label in session.execute(
        select(Rating.image_id, Rating.annotator_id, Rating.label).where(usable, Rating.image_id.in_(multi))
    ):
        units[image_id][uid] = label
    return units


def annotator_report(session: Session) -> AnnotatorReport:
    rows = {u.id: AnnotatorRow(u) for u in session.scalars(select(User).order_by(User.username))}
    for uid, done, skips in session.execute(
        select(
            Rating.annotator_id,
            func.sum(case((Rating.label != "skip", 1), else_=0)),
            func.sum(case((Rating.label == "skip", 1), else_=0)),
        ).group_by(Rating.annotator_id)
    ):
        rows[uid].labels_done, rows[uid].skips = int(done or 0), int(skips or 0)
    for uid, n in session.execute(
        select(ComparisonVote.annotator_id, func.count()).group_by(ComparisonVote.annotator_id)
    ):
        rows[uid].votes = n
    for uid, (n, m) in _medians(session).items():
        rows[uid].timed, rows[uid].median_seconds = n, m
    for g in gold_accuracy(session):
        rows[g.annotator_id].gold = g

    units = shared_labels(session)
    alpha = krippendorff_alpha_nominal(list(u.values()) for u in units.values())
    for uid, pa in pairwise_agreement(units).items():
        rows[uid].agreement = pa
    rates = {
        uid: r.agreement.rate
        for uid, r in rows.items()
        if r.agreement and r.agreement.rate is not None and r.agreement.items >= AGREEMENT_MIN_ITEMS
    }
    for uid, row in rows.items():
        others = [v for k, v in rates.items() if k != uid]
        _flag(row, rates.get(uid), median(others) if len(others) >= 2 else None)
    return AnnotatorReport(list(rows.values()), alpha, median(list(rates.values())))


def _flag(row: AnnotatorRow, rate: float | None, others_median: float | None) -> None:
    if (
        row.timed >= FAST_MIN_TIMED
        and row.median_seconds is not None
        and row.median_seconds < FAST_MEDIAN_SECONDS
    ):
        row.flags.append(f"fast: median {row.median_seconds:.2f} s < {FAST_MEDIAN_SECONDS:g} s")
    g = row.gold
    if g:
        for what, n, acc in (
            ("gold labels", g.rating_gold_answered, g.rating_gold_accuracy),
            ("gold pairs", g.comparison_gold_answered, g.comparison_gold_accuracy),
        ):
            if acc is not None and n >= GOLD_MIN_ANSWERS and acc < GOLD_MIN_ACCURACY:
                row.flags.append(f"inconsistent: {what} {acc:.0%} of {n} < {GOLD_MIN_ACCURACY:.0%}")
    if rate is not None and others_median is not None and rate < others_median - AGREEMENT_GAP:
        row.flags.append(f"inconsistent: agreement {rate:.0%} vs others' median {others_median:.0%}")
