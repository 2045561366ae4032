"""Inline SVG charts for report.html: grouped horizontal bars and line charts, no JavaScript, no fonts to fetch.

HTML5 parses `<svg>` inside the page without a namespace attribute, so the page holds no URL at all.

Each function returns one `<svg>` element as a string, sized in pixels, colours from `PALETTE`
by series order (the same series gets the same colour in every chart of a page when callers
pass series in the same order). Elements carry `data-series` (and bars `data-category`) so a
test, or a reader of the HTML source, can tell what each mark is.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

PALETTE = ("#1f6fb4", "#e07b10", "#2a9d3a", "#c8312f", "#8a5cc2", "#7f5a3c", "#d456a8", "#6b6b6b")
_FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def _colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [low, high]."""
    if high <= low:
        return [low]
    raw = (high - low) / max(count - 1, 1)
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if raw <= m * step)
    first = math.ceil(low / step - 1e-9) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _label(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.2e}"


def _legend_width(names: Sequence[str]) -> int:
    return 20 + 7 * max((len(n) for n in names), default=0)  # ~7 px per character at 11 px


def _legend(names: Sequence[str], x: float, y: float) -> str:
    items = []
    for i, name in enumerate(names):
        items.append(f'<rect x="{x:.1f}" y="{y + 14 * i:.1f}" width="10" height="10" fill="{_colour(i)}"/>'
                     f'<text x="{x + 14:.1f}" y="{y + 14 * i + 9:.1f}" {_FONT}>{html.escape(name)}</text>')
    return "".join(items)


def bar_chart(categories: Sequence[str], series: Mapping[str, Sequence[float | None]], title: str = "", maximum: float = 1.0) -> str:
    """Grouped horizontal bars: one group per category (a row), one bar per series in each group.

    Values are drawn on [0, max(maximum, largest value)]; a missing value (None) leaves its bar out.
    """
    names = list(series)
    bar, gap, label_width, plot_width = 9, 8, 190, 300
    group = bar * len(names) + gap
    top = 24 if title else 8
    height = top + group * len(categories) + 24
    largest = max([maximum, *(v for values in series.values() for v in values if v is not None)])
    width = label_width + plot_width + 48 + _legend_width(names)
    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    if title:
        parts.append(f'<text x="4" y="14" {_FONT} font-weight="bold">{html.escape(title)}</text>')
    axis_y = top + group * len(categories)
    for tick in _ticks(0.0, largest):
        x = label_width + plot_width * tick / largest
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{axis_y}" stroke="#ddd"/>'
                     f'<text x="{x:.1f}" y="{axis_y + 14}" {_FONT} text-anchor="middle">{_label(tick)}</text>')
    for c, category in enumerate(categories):
        y0 = top + c * group
        parts.append(f'<text x="{label_width - 6}" y="{y0 + group / 2 + 2:.1f}" {_FONT} text-anchor="end">{html.escape(category)}</text>')
        for s, name in enumerate(names):
            value = series[name][c]
            if value is None:
                continue
            length = plot_width * max(value, 0.0) / largest
            parts.append(f'<rect class="bar" data-series="{html.escape(name)}" data-category="{html.escape(category)}" '
                         f'x="{label_width}" y="{y0 + s * bar}" width="{length:.1f}" height="{bar - 1}" fill="{_colour(s)}">'
                         f'<title>{html.escape(name)}, {html.escape(category)}: {value:.3f}</title></rect>'
                         f'<text x="{label_width + length + 3:.1f}" y="{y0 + s * bar + bar - 2}" font-family="system-ui, sans-serif" '
                         f'font-size="8">{value:.2f}</text>')
    parts.append(_legend(names, label_width + plot_width + 40, top))
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]], title: str, x_label: str = "step", reference: float | None = None
) -> str:
    """One polyline per series of (x, y) points on shared axes; a single point is drawn as a dot.

    `reference`: a dashed horizontal line at that y (e.g. chance level), always inside the y range.
    """
    names = [n for n in series if series[n]]
    width, height, left, right, top, bottom = 360, 210, 48, 12, 22, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [x for n in names for x, _ in series[n]]
    ys = [y for n in names for _, y in series[n]]
    width = max(width, left + _legend_width(names))
    parts = [f'<svg width="{width}" height="{height + 14 * len(names)}" '
             f'viewBox="0 0 {width} {height + 14 * len(names)}" role="img">',
             f'<text x="4" y="14" {_FONT} font-weight="bold">{html.escape(title)}</text>']
    if not names:
        parts.append(f'<text x="{left}" y="{top + 20}" {_FONT}>no points</text></svg>')
        return "".join(parts)
    x_low, x_high = min(xs), max(xs)
    bounds = ys + ([reference] if reference is not None else [])
    y_low, y_high = min(bounds), max(bounds)
    if y_high == y_low:
        y_low, y_high = y_low - 0.5, y_high + 0.5
    if x_high == x_low:
        x_low, x_high = x_low - 0.5, x_high + 0.5

    def at(x: float, y: float) -> str:
        return f"{left + plot_w * (x - x_low) / (x_high - x_low):.1f},{top + plot_h * (1 - (y - y_low) / (y_high - y_low)):.1f}"

    for tick in _ticks(y_low, y_high):
        y = top + plot_h * (1 - (tick - y_low) / (y_high - y_low))
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#eee"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" {_FONT} text-anchor="end">{_label(tick)}</text>')
    for tick in _ticks(x_low, x_high):
        x = left + plot_w * (tick - x_low) / (x_high - x_low)
        parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 14}" {_FONT} text-anchor="middle">{_label(tick)}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>'
                 f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 28}" {_FONT} text-anchor="middle">{html.escape(x_label)}</text>')
    if reference is not None:
        y = top + plot_h * (1 - (reference - y_low) / (y_high - y_low))
        parts.append(f'<line class="reference" x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#888" '
                     f'stroke-dasharray="4 3"/>')
    for i, name in enumerate(names):
        points = series[name]
        if len(points) == 1:
            cx, cy = at(*points[0]).split(",")
            parts.append(f'<circle class="line" data-series="{html.escape(name)}" cx="{cx}" cy="{cy}" r="3" fill="{_colour(i)}"/>')
        else:
            path = " ".join(at(x, y) for x, y in points)
            parts.append(f'<polyline class="line" data-series="{html.escape(name)}" points="{path}" fill="none" '
                         f'stroke="{_colour(i)}" stroke-width="1.5"/>')
    parts.append(_legend(names, left, height))
    parts.append("</svg>")
    return "".join(parts)
