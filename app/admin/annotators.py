"""Annotator speed and quality: labels, median time, skips, gold accuracy, agreement and flags."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.admin.agreement import Alpha, PairwiseAgreement, alpha_from_unit_counts
from app.admin.timeseries import median
from app.annotation.quality import gold_accuracy
from app.annotation.schemas import GoldAccuracy
from app.auth import service as auth
from app.db.models import ComparisonVote, Image, ModelVersion, Rating, User

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
# A rater whose estimated sensitivity + specificity - 1 (0: a coin, 1: perfect, < 0: answers against the
# truth) is below this, over at least RELIABILITY_MIN_LABELS labels, is flagged.
RELIABILITY_MIN = 0.3
RELIABILITY_MIN_LABELS = 20


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
    locked_addresses: int = 0  # client addresses refused log-in to this account now
    # the newest rater-weighted reward training's estimate (Dawid-Skene): sensitivity, specificity,
    # labels, and the reward version it came from
    reliability: dict[str, Any] | None = None

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


def _unit_counts(session: Session) -> Any:
    """Per non-gold image with at least two good/bad labels: its good and bad counts (a subquery).

    Gold images are left out: they are shown to many raters on purpose and already scored
    against their known answer, so counting them here would measure gold accuracy twice.
    """
    return (
        select(
            Rating.image_id.label("image_id"),
            func.sum(case((Rating.label == "good", 1), else_=0)).label("good"),
            func.sum(case((Rating.label == "bad", 1), else_=0)).label("bad"),
        )
        .join(Image, Image.id == Rating.image_id)
        .where(Rating.label != "skip", Image.gold_label.is_(None))
        .group_by(Rating.image_id)
        .having(func.count() >= 2)
        .subquery()
    )


def agreement(session: Session) -> tuple[Alpha, dict[int, PairwiseAgreement]]:
    """Krippendorff's alpha over all shared images, and each annotator's pairwise agreement.

    On an image with g good and b bad labels, a rater who said good agrees with g-1 of the
    g+b-1 co-raters (likewise for bad); summing in SQL keeps this to one row per annotator.
    """
    units = _unit_counts(session)
    alpha = alpha_from_unit_counts(
        ({"good": int(g), "bad": int(b)}, n)
        for g, b, n in session.execute(
            select(units.c.good, units.c.bad, func.count()).group_by(units.c.good, units.c.bad)
        )
    )
    same = case((Rating.label == "good", units.c.good), else_=units.c.bad) - 1
    rows = session.execute(
        select(Rating.annotator_id, func.sum(same), func.sum(units.c.good + units.c.bad - 1), func.count())
        .join(units, units.c.image_id == Rating.image_id)
        .where(Rating.label != "skip")
        .group_by(Rating.annotator_id)
    )
    return alpha, {uid: PairwiseAgreement(int(a), int(p), int(n)) for uid, a, p, n in rows}


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
    for uid, n in auth.locked_addresses(session).items():
        rows[uid].locked_addresses = n

    for uid, estimate in reliability(session).items():
        if uid in rows:
            rows[uid].reliability = estimate
    alpha, pairwise = agreement(session)
    for uid, pa in pairwise.items():
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


def reliability(session: Session, versions: int = 50) -> dict[int, dict[str, Any]]:
    """Each annotator's newest reliability estimate, from the reward versions trained with rater
    weighting (their metrics keep the Dawid-Skene estimate of every annotator whose labels they used)."""
    out: dict[int, dict[str, Any]] = {}
    recent = session.execute(  # only the estimates: a version's metrics also hold its training history
        select(ModelVersion.id, ModelVersion.name, ModelVersion.metrics["raters"]["annotators"])
        .where(ModelVersion.kind == "reward")
        .order_by(ModelVersion.id.desc())
        .limit(versions)
    )
    for vid, name, annotators in recent:
        for uid, est in (annotators if isinstance(annotators, dict) else {}).items():
            if not str(uid).isdigit() or int(uid) in out:
                continue
            try:
                sens, spec = float(est["sensitivity"]), float(est["specificity"])
            except (KeyError, TypeError, ValueError):
                continue
            out[int(uid)] = {"sensitivity": sens, "specificity": spec, "informativeness": sens + spec - 1,
                             "labels": est.get("labels"), "version_id": vid, "version": name}
    return out


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
    rel = row.reliability
    if rel and (rel.get("labels") or 0) >= RELIABILITY_MIN_LABELS and rel["informativeness"] < RELIABILITY_MIN:
        row.flags.append(
            f"unreliable: sensitivity {rel['sensitivity']:.0%} + specificity {rel['specificity']:.0%} - 1 "
            f"= {rel['informativeness']:.2f} < {RELIABILITY_MIN:g}"
        )
    if rate is not None and others_median is not None and rate < others_median - AGREEMENT_GAP:
        row.flags.append(f"inconsistent: agreement {rate:.0%} vs others' median {others_median:.0%}")
