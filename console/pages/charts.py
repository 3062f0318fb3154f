"""The dashboard's two charts, drawn as inline SVG on the server."""

from __future__ import annotations

import math
from datetime import date

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from console.pages.stats import DayLatency

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 52, 16, 30, 36


def _axis_top(value: float, *, integer: bool) -> float:
    """The top of a four-interval axis with round steps (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10ⁿ)."""
    wanted = max(value, 0) / 4
    if wanted <= 0:
        return 4 if integer else 1
    magnitude = 10 ** math.floor(math.log10(wanted))
    for step in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        candidate = step * magnitude
        if candidate >= wanted and (not integer or candidate == int(candidate)):
            return candidate * 4
    return 40 * magnitude


def _fmt(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k".replace(".0k", "k")
    return f"{value:g}"


def _axes(top_value: float, labels: list[str], unit: str) -> list[str]:
    """Horizontal grid lines with y labels, and x labels under every few slots."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = []
    for i in range(5):
        value = top_value * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"/>')
        parts.append(f'<text class="ylabel" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(_fmt(value))}</text>')
    parts.append(f'<text class="unit" x="{LEFT}" y="{TOP - 12}" text-anchor="start">{escape(unit)}</text>')
    slot = plot_w / max(len(labels), 1)
    every = max(1, math.ceil(len(labels) / 6))
    for i, label in enumerate(labels):
        last = i == len(labels) - 1
        if last:  # the latest day is always labelled, flush with the right edge so it is never cut off
            parts.append(f'<text class="xlabel" x="{WIDTH - RIGHT}" y="{HEIGHT - BOTTOM + 18}" text-anchor="end">{escape(label)}</text>')
        elif i % every == 0 and i < len(labels) - every:
            x = LEFT + slot * (i + 0.5)
            parts.append(f'<text class="xlabel" x="{x:.1f}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle">{escape(label)}</text>')
    parts.append(f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}"/>')
    return parts


def _svg(title: str, parts: list[str]) -> SafeString:
    body = "".join(parts)
    # Every interpolated string above went through escape(); numbers are formatted by us.
    return mark_safe(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'preserveAspectRatio="xMidYMid meet"><title>{escape(title)}</title>{body}</svg>'
    )


def _day_label(day: date) -> str:
    return day.strftime("%b %d").replace(" 0", " ")


def bar_chart(series: list[tuple[date, int]], title: str = "Questions per day") -> SafeString:
    """A bar per day, with a y axis of round ticks and dates underneath."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top_value = _axis_top(max((n for _, n in series), default=0), integer=True)
    parts = _axes(top_value, [_day_label(d) for d, _ in series], "questions")
    slot = plot_w / max(len(series), 1)
    bar_w = max(slot * 0.7, 1)
    for i, (day, n) in enumerate(series):
        h = plot_h * n / top_value
        x = LEFT + slot * i + (slot - bar_w) / 2
        y = TOP + plot_h - h
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" rx="2">'
            f"<title>{escape(day.isoformat())}: {n} questions</title></rect>"
        )
    return _svg(title, parts)


def line_chart(series: list[DayLatency], title: str = "Answer latency per day") -> SafeString:
    """p50 and p95 latency per day as two lines (gaps where a day had no answers)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    peak = max((d.p95 or 0 for d in series), default=0)
    top_value = _axis_top(peak, integer=True)
    parts = _axes(top_value, [_day_label(d.day) for d in series], "ms")
    slot = plot_w / max(len(series), 1)
    for attr, css in (("p95", "line-p95"), ("p50", "line-p50")):
        segment: list[str] = []
        segments: list[list[str]] = []
        for i, d in enumerate(series):
            value = getattr(d, attr)
            if value is None:
                if segment:
                    segments.append(segment)
                segment = []
                continue
            x = LEFT + slot * (i + 0.5)
            y = TOP + plot_h - plot_h * value / top_value
            segment.append(f"{x:.1f},{y:.1f}")
            parts.append(
                f'<circle class="dot {css}" cx="{x:.1f}" cy="{y:.1f}" r="2.5">'
                f"<title>{escape(d.day.isoformat())} {attr}: {value:.0f} ms ({d.count} answers)</title></circle>"
            )
        if segment:
            segments.append(segment)
        for points in segments:
            parts.append(f'<polyline class="{css}" points="{" ".join(points)}"/>')
    parts.append(
        f'<g class="legend" transform="translate({WIDTH - RIGHT - 100},{TOP - 22})">'
        '<rect class="legend-p50" x="0" y="0" width="10" height="10" rx="2"/><text x="14" y="9">p50</text>'
        '<rect class="legend-p95" x="56" y="0" width="10" height="10" rx="2"/><text x="70" y="9">p95</text></g>'
    )
    return _svg(title, parts)
