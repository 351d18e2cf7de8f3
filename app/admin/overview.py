"""Overview figures: label progress per prompt set and category, pace, and time to completion."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.admin.charts import BarChart, Segment, hourly_bar_chart, stacked
from app.admin.timeseries import as_hour, hour_bucket
from app.db.base import utcnow
from app.db.enums import PromptCategory
from app.db.models import Image, Prompt, PromptSet, Rating
from app.prompts.schemas import CategoryProgress, LabelOrderRead
from app.prompts.service import label_order, progress

CATEGORY_ORDER = [c.value for c in PromptCategory]
CHART_HOURS = 7 * 24
PACE_HOURS = 24


@dataclass
class CategoryRow:
    category: str
    p: CategoryProgress
    done_pct: float
    shares: list[Segment]
    last_24h: int
    per_hour: float
    remaining: int
    eta_hours: float | None  # None: no pace (or nothing left: see remaining)


@dataclass
class PromptSetOverview:
    id: int
    name: str
    purpose: str
    labels_per_image: int
    rows: list[CategoryRow] = field(default_factory=list)
    total: CategoryRow | None = None
    chart: BarChart | None = None
    label_order: LabelOrderRead | None = None


def _row(category: str, p: CategoryProgress, last_24h: int) -> CategoryRow:
    remaining = max(p.labels_wanted - p.labels_done, 0)
    per_hour = last_24h / PACE_HOURS
    return CategoryRow(
        category=category,
        p=p,
        done_pct=min(100.0, 100 * p.labels_done / p.labels_wanted) if p.labels_wanted else 0.0,
        shares=stacked([("good", "good", p.good), ("bad", "bad", p.bad), ("skip", "skip", p.skip)]),
        last_24h=last_24h,
        per_hour=per_hour,
        remaining=remaining,
        eta_hours=remaining / per_hour if per_hour > 0 and remaining > 0 else None,
    )


def _labels_query(session: Session, since: datetime):  # noqa: ANN202 - a Select
    """Usable labels (good/bad) on non-gold images since `since`: what `progress` counts as done."""
    return (
        select(Rating.prompt_set_id)
        .join(Image, Image.id == Rating.image_id)
        .where(Rating.created_at >= since, Rating.label != "skip", Image.gold_label.is_(None))
    )


def overview(session: Session, now: datetime | None = None) -> list[PromptSetOverview]:
    now = now or utcnow()
    day_ago = now - timedelta(hours=PACE_HOURS)
    chart_start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=CHART_HOURS - 1)

    recent: dict[tuple[int, str], int] = {}
    q = (
        _labels_query(session, day_ago)
        .add_columns(Prompt.category, func.count())
        .join(Prompt, Prompt.id == Image.prompt_id)
        .group_by(Rating.prompt_set_id, Prompt.category)
    )
    for ps_id, category, n in session.execute(q):
        recent[(ps_id, category)] = n

    bucket = hour_bucket(session, Rating.created_at)
    hourly: dict[int, dict[datetime, int]] = defaultdict(dict)
    q = (
        _labels_query(session, chart_start)
        .add_columns(bucket, func.count())
        .group_by(Rating.prompt_set_id, bucket)
    )
    for ps_id, hour, n in session.execute(q):
        hourly[ps_id][as_hour(hour)] = n

    out = []
    for ps in session.scalars(select(PromptSet).order_by(PromptSet.id)):
        prog = progress(session, ps.id)
        item = PromptSetOverview(ps.id, ps.name, ps.purpose, ps.labels_per_image)
        for category in CATEGORY_ORDER:
            if category in prog:
                item.rows.append(_row(category, prog[category], recent.get((ps.id, category), 0)))
        item.total = _row("total", prog["total"], sum(r.last_24h for r in item.rows))
        item.chart = hourly_bar_chart(hourly.get(ps.id, {}), now, CHART_HOURS)
        item.label_order = label_order(session, ps.id)
        out.append(item)
    return sorted(out, key=display_order)


def display_order(item: PromptSetOverview) -> tuple[bool, bool, int]:
    """Sets with images to label first (training before evaluation), newest first; a set with nothing
    to label (an evaluation set's prompts only feed blind pairs) at the end, where it takes no room."""
    nothing_to_label = item.total is None or item.total.p.labels_wanted == 0
    return (nothing_to_label, item.purpose == "evaluation", -item.id)


def format_eta(hours: float | None, remaining: int) -> str:
    if remaining == 0:
        return "done"
    if hours is None:
        return "—"
    if hours < 1:
        return f"{max(1, round(hours * 60))} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"
