"""Tiny inline SVG charts for the HTML report: no JavaScript, no CDN, no licence to track.

Each function returns one ``<svg>`` element as a string; every text is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

INK = "#1f4e79"
MUTED = "#9db4cc"
WARN = "#b85c38"


def _num(x: float) -> str:
    return f"{x:.1f}"


def sparkline(values: Sequence[float], width: int = 160, height: int = 28,
              title: str = "") -> str:
    """A 0..1 line (e.g. fill rate per day) with its area shaded; empty input -> ''."""
    if not values:
        return ""
    n = len(values)
    step = width / max(n - 1, 1)
    pts = [(i * step, height - 2 - max(0.0, min(1.0, v)) * (height - 4))
           for i, v in enumerate(values)]
    line = " ".join(f"{_num(x)},{_num(y)}" for x, y in pts)
    area = f"0,{height} {line} {_num(pts[-1][0])},{height}"
    return (f'<svg class="spark" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img"><title>{escape(title)}</title>'
            f'<polygon points="{area}" fill="{MUTED}" opacity="0.5"/>'
            f'<polyline points="{line}" fill="none" stroke="{INK}" stroke-width="1.5"/></svg>')


def bars(items: Sequence[tuple[str, float, str]], width: int = 420, bar_height: int = 16,
         label_width: int = 160, reference: float | None = None) -> str:
    """Horizontal bars: (label, value >= 0, annotation). ``reference`` draws a dashed line
    at that value (lift 1.0); bars above it are drawn in the accent colour."""
    if not items:
        return ""
    top = max([v for _, v, _ in items] + ([reference] if reference else []) + [1e-12])
    plot = width - label_width - 110  # room for the annotation right of the longest bar
    max_chars = max(4, label_width // 7)
    height = bar_height * len(items) + 4
    out = [f'<svg class="bars" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img">']
    for i, (label, value, note) in enumerate(items):
        y = i * bar_height + 2
        w = plot * value / top
        colour = WARN if reference is not None and value > reference else INK
        short = label if len(label) <= max_chars else label[: max_chars - 1] + "…"
        out.append(f'<text x="{label_width - 6}" y="{y + bar_height - 4}" text-anchor="end" '
                   f'font-size="11">{escape(short)}<title>{escape(label)}</title></text>')
        out.append(f'<rect x="{label_width}" y="{y + 2}" width="{_num(max(w, 0.5))}" '
                   f'height="{bar_height - 4}" fill="{colour}"/>')
        out.append(f'<text x="{_num(label_width + w + 4)}" y="{y + bar_height - 4}" '
                   f'font-size="11">{escape(note)}</text>')
    if reference is not None:
        x = label_width + plot * reference / top
        out.append(f'<line x1="{_num(x)}" y1="0" x2="{_num(x)}" y2="{height}" stroke="#555" '
                   'stroke-dasharray="3,3"/>')
    out.append("</svg>")
    return "".join(out)
