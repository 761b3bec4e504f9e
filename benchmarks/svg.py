"""A grouped horizontal bar chart of requests per second, written as plain SVG.

One group per throughput scenario, one bar per server in a fixed colour.  Scenarios differ by
orders of magnitude (13 bytes versus 1 MiB), so each group is scaled to its own fastest server
and every bar carries its number; a failed server gets a label instead of a bar.
"""

from __future__ import annotations

from html import escape

from benchmarks.runner import Row
from benchmarks.scenarios import Scenario
from benchmarks.servers import SERVERS

__all__ = ["chart"]

PALETTE = ("#d62728", "#ff9896", "#1f77b4", "#aec7e8", "#2ca02c", "#9467bd", "#8c564b",
           "#7f7f7f", "#bcbd22", "#17becf")
WIDTH = 860
LABEL = 150  # the server-name column
BAR_AREA = 560
BAR = 14
GAP = 4
HEADER = 26
FONT = "font-family='Helvetica, Arial, sans-serif'"


def _colour(server: str) -> str:
    names = list(SERVERS)
    index = names.index(server) if server in names else len(names)
    return PALETTE[index % len(PALETTE)]


def _text(x: float, y: float, body: str, *, size: int = 12, anchor: str = "start",
          weight: str = "normal", fill: str = "#222") -> str:
    return (f"<text x='{x:.1f}' y='{y:.1f}' {FONT} font-size='{size}' text-anchor='{anchor}' "
            f"font-weight='{weight}' fill='{fill}'>{escape(body)}</text>")


def chart(results: list[tuple[Scenario, list[Row]]], title: str) -> str:
    """The whole SVG document for the throughput scenarios in ``results``."""
    groups = [(s, rows) for s, rows in results if s.kind == "throughput" and rows]
    parts: list[str] = []
    y = 48.0
    parts.append(_text(WIDTH / 2, 22, title, size=15, anchor="middle", weight="bold"))
    parts.append(_text(WIDTH / 2, 38, "requests per second, higher is better; each scenario "
                       "scaled to its fastest server", size=11, anchor="middle", fill="#555"))
    for scenario, rows in groups:
        y += HEADER
        parts.append(_text(10, y - 8, scenario.name, size=13, weight="bold"))
        best = max((r.rps or 0.0 for r in rows), default=0.0) or 1.0
        for row in rows:
            middle = y + BAR / 2 + 4
            parts.append(_text(LABEL - 8, middle, row.server, size=11, anchor="end"))
            if row.status == "ok" and row.rps:
                length = max(1.0, BAR_AREA * row.rps / best)
                parts.append(f"<rect x='{LABEL}' y='{y:.1f}' width='{length:.1f}' "
                             f"height='{BAR}' fill='{_colour(row.server)}'/>")
                parts.append(_text(LABEL + length + 5, middle, f"{row.rps:,.0f}", size=11))
            else:
                parts.append(_text(LABEL + 5, middle, "failed", size=11, fill="#b00"))
            y += BAR + GAP
    height = y + 16
    head = (f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height:.0f}' "
            f"viewBox='0 0 {WIDTH} {height:.0f}'>")
    background = f"<rect width='{WIDTH}' height='{height:.0f}' fill='white'/>"
    axis = (f"<line x1='{LABEL}' y1='48' x2='{LABEL}' y2='{y:.0f}' stroke='#999' "
            "stroke-width='1'/>")
    return "\n".join([head, background, axis, *parts, "</svg>", ""])
