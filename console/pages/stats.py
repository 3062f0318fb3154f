"""The dashboard's figures and its two charts, drawn as inline SVG on the server."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db.models import Count, Q, Sum
from django.db.models.functions import Mod
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from console.models import Document, Feedback, IngestJob, Message

CHART_DAYS = 30
# Percentiles are computed in Python; beyond this many answers in the chart window, an even
# sample by primary key keeps the dashboard fast at any table size (≈150 answers a day is
# plenty for a p95 on a chart; every answer counts below the cap).
LATENCY_SAMPLE_CAP = 5_000


@dataclass
class DayLatency:
    day: date
    p50: float | None
    p95: float | None
    count: int


@dataclass
class DashboardStats:
    documents: int
    chunks: int
    questions_today: int
    questions_week: int
    latency_p50: float | None
    latency_p95: float | None
    thumbs_up: int
    thumbs_down: int
    failed_jobs: list[IngestJob]
    questions_per_day: list[tuple[date, int]] = field(default_factory=list)
    latency_per_day: list[DayLatency] = field(default_factory=list)

    @property
    def thumbs_up_share(self) -> float | None:
        """The share of 👍 among all votes, or None before the first vote."""
        total = self.thumbs_up + self.thumbs_down
        return self.thumbs_up / total if total else None


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile of `values` (0 ≤ q ≤ 100); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _start_of_today() -> datetime:
    return timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)


def _day_starts(days: int) -> list[datetime]:
    """Local midnights: the first day of the window … tomorrow (days + 1 boundaries)."""
    today = _start_of_today()
    return [today - timedelta(days=days - 1 - i) for i in range(days + 1)]


def questions_per_day(days: int = CHART_DAYS) -> list[tuple[date, int]]:
    """User messages per calendar day for the last `days` days, zero-filled.

    One COUNT per day, each a range scan of the (role, created_at) index: about 10 ms in all at
    17,000 questions a month on SQLite, where TruncDate calls a Python function per row (≈120 ms),
    and the day boundaries are local midnights on every database.
    """
    starts = _day_starts(days)
    questions = Message.objects.filter(role=Message.Role.USER)
    return [
        (starts[i].date(), questions.filter(created_at__gte=starts[i], created_at__lt=starts[i + 1]).count())
        for i in range(days)
    ]


def latency_per_day(days: int = CHART_DAYS) -> list[tuple[date, list[float]]]:
    """Answer latencies (ms) per calendar day, fetched day by day without reading timestamps back.

    Beyond LATENCY_SAMPLE_CAP answers in the window an even sample by primary key is taken;
    `id % stride` is decided on the (role, created_at) index entries, so only sampled rows are read.
    """
    starts = _day_starts(days)
    answers = Message.objects.filter(role=Message.Role.ASSISTANT)
    total = answers.filter(created_at__gte=starts[0]).count()  # from the index alone
    if total > LATENCY_SAMPLE_CAP:
        answers = answers.annotate(bucket=Mod("id", math.ceil(total / LATENCY_SAMPLE_CAP))).filter(bucket=0)
    out = []
    for i in range(days):
        rows = answers.filter(created_at__gte=starts[i], created_at__lt=starts[i + 1]).order_by()
        out.append((starts[i].date(), [ms for ms in rows.values_list("latency_ms", flat=True) if ms is not None]))
    return out


def _day_latency(day: date, values: list[float]) -> DayLatency:
    return DayLatency(day, percentile(values, 50), percentile(values, 95), len(values))


def collect_stats() -> DashboardStats:
    """Every figure on the dashboard: a few aggregates plus one small indexed COUNT/fetch per chart day."""
    now = timezone.now()
    today = _start_of_today()
    current = Document.objects.exclude(status=Document.Status.SUPERSEDED)
    docs = current.aggregate(n=Count("id"), chunks=Sum("chunk_count"))
    questions = Message.objects.filter(role=Message.Role.USER, created_at__gte=now - timedelta(days=7)).aggregate(
        week=Count("id"), today=Count("id", filter=Q(created_at__gte=today))
    )
    votes = Feedback.objects.aggregate(up=Count("id", filter=Q(value=1)), down=Count("id", filter=Q(value=-1)))
    latencies = latency_per_day()
    week = [ms for _, values in latencies[-7:] for ms in values]  # the last 7 calendar days
    failed = list(
        IngestJob.objects.filter(state__in=[IngestJob.State.FAILED, IngestJob.State.PARTIALLY_FAILED])
        .select_related("created_by")
        .order_by("-created_at")[:5]
    )
    return DashboardStats(
        documents=docs["n"],
        chunks=docs["chunks"] or 0,
        questions_today=questions["today"],
        questions_week=questions["week"],
        latency_p50=percentile(week, 50),
        latency_p95=percentile(week, 95),
        thumbs_up=votes["up"],
        thumbs_down=votes["down"],
        failed_jobs=failed,
        questions_per_day=questions_per_day(),
        latency_per_day=[_day_latency(day, values) for day, values in latencies],
    )


# -- charts ----------------------------------------------------------------------------------

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
