"""An account's growth as an SVG chart drawn on the server: no script, no request elsewhere.

Bars are the new followers detected each day (left scale), the line the followers known at
the end of each day (right scale). The chart carries a ``<title>`` and a ``<desc>`` that say
the same in words, for screen readers; the page shows the numbers in a table as well.
"""

from __future__ import annotations

from markupsafe import Markup, escape

from .queries import Growth

WIDTH, HEIGHT = 720, 280
LEFT, RIGHT, TOP, BOTTOM = 48, 64, 20, 44


def _nice(value: int) -> int:
    """A round axis maximum at or above ``value`` (1, 2, 5 × 10^n)."""
    value = max(1, value)
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= value:
                return m * step
        step *= 10


def _fmt(n: float) -> str:
    return f"{n:.1f}".rstrip("0").rstrip(".")


def growth_svg(growth: Growth, handle: str, noun: str = "new followers") -> Markup:
    """``noun``: what a bar counts ("new followers", "new accounts followed")."""
    days = growth.days
    n = len(days)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    new_max = _nice(max((d[1] for d in days), default=0))
    low = min((d[2] for d in days), default=0)
    high = max((d[2] for d in days), default=0)
    span_low = max(0, low - max(1, (high - low) // 10))
    span_high = max(span_low + 1, high)
    slot = plot_w / max(1, n)
    bar_w = max(1.0, slot * 0.7)

    def x(i: int) -> float:
        return LEFT + slot * i + slot / 2

    def y_new(v: int) -> float:
        return TOP + plot_h - plot_h * v / new_max

    def y_total(v: int) -> float:
        return TOP + plot_h - plot_h * (v - span_low) / (span_high - span_low)

    total_new = sum(d[1] for d in days)
    busiest = max(days, key=lambda d: d[1]) if days else None
    title = f"{noun.capitalize()} per day for @{handle}, and the running total"
    desc = (f"{n} days from {days[0][0]} to {days[-1][0]} (UTC): {total_new} {noun} detected"
            + (f", most on {busiest[0]} ({busiest[1]})" if busiest and busiest[1] else "")
            + f"; the total known grew from {days[0][2] - days[0][1]} to {days[-1][2]}." if days else "No data.")
    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
           f'aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg">',
           f'<title id="chart-title">{escape(title)}</title>', f'<desc id="chart-desc">{escape(desc)}</desc>',
           f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/>']
    for frac in (0, 0.5, 1):                              # grid and both scales
        gy = TOP + plot_h - plot_h * frac
        out.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{_fmt(gy)}" y2="{_fmt(gy)}"/>')
        out.append(f'<text class="axis new" x="{LEFT - 6}" y="{_fmt(gy + 4)}" text-anchor="end">'
                   f'{round(new_max * frac)}</text>')
        total_label = round(span_low + (span_high - span_low) * frac)
        out.append(f'<text class="axis total" x="{LEFT + plot_w + 6}" y="{_fmt(gy + 4)}">{total_label}</text>')
    for i, (day, new, _total) in enumerate(days):
        if new:
            top = y_new(new)
            out.append(f'<rect class="bar" x="{_fmt(x(i) - bar_w / 2)}" y="{_fmt(top)}" width="{_fmt(bar_w)}" '
                       f'height="{_fmt(TOP + plot_h - top)}"><title>{day}: {new} new</title></rect>')
    if days:
        points = " ".join(f"{_fmt(x(i))},{_fmt(y_total(d[2]))}" for i, d in enumerate(days))
        out.append(f'<polyline class="line" points="{points}"/>')
        for i in sorted({0, n // 2, n - 1}):
            out.append(f'<text class="axis" x="{_fmt(x(i))}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle">'
                       f'{days[i][0][5:]}</text>')
    out.append(f'<g class="legend" transform="translate({LEFT},{HEIGHT - 12})">'
               '<rect class="bar" width="10" height="10" y="-9"/><text x="14">new that day (left)</text>'
               '<line class="line" x1="170" x2="190" y1="-4" y2="-4"/><text x="196">total known (right)</text></g>')
    out.append("</svg>")
    return Markup("".join(out))
