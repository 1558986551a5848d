"""Small charts as inline SVG, rendered on the server (no JavaScript, nothing for a CSP to
block). Every number is formatted here and every text is escaped, so the markup is safe to
mark as such. Colours are SVG presentation attributes; pages may restyle through the
classes (``chart``, ``spark``, ``series-<name>``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

COLORS = {
    "allowed": "#2e7d32",
    "approved": "#81c784",
    "rejected": "#c62828",
    "pending": "#f9a825",
    "expired": "#9e9e9e",
    "denied": "#6d4c41",
    "shadowed": "#5c6bc0",
    "actions": "#1565c0",
    "approval_rate": "#2e7d32",
    "rejection_rate": "#c62828",
    "failure_rate": "#ef6c00",
    "decision_minutes": "#6a1b9a",
}


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _segments(values: Sequence[float | None]) -> list[list[tuple[int, float]]]:
    """Runs of consecutive known values (a None breaks the line)."""
    runs: list[list[tuple[int, float]]] = []
    current: list[tuple[int, float]] = []
    for index, value in enumerate(values):
        if value is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append((index, float(value)))
    if current:
        runs.append(current)
    return runs


def sparkline(
    values: Sequence[float | None],
    *,
    name: str,
    label: str,
    y_max: float | None = None,
    width: int = 112,
    height: int = 24,
) -> SafeString:
    """A tiny line of ``values`` (oldest first); gaps where a value is None. ``label`` is
    its accessible name and tooltip."""
    known = [v for v in values if v is not None]
    top = y_max if y_max is not None else max(known, default=0) or 1
    count = max(len(values) - 1, 1)
    pad = 2

    def point(index: int, value: float) -> tuple[float, float]:
        x = pad + index * (width - 2 * pad) / count
        y = height - pad - (min(value, top) / top) * (height - 2 * pad)
        return x, y

    color = COLORS.get(name, "#455a64")
    parts = [
        f'<svg class="spark series-{escape(name)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>"
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        f'stroke="#cfd8dc" stroke-width="1"/>'
    ]
    for run in _segments(values):
        points = " ".join(f"{_n(x)},{_n(y)}" for x, y in (point(i, v) for i, v in run))
        if len(run) == 1:
            x, y = point(*run[0])
            parts.append(f'<circle cx="{_n(x)}" cy="{_n(y)}" r="1.5" fill="{color}"/>')
        else:
            parts.append(
                f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.5"/>'
            )
    if known:
        last_index = max(i for i, v in enumerate(values) if v is not None)
        x, y = point(last_index, float(values[last_index]))
        parts.append(f'<circle cx="{_n(x)}" cy="{_n(y)}" r="2" fill="{color}"/>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 — numbers formatted and text escaped above


def _legend(names: Sequence[tuple[str, str]], y: float, width: int) -> str:
    parts, x = [], 0.0
    for name, text in names:
        color = COLORS.get(name, "#455a64")
        parts.append(
            f'<rect x="{_n(x)}" y="{_n(y)}" width="10" height="10" fill="{color}"/>'
            f'<text x="{_n(x + 14)}" y="{_n(y + 9)}" font-size="11">{escape(text)}</text>'
        )
        x += 24 + 7 * len(text)
        if x > width - 60:
            x, y = 0.0, y + 16
    return "".join(parts)


def stacked_bars(
    days: Sequence[date],
    series: Sequence[tuple[str, str, Sequence[int]]],
    *,
    label: str,
    width: int = 560,
    height: int = 170,
) -> SafeString:
    """Daily stacked bars: ``series`` is (name, legend text, one count per day)."""
    plot_height = height - 50
    totals = [sum(s[2][i] for s in series) for i in range(len(days))]
    top = max(totals, default=0) or 1
    slot = (width - 40) / max(len(days), 1)
    bar = max(slot * 0.7, 1)
    parts = [
        f'<svg class="chart chart-bars" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>"
        f'<text x="0" y="10" font-size="10">{top}</text>'
        f'<line x1="36" y1="{plot_height}" x2="{width}" y2="{plot_height}" stroke="#90a4ae"/>'
    ]
    for index, day in enumerate(days):
        x = 40 + index * slot
        y = float(plot_height)
        for name, text, counts in series:
            count = counts[index]
            if not count:
                continue
            h = count / top * (plot_height - 14)
            y -= h
            parts.append(
                f'<rect class="series-{escape(name)}" x="{_n(x)}" y="{_n(y)}" width="{_n(bar)}" '
                f'height="{_n(h)}" fill="{COLORS.get(name, "#455a64")}">'
                f"<title>{day.isoformat()}: {count} {escape(text)}</title></rect>"
            )
        if index % max(len(days) // 7, 1) == 0:
            parts.append(
                f'<text x="{_n(x)}" y="{plot_height + 12}" font-size="9">{day:%m-%d}</text>'
            )
    parts.append(_legend([(name, text) for name, text, _ in series], plot_height + 20, width))
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 — numbers formatted and text escaped above


def line_chart(
    days: Sequence[date],
    series: Sequence[tuple[str, str, Sequence[float | None]]],
    *,
    label: str,
    y_max: float | None = None,
    y_unit: str = "",
    width: int = 560,
    height: int = 150,
) -> SafeString:
    """Daily lines: ``series`` is (name, legend text, one value or None per day)."""
    plot_height = height - 46
    known = [v for _, _, values in series for v in values if v is not None]
    top = y_max if y_max is not None else (max(known, default=0) or 1)
    count = max(len(days) - 1, 1)
    top_text = f"{_n(top * 100)}%" if y_unit == "%" else f"{_n(top)}{escape(y_unit)}"
    parts = [
        f'<svg class="chart chart-lines" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>"
        f'<text x="0" y="10" font-size="10">{top_text}</text>'
        f'<line x1="36" y1="{plot_height}" x2="{width}" y2="{plot_height}" stroke="#90a4ae"/>'
    ]

    def point(index: int, value: float) -> tuple[float, float]:
        x = 40 + index * (width - 50) / count
        y = plot_height - (min(value, top) / top) * (plot_height - 14)
        return x, y

    for name, text, values in series:
        color = COLORS.get(name, "#455a64")
        for run in _segments(values):
            coords = [point(i, v) for i, v in run]
            if len(coords) > 1:
                points = " ".join(f"{_n(x)},{_n(y)}" for x, y in coords)
                parts.append(
                    f'<polyline class="series-{escape(name)}" points="{points}" fill="none" '
                    f'stroke="{color}" stroke-width="2"/>'
                )
            for (i, v), (x, y) in zip(run, coords, strict=True):
                shown = f"{_n(v * 100)}%" if y_unit == "%" else f"{_n(v)}{escape(y_unit)}"
                parts.append(
                    f'<circle cx="{_n(x)}" cy="{_n(y)}" r="2.5" fill="{color}">'
                    f"<title>{days[i].isoformat()}: {escape(text)} {shown}</title></circle>"
                )
    for index, day in enumerate(days):
        if index % max(len(days) // 7, 1) == 0:
            x, _ = point(index, 0)
            parts.append(
                f'<text x="{_n(x)}" y="{plot_height + 12}" font-size="9">{day:%m-%d}</text>'
            )
    parts.append(_legend([(name, text) for name, text, _ in series], plot_height + 20, width))
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 — numbers formatted and text escaped above
