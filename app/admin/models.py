"""Model versions as a lineage tree, with their scalar metrics and training curves.

Metrics are free-form JSON written by the workers; whatever numeric scalars and series are
present are shown (reward: `history` per epoch; generator: `curve` per step), and anything
else is ignored rather than breaking the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.admin.charts import LineChart, finite, line_chart
from app.db.models import ModelVersion

MAX_CHARTS = 12
X_KEYS = ("step", "epoch", "iteration", "global_step")


@dataclass
class VersionNode:
    version: ModelVersion
    depth: int
    scalars: list[tuple[str, float]] = field(default_factory=list)
    charts: list[LineChart] = field(default_factory=list)
    tables: list[GroupTable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class GroupTable:
    """A metric that is a dict of dicts, e.g. reward `by_group`: {"seen": {"accuracy": .9, ...}, ...}."""

    name: str
    columns: list[str]
    rows: list[tuple[str, list[float | None]]]


def group_tables(metrics: dict[str, Any]) -> list[GroupTable]:
    out = []
    for key, value in metrics.items():
        if not isinstance(value, dict) or not value or not all(isinstance(v, dict) for v in value.values()):
            continue
        columns: list[str] = []
        for v in value.values():
            columns.extend(k for k, x in v.items() if finite(x) and k not in columns)
        if columns:
            rows = [
                (str(g), [float(v[c]) if finite(v.get(c)) else None for c in columns])
                for g, v in value.items()
            ]
            out.append(GroupTable(key, columns, rows))
    return out


def notes(metrics: dict[str, Any]) -> list[str]:
    """Text the workers attach (e.g. finetune `warnings`)."""
    out = []
    for key, value in metrics.items():
        if isinstance(value, str) and value:
            out.append(f"{key}: {value}")
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            out.extend(f"{key}: {v}" for v in value)
    return out[:20]


def _scalars(metrics: dict[str, Any], prefix: str = "", depth: int = 0) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if finite(value):
            out.append((name, float(value)))
        elif isinstance(value, dict) and depth < 1 and not any(isinstance(v, dict) for v in value.values()):
            out.extend(_scalars(value, f"{name}.", depth + 1))
    return out


def _series_from_records(name: str, records: list[Any]) -> list[LineChart]:
    rows = [r for r in records if isinstance(r, dict)]
    if not rows:
        return []
    x_key = next((k for k in X_KEYS if any(finite(r.get(k)) for r in rows)), None)
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k, v in r.items() if k != x_key and finite(v) and k not in keys)
    charts = []
    for key in keys:
        raw = [(r.get(x_key) if x_key else i, r.get(key)) for i, r in enumerate(rows)]
        pairs = [(float(x), float(y)) for x, y in raw if finite(x) and finite(y)]
        chart = line_chart(f"{name}: {key}", [p[0] for p in pairs], [p[1] for p in pairs], x_key or "index")
        if chart:
            charts.append(chart)
    return charts


def series_charts(metrics: dict[str, Any]) -> list[LineChart]:
    charts: list[LineChart] = []
    for key, value in metrics.items():
        if not isinstance(value, list) or not value:
            continue
        if all(isinstance(v, dict) for v in value):
            charts.extend(_series_from_records(key, value))
        elif all(finite(v) for v in value) and len(value) > 1:
            chart = line_chart(key, list(range(len(value))), value, "index")
            if chart:
                charts.append(chart)
    return charts[:MAX_CHARTS]


def lineage(session: Session) -> list[VersionNode]:
    """Depth-first: each root (no parent, or a parent that is gone), then its descendants by id."""
    versions = list(session.scalars(select(ModelVersion).order_by(ModelVersion.id)))
    ids = {v.id for v in versions}
    children: dict[int | None, list[ModelVersion]] = {}
    for v in versions:
        parent = v.parent_id if v.parent_id in ids else None
        children.setdefault(parent, []).append(v)
    out: list[VersionNode] = []
    seen: set[int] = set()

    def walk(v: ModelVersion, depth: int) -> None:
        if v.id in seen:  # a cycle the database does not forbid (a->b->a): show it once
            return
        seen.add(v.id)
        metrics = v.metrics if isinstance(v.metrics, dict) else {}
        out.append(
            VersionNode(
                v, depth, _scalars(metrics), series_charts(metrics), group_tables(metrics), notes(metrics)
            )
        )
        for child in children.get(v.id, []):
            walk(child, depth + 1)

    for root in children.get(None, []):
        walk(root, 0)
    for v in versions:  # members of a pure cycle have no root above them
        walk(v, 0)
    return out
