"""Geometry for server-side SVG charts: numbers in, coordinates out; the templates draw them.

Everything is computed here so that templates stay declarative and no chart library or
inline script is needed (the CSP forbids both).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeGuard


def nice_max(value: float) -> float:
    """A round axis maximum at or above value (1, 2, 2.5, 5 x 10^k)."""
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return step * exp
    return 10 * exp


def fmt_num(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.0f}" if v == int(v) else f"{v:.1f}"
    return f"{v:.3g}"


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: float
    label: str


@dataclass
class Tick:
    pos: float
    label: str


@dataclass
class BarChart:
    width: int
    height: int
    plot_left: int
    plot_bottom: int
    bars: list[Bar]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    total: float
    peak: float


def hourly_bar_chart(
    counts: dict[datetime, int], end: datetime, hours: int = 168, width: int = 1000, height: int = 200
) -> BarChart:
    """One bar per hour for the `hours` hours up to `end` (whose hour is the last bar)."""
    last = end.replace(minute=0, second=0, microsecond=0)
    start = last - timedelta(hours=hours - 1)
    left, right, top, bottom = 44, 8, 8, 24
    pw, ph = width - left - right, height - top - bottom
    values = [counts.get(start + timedelta(hours=i), 0) for i in range(hours)]
    peak = max(values, default=0)
    ymax = nice_max(peak)
    bw = pw / hours
    bars = []
    for i, v in enumerate(values):
        h = ph * v / ymax
        t = start + timedelta(hours=i)
        bars.append(
            Bar(
                x=round(left + i * bw, 2),
                y=round(top + ph - h, 2),
                width=round(max(bw - 0.6, 0.6), 2),
                height=round(h, 2),
                value=v,
                label=f"{t:%a %d %b %H}:00 UTC: {v} labels",
            )
        )
    y_ticks = [Tick(pos=round(top + ph - ph * f, 2), label=fmt_num(ymax * f)) for f in (0, 0.5, 1)]
    x_ticks = []
    for i in range(hours):
        t = start + timedelta(hours=i)
        if t.hour == 0:
            x_ticks.append(Tick(pos=round(left + i * bw, 2), label=f"{t:%a %d}"))
    return BarChart(width, height, left, top + ph, bars, y_ticks, x_ticks, float(sum(values)), float(peak))


@dataclass
class LineChart:
    title: str
    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_top: int
    plot_bottom: int
    points: str  # SVG polyline points
    dots: list[tuple[float, float, str]] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    x_label: str = ""
    first: float = 0.0
    last: float = 0.0
    best_min: float = 0.0
    best_max: float = 0.0
    n: int = 0


def finite(v: object) -> TypeGuard[int | float]:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def line_chart(
    title: str, xs: list[float], ys: list[float], x_label: str = "step", width: int = 340, height: int = 170
) -> LineChart | None:
    pts = [(float(x), float(y)) for x, y in zip(xs, ys, strict=False) if finite(x) and finite(y)]
    if not pts:
        return None
    left, right, top, bottom = 46, 10, 10, 28
    pw, ph = width - left - right, height - top - bottom
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if y1 == y0:
        y0, y1 = y0 - (abs(y0) * 0.1 or 1), y1 + (abs(y1) * 0.1 or 1)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1

    def sx(x: float) -> float:
        return round(left + pw * (x - x0) / (x1 - x0), 2)

    def sy(y: float) -> float:
        return round(top + ph - ph * (y - y0) / (y1 - y0), 2)

    coords = [(sx(x), sy(y)) for x, y in pts]
    return LineChart(
        title=title,
        width=width,
        height=height,
        plot_left=left,
        plot_right=left + pw,
        plot_top=top,
        plot_bottom=top + ph,
        points=" ".join(f"{a},{b}" for a, b in coords),
        dots=[(a, b, f"{x_label} {fmt_num(x)}: {y:.4g}") for (a, b), (x, y) in zip(coords, pts, strict=True)]
        if len(pts) <= 60
        else [],
        y_ticks=[Tick(sy(v), f"{v:.3g}") for v in (y0, (y0 + y1) / 2, y1)],
        x_ticks=[Tick(sx(v), fmt_num(v)) for v in (x0, x1)],
        x_label=x_label,
        first=pts[0][1],
        last=pts[-1][1],
        best_min=min(p[1] for p in pts),
        best_max=max(p[1] for p in pts),
        n=len(pts),
    )


@dataclass
class Segment:
    key: str
    label: str
    count: int
    share: float  # 0..1
    x: float  # percent offset
    width: float  # percent width


def stacked(parts: list[tuple[str, str, int]]) -> list[Segment]:
    """Segments of a 100% stacked bar from (key, label, count) parts; empty when all are zero."""
    total = sum(c for _, _, c in parts)
    out: list[Segment] = []
    x = 0.0
    if not total:
        return out
    for key, label, c in parts:
        w = 100 * c / total
        out.append(Segment(key, label, c, c / total, round(x, 3), round(w, 3)))
        x += w
    return out
