"""Small inline SVG charts for the report: estimates with intervals, step curves, paired
bars. No dependencies, nothing fetched: the HTML file is all there is."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

TREATED = "#2a6f97"
CONTROL = "#c8553d"
GRID = "#d9d9d9"
INK = "#333333"
_FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _ticks(low: float, high: float, n: int = 5) -> list[float]:
    """Round tick values covering [low, high]: steps of 1, 2, 2.5 or 5 times a power of 10."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / n
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = step * math.floor(low / step)
    count = math.ceil((high - first) / step - 1e-9)
    return [round(first + i * step, 10) for i in range(count + 1)]


def intervals(
    rows: Sequence[tuple[str, float, float, float]],
    caption: str,
    unit: str = "",
    number: str = "{:+,.2f}",
    width: int = 720,
) -> str:
    """One row per (label, estimate, low, high): a point with its 95% interval, and zero;
    `caption` says what the estimate is and in what unit, and each row's figures are printed
    beside it (formatted by `number`)."""
    if not rows:
        return "<p class='empty'>not enough customers in both arms</p>"
    row_h, left, right, top = 26, 170, 190, 40
    height = top + row_h * len(rows) + 30
    lows = [min(r[2], 0.0) for r in rows]
    highs = [max(r[3], 0.0) for r in rows]
    ticks = _ticks(min(lows), max(highs))
    lo, hi = ticks[0], ticks[-1]
    span = (hi - lo) or 1.0

    def x(v: float) -> float:
        return left + (v - lo) / span * (width - left - right)

    parts = [
        f'<svg viewBox="0 0 {width} {height}" width="{width}" {_FONT} role="img">'
        f'<text x="{left}" y="16" fill="{INK}">{escape(caption)}</text>'
    ]
    for t in ticks:
        parts.append(
            f'<line x1="{x(t):.1f}" y1="{top - 8}" x2="{x(t):.1f}" y2="{height - 24}" '
            f'stroke="{GRID}"/><text x="{x(t):.1f}" y="{height - 8}" text-anchor="middle" '
            f'fill="{INK}">{t:g}{escape(unit)}</text>'
        )
    parts.append(
        f'<line x1="{x(0):.1f}" y1="{top - 8}" x2="{x(0):.1f}" y2="{height - 24}" '
        f'stroke="{INK}" stroke-width="1.5"/>'
    )
    for i, (label, value, low, high) in enumerate(rows):
        y = top + i * row_h + row_h / 2
        colour = TREATED if low > 0 else CONTROL if high < 0 else "#777777"
        parts.append(
            f'<text x="{left - 10}" y="{y + 4:.1f}" text-anchor="end" fill="{INK}">'
            f"{escape(label)}</text>"
            f'<line x1="{x(low):.1f}" y1="{y:.1f}" x2="{x(high):.1f}" y2="{y:.1f}" '
            f'stroke="{colour}" stroke-width="3"/>'
            f'<circle cx="{x(value):.1f}" cy="{y:.1f}" r="5" fill="{colour}">'
            f"<title>{escape(label)}: {value:.3f} [{low:.3f}, {high:.3f}]</title></circle>"
            f'<text x="{width - right + 12}" y="{y + 4:.1f}" fill="{INK}">'
            f"{number.format(value)} [{number.format(low)}, {number.format(high)}]</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def steps(
    series: Sequence[tuple[str, str, Sequence[float], Sequence[float]]],
    x_label: str,
    y_label: str,
    x_max: float,
    width: int = 640,
    height: int = 300,
) -> str:
    """Step curves (name, colour, xs, ys), e.g. Kaplan-Meier survival from 1 down."""
    left, right, top, bottom = 50, 20, 20, 40
    w, h = width - left - right, height - top - bottom
    x_max = x_max or 1.0

    def px(v: float) -> float:
        return left + min(v, x_max) / x_max * w

    def py(v: float) -> float:
        return top + (1.0 - v) * h

    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" {_FONT} role="img">']
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            f'<line x1="{left}" y1="{py(v):.1f}" x2="{left + w}" y2="{py(v):.1f}" '
            f'stroke="{GRID}"/><text x="{left - 6}" y="{py(v) + 4:.1f}" text-anchor="end" '
            f'fill="{INK}">{v:.2f}</text>'
        )
    for t in _ticks(0.0, x_max):
        if t <= x_max:
            parts.append(
                f'<text x="{px(t):.1f}" y="{top + h + 16}" text-anchor="middle" '
                f'fill="{INK}">{t:g}</text>'
            )
    parts.append(
        f'<text x="{left + w / 2}" y="{height - 4}" text-anchor="middle" fill="{INK}">'
        f"{escape(x_label)}</text>"
        f'<text x="12" y="{top + h / 2}" transform="rotate(-90 12 {top + h / 2})" '
        f'text-anchor="middle" fill="{INK}">{escape(y_label)}</text>'
    )
    for i, (name, colour, xs, ys) in enumerate(series):
        points = [f"{px(0):.1f},{py(1.0):.1f}"]
        last = 1.0
        for xv, yv in zip(xs, ys, strict=True):
            points.append(f"{px(xv):.1f},{py(last):.1f}")
            points.append(f"{px(xv):.1f},{py(yv):.1f}")
            last = yv
        points.append(f"{px(x_max):.1f},{py(last):.1f}")
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
            f'points="{" ".join(points)}"/><rect x="{left + w - 150}" y="{top + 8 + i * 18}" '
            f'width="12" height="12" fill="{colour}"/><text x="{left + w - 132}" '
            f'y="{top + 18 + i * 18}" fill="{INK}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def paired(
    rows: Sequence[tuple[str, tuple[float, float, float], tuple[float, float, float]]],
    width: int = 640,
    percent: bool = True,
) -> str:
    """Treated and held-out bars per row (label, (value, low, high) x 2), with intervals."""
    row_h, left, right, top = 44, 170, 60, 10
    height = top + row_h * len(rows) + 20
    top_value = max((max(t[2], c[2]) for _, t, c in rows), default=1.0) or 1.0

    def x(v: float) -> float:
        return left + v / top_value * (width - left - right)

    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" {_FONT} role="img">']
    for i, (label, treated, control) in enumerate(rows):
        y = top + i * row_h
        parts.append(
            f'<text x="{left - 10}" y="{y + 22}" text-anchor="end" fill="{INK}">'
            f"{escape(label)}</text>"
        )
        for j, ((value, low, high), colour) in enumerate(((treated, TREATED), (control, CONTROL))):
            yy = y + 4 + j * 18
            shown = f"{value:.1%}" if percent else f"{value:.2f}"
            parts.append(
                f'<rect x="{left}" y="{yy}" width="{max(x(value) - left, 1):.1f}" height="14" '
                f'fill="{colour}" opacity="0.85"/>'
                f'<line x1="{x(low):.1f}" y1="{yy + 7}" x2="{x(high):.1f}" y2="{yy + 7}" '
                f'stroke="{INK}"/><text x="{x(high) + 4:.1f}" y="{yy + 11}" '
                f'fill="{INK}">{shown}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _percent(v: float) -> str:
    return f"{v * 100:.4g}%"


def reliability(
    bins: Sequence[tuple[int, float, float, float, float]],
    x_label: str,
    y_label: str,
    size: int = 320,
) -> str:
    """Observed rate [95%] against the mean forecast per bin (count, predicted, observed,
    low, high), with the diagonal where the two would be equal."""
    if not bins:
        return "<p class='empty'>too few outcomes</p>"
    left, right, top, bottom = 54, 14, 14, 40
    w, h = size - left - right, size - top - bottom
    ticks = _ticks(0.0, max(max(b[1] for b in bins), max(b[4] for b in bins)), 4)
    hi = ticks[-1] or 1.0

    def px(v: float) -> float:
        return left + v / hi * w

    def py(v: float) -> float:
        return top + (1.0 - v / hi) * h

    parts = [f'<svg viewBox="0 0 {size} {size}" width="{size}" {_FONT} role="img">']
    for t in ticks:
        parts.append(
            f'<line x1="{left}" y1="{py(t):.1f}" x2="{left + w}" y2="{py(t):.1f}" '
            f'stroke="{GRID}"/><text x="{left - 6}" y="{py(t) + 4:.1f}" text-anchor="end" '
            f'fill="{INK}">{_percent(t)}</text>'
            f'<text x="{px(t):.1f}" y="{top + h + 16}" text-anchor="middle" '
            f'fill="{INK}">{_percent(t)}</text>'
        )
    parts.append(
        f'<line x1="{px(0):.1f}" y1="{py(0):.1f}" x2="{px(hi):.1f}" y2="{py(hi):.1f}" '
        f'stroke="{INK}" stroke-dasharray="4 3"/>'
        f'<text x="{left + w / 2}" y="{size - 4}" text-anchor="middle" fill="{INK}">'
        f"{escape(x_label)}</text>"
        f'<text x="12" y="{top + h / 2}" transform="rotate(-90 12 {top + h / 2})" '
        f'text-anchor="middle" fill="{INK}">{escape(y_label)}</text>'
    )
    for count, predicted, observed, low, high in bins:
        x = px(predicted)
        parts.append(
            f'<line x1="{x:.1f}" y1="{py(low):.1f}" x2="{x:.1f}" y2="{py(high):.1f}" '
            f'stroke="{TREATED}" stroke-width="2"/>'
            f'<circle cx="{x:.1f}" cy="{py(observed):.1f}" r="4" fill="{TREATED}">'
            f"<title>{count:,} outcomes: predicted {_percent(predicted)}, observed "
            f"{_percent(observed)} [{_percent(low)}, {_percent(high)}]</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def uplift(
    buckets: Sequence[tuple[str, float, float | None, float, float]],
    width: int = 640,
    height: int = 300,
) -> str:
    """Per bucket (label, predicted, observed or None, low, high): the predicted uplift as a
    bar, the observed one as a point with its 95% interval (none where data are too thin)."""
    if not buckets:
        return "<p class='empty'>the holdout is too small for uplift buckets</p>"
    left, right, top, bottom = 54, 14, 28, 40
    w, h = width - left - right, height - top - bottom
    values = [0.0, *(b[1] for b in buckets)]
    values += [v for b in buckets if b[2] is not None for v in (b[3], b[4])]
    ticks = _ticks(min(values), max(values), 5)
    lo, hi = ticks[0], ticks[-1]
    span = (hi - lo) or 1.0
    slot = w / len(buckets)

    def py(v: float) -> float:
        return top + (hi - v) / span * h

    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" {_FONT} role="img">']
    for t in ticks:
        parts.append(
            f'<line x1="{left}" y1="{py(t):.1f}" x2="{left + w}" y2="{py(t):.1f}" '
            f'stroke="{GRID}"/><text x="{left - 6}" y="{py(t) + 4:.1f}" text-anchor="end" '
            f'fill="{INK}">{t:+.3g}</text>'
        )
    parts.append(
        f'<line x1="{left}" y1="{py(0):.1f}" x2="{left + w}" y2="{py(0):.1f}" '
        f'stroke="{INK}" stroke-width="1.5"/>'
        f'<rect x="{left}" y="6" width="12" height="12" fill="{GRID}"/>'
        f'<text x="{left + 16}" y="16" fill="{INK}">predicted</text>'
        f'<circle cx="{left + 96}" cy="12" r="4" fill="{TREATED}"/>'
        f'<text x="{left + 104}" y="16" fill="{INK}">observed, delivered - held out [95%]</text>'
        f'<text x="{left + w / 2}" y="{height - 4}" text-anchor="middle" fill="{INK}">'
        "bucket of predicted uplift (lowest first)</text>"
    )
    for i, (label, predicted, observed, low, high) in enumerate(buckets):
        x = left + (i + 0.5) * slot
        bar_top, bar_bottom = sorted((py(predicted), py(0)))
        parts.append(
            f'<rect x="{x - slot * 0.3:.1f}" y="{bar_top:.1f}" width="{slot * 0.6:.1f}" '
            f'height="{max(bar_bottom - bar_top, 1):.1f}" fill="{GRID}">'
            f"<title>{escape(label)}: predicted {predicted:+.4f}</title></rect>"
            f'<text x="{x:.1f}" y="{top + h + 16}" text-anchor="middle" fill="{INK}">'
            f"{escape(label)}</text>"
        )
        if observed is None:
            parts.append(
                f'<text x="{x:.1f}" y="{py(0) - 6:.1f}" text-anchor="middle" '
                f'fill="{CONTROL}">?<title>too few held out</title></text>'
            )
            continue
        parts.append(
            f'<line x1="{x:.1f}" y1="{py(low):.1f}" x2="{x:.1f}" y2="{py(high):.1f}" '
            f'stroke="{TREATED}" stroke-width="2"/>'
            f'<circle cx="{x:.1f}" cy="{py(observed):.1f}" r="4" fill="{TREATED}">'
            f"<title>{escape(label)}: observed {observed:+.4f} [{low:+.4f}, {high:+.4f}]"
            "</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)
