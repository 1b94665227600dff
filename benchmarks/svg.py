"""A horizontal bar chart as plain SVG: no plotting library to install for one picture."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

ROW = 26
LABEL_WIDTH = 330
BAR_WIDTH = 430
MARGIN = 12


def bars(title: str, rows: Sequence[tuple[str, float, float]], unit: str,
         note: str = "") -> str:
    """One bar per ``(label, median, p90)``: the bar reaches the median, a whisker the p90,
    on a linear scale from zero, so that the lengths compare as the times do."""
    top = max(p90 for _, _, p90 in rows)
    height = MARGIN * 2 + ROW * (len(rows) + 2)
    width = LABEL_WIDTH + BAR_WIDTH + 110
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="13">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{MARGIN}" y="{MARGIN + 14}" font-weight="bold">{escape(title)}</text>',
    ]
    for index, (label, middle, high) in enumerate(rows):
        y = MARGIN + ROW * (index + 1) + 6
        bar = BAR_WIDTH * middle / top
        whisker = BAR_WIDTH * high / top
        parts += [
            f'<text x="{LABEL_WIDTH - 8}" y="{y + 14}" text-anchor="end">{escape(label)}</text>',
            f'<rect x="{LABEL_WIDTH}" y="{y + 3}" width="{bar:.1f}" height="{ROW - 8}" '
            f'fill="#4878a8"/>',
            f'<line x1="{LABEL_WIDTH + bar:.1f}" y1="{y + 11}" x2="{LABEL_WIDTH + whisker:.1f}" '
            f'y2="{y + 11}" stroke="black"/>',
            f'<line x1="{LABEL_WIDTH + whisker:.1f}" y1="{y + 5}" '
            f'x2="{LABEL_WIDTH + whisker:.1f}" y2="{y + 17}" stroke="black"/>',
            f'<text x="{LABEL_WIDTH + whisker + 6:.1f}" y="{y + 14}">'
            f'{middle:.1f} {escape(unit)}</text>',
        ]
    legend_y = MARGIN + ROW * (len(rows) + 1) + 22
    legend = "bar: median; whisker: 90th percentile" + (f"; {note}" if note else "")
    parts.append(f'<text x="{MARGIN}" y="{legend_y}" fill="#555">{escape(legend)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
