"""Small inline SVG charts for the console: no JavaScript library, readable at a glance.

Each function takes plain numbers and returns safe SVG markup (every text is escaped). Colours
come from CSS classes (`.series-0`, `.series-1`, ...) in static/css/console.css, so the charts
follow the admin's light and dark themes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import datetime

from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

from sessions_app import metrics

WIDTH, HEIGHT = 560, 170
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 22, 24


def _nice_max(value: float) -> float:
    """A round axis maximum at or above `value` (1, 2 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        candidate = step * 10**exponent
        if candidate >= value:
            return float(candidate)
    return float(10 ** (exponent + 1))


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _frame(title: str, y_max: float, x_labels: Sequence[str], unit: str = "") -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" preserveAspectRatio="xMidYMid meet">',
        f"<title>{escape(title)}</title>",
        f'<text class="chart-title" x="{LEFT}" y="14">{escape(title)}</text>',
    ]
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        label = _fmt(y_max * fraction) + unit
        parts.append(
            f'<text class="axis" x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(label)}</text>"
        )
    if x_labels:
        n = len(x_labels)
        shown = range(n) if n <= 12 else sorted({0, n // 2, n - 1})
        for index in shown:
            x = LEFT + (WIDTH - LEFT - RIGHT) * (index + 0.5) / n
            anchor = "middle"
            if n > 12 and index == 0:
                anchor = "start"
            elif n > 12 and index == n - 1:
                anchor = "end"  # the newest minute's label stays inside the frame
            parts.append(
                f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}">'
                f"{escape(x_labels[index])}</text>"
            )
    return parts


def _legend(names: Sequence[str]) -> list[str]:
    parts = []
    x = WIDTH - RIGHT
    for index in reversed(range(len(names))):
        # Latin letters are about 6 px wide at this size, Hangul and other CJK about 11.
        width = 18 + sum(6 if ord(ch) < 0x2E80 else 11 for ch in names[index])
        x -= width
        parts.append(
            f'<rect class="series-{index} swatch" x="{x}" y="5" width="10" height="10"/>'
            f'<text class="legend" x="{x + 13}" y="14">{escape(names[index])}</text>'
        )
    return parts


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    unit: str = "",
    counts: bool = False,
) -> SafeString:
    """Lines over time; None is a gap (no sample in that minute). `counts`: whole-number axis."""
    values = [v for _name, points in series for v in points if v is not None]
    y_max = _nice_max(max(values, default=0))
    if counts:
        y_max = max(y_max, 2.0)
    n = max(len(x_labels), 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = _frame(title, y_max, x_labels, unit)
    for index, (_name, points) in enumerate(series):
        segment: list[str] = []
        segments: list[list[str]] = []
        for i, value in enumerate(points):
            if value is None:
                if segment:
                    segments.append(segment)
                segment = []
                continue
            x = LEFT + plot_w * (i + 0.5) / n
            y = TOP + plot_h * (1 - value / y_max)
            segment.append(f"{x:.1f},{y:.1f}")
        if segment:
            segments.append(segment)
        for seg in segments:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                parts.append(f'<circle class="series-{index} dot" cx="{cx}" cy="{cy}" r="2"/>')
            else:
                parts.append(f'<polyline class="series-{index} line" points="{" ".join(seg)}"/>')
    parts += _legend([name for name, _points in series])
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every text above went through escape()


def bar_chart(
    title: str,
    x_labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    unit: str = "",
) -> SafeString:
    """Grouped bars, one group per x label."""
    values = [v for _name, points in series for v in points]
    # Bars count things (requests, people): an axis of 0, 1, 2 rather than 0, 0.5, 1.
    y_max = max(_nice_max(max(values, default=0)), 2.0)
    n = max(len(x_labels), 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / n
    bar_w = max(slot * 0.8 / max(len(series), 1), 0.5)
    parts = _frame(title, y_max, x_labels, unit)
    for index, (_name, points) in enumerate(series):
        for i, value in enumerate(points):
            if not value:
                continue
            h = plot_h * value / y_max
            x = LEFT + slot * i + slot * 0.1 + bar_w * index
            parts.append(
                f'<rect class="series-{index} bar" x="{x:.1f}" y="{TOP + plot_h - h:.1f}" '
                f'width="{bar_w:.1f}" height="{h:.1f}"><title>{escape(x_labels[i])}: '
                f"{_fmt(value)}{escape(unit)}</title></rect>"
            )
    parts += _legend([name for name, _points in series])
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every text above went through escape()


def _minute_label(minute: int) -> str:
    moment = datetime.fromtimestamp(minute * 60, tz=timezone.get_current_timezone())
    return moment.strftime("%H:%M")


def sessions_chart(series: Sequence[metrics.MinuteStats]) -> SafeString:
    labels = [_minute_label(m.minute) for m in series]
    return line_chart(
        _("Active and queued, last hour"),
        labels,
        [
            (_("active"), [None if m.active is None else float(m.active) for m in series]),
            (_("queued"), [None if m.queued is None else float(m.queued) for m in series]),
        ],
        counts=True,
    )


def requests_chart(
    series: Sequence[metrics.MinuteStats], endpoint: str | None = None
) -> SafeString:
    labels = [_minute_label(m.minute) for m in series]
    return bar_chart(
        _("Requests and errors per minute: %(endpoint)s") % {"endpoint": endpoint}
        if endpoint
        else _("Requests and errors per minute (API and chat)"),
        labels,
        [
            (_("requests"), [float(m.requests) for m in series]),
            (_("4xx"), [float(m.refused) for m in series]),
            (_("5xx"), [float(m.errors) for m in series]),
        ],
    )


def latency_chart(series: Sequence[metrics.MinuteStats], endpoint: str | None = None) -> SafeString:
    """p50/p95 per minute across both groups (weighted by each group's requests)."""
    labels = [_minute_label(m.minute) for m in series]
    p50: list[float | None] = []
    p95: list[float | None] = []
    for m in series:
        busiest = max(m.groups.values(), key=lambda g: g.requests, default=None)
        if busiest is None or not busiest.requests:
            p50.append(None)
            p95.append(None)
            continue
        p50.append(busiest.p50_ms)
        p95.append(busiest.p95_ms)
    return line_chart(
        _("Response time per minute: %(endpoint)s") % {"endpoint": endpoint}
        if endpoint
        else _("Response time per minute (busiest endpoint group)"),
        labels,
        [(_("p50"), p50), (_("p95"), p95)],
        unit=" ms",
    )


WAIT_CHART_BOUNDS: tuple[tuple[float, str], ...] = (
    (1, "≤1s"),
    (5, "≤5s"),
    (30, "≤30s"),
    (60, "≤1m"),
    (300, "≤5m"),
    (900, "≤15m"),
    (1800, "≤30m"),
    (math.inf, ">30m"),
)


def wait_distribution_chart(
    waits: Sequence[tuple[float, float]], *, now: float | None = None
) -> SafeString:
    """How long the people admitted in the last hour waited."""
    now = time.time() if now is None else now
    counts = [0] * len(WAIT_CHART_BOUNDS)
    for when, waited in waits:
        if now - when > 3600:
            continue
        for index, (bound, _label) in enumerate(WAIT_CHART_BOUNDS):
            if waited <= bound:
                counts[index] += 1
                break
    return bar_chart(
        _("Queue wait of people admitted in the last hour"),
        [label for _bound, label in WAIT_CHART_BOUNDS],
        [(_("people"), [float(c) for c in counts])],
    )
