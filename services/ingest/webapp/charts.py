"""Charts as inline SVG, drawn on the server: no script, no outside asset, readable by
screen readers (each chart has a title and its data as a table beside it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 520, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 36
PALETTE = ("#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#4b5563")


@dataclass(frozen=True)
class Series:
    """One line of a line chart: a name and a value per x label (None: no point)."""

    name: str
    values: Sequence[float | None]


def _number(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.1f}"


def nice_ceiling(value: float) -> float:
    """The smallest round axis maximum at or above `value` whose quarters are whole round
    numbers (4, 8, 20, 40, 100…), so a count chart never shows a quarter of a call."""
    for power in range(16):
        for base in (1, 2, 2.5, 5):
            step = base * 10**power
            if step == int(step) and step * 4 >= value:
                return float(step * 4)
    return value


def _frame(title: str, body: str, max_value: float, *, unit: str = "") -> str:
    plot_h = HEIGHT - TOP - BOTTOM
    grid = []
    for step in range(5):
        value = max_value * step / 4
        y = TOP + plot_h - plot_h * step / 4
        grid.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">'
            f"{_number(value)}{unit}</text>"
        )
    return (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'class="chart"><title>{escape(title)}</title>{"".join(grid)}{body}</svg>'
    )


def _x_labels(labels: Sequence[str], slot: float) -> str:
    every = max(1, len(labels) // 10)
    return "".join(
        f'<text x="{LEFT + slot * (i + 0.5):.1f}" y="{HEIGHT - BOTTOM + 16}" class="axis" '
        f'text-anchor="middle">{escape(label)}</text>'
        for i, label in enumerate(labels)
        if i % every == 0
    )


def bar_chart(
    title: str, labels: Sequence[str], values: Sequence[float], *, unit: str = ""
) -> Markup:
    """Vertical bars, one per label."""
    max_value = nice_ceiling(max([*values, 1.0]))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(values), 1)
    bars = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = plot_h * value / max_value
        bars.append(
            f'<rect x="{LEFT + slot * i + slot * 0.15:.1f}" y="{TOP + plot_h - h:.1f}" '
            f'width="{slot * 0.7:.1f}" height="{h:.1f}" class="bar">'
            f"<title>{escape(label)}: {_number(value)}{unit}</title></rect>"
        )
    return Markup(_frame(title, "".join(bars) + _x_labels(labels, slot), max_value, unit=unit))


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    max_value: float = 100.0,
    unit: str = "",
) -> Markup:
    """Lines over shared x labels, with a legend; gaps where a value is None."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(labels), 1)
    body = []
    for index, line in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        points = [
            (LEFT + slot * (i + 0.5), TOP + plot_h - plot_h * value / max_value, value)
            for i, value in enumerate(line.values)
            if value is not None
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
            body.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>'
            )
        body.extend(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}">'
            f"<title>{escape(line.name)}: {_number(value)}{unit}</title></circle>"
            for x, y, value in points
        )
    return Markup(_frame(title, "".join(body) + _x_labels(labels, slot), max_value, unit=unit))


def legend(series: Sequence[Series]) -> Markup:
    """The colours of a line chart's series, as an HTML list."""
    items = "".join(
        f'<li><span class="swatch swatch-{i % len(PALETTE)}"></span>{escape(line.name)}</li>'
        for i, line in enumerate(series)
    )
    return Markup(f'<ul class="legend">{items}</ul>')
