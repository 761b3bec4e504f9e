"""Collapsed stacks in, a flame graph (plain SVG) and a top-N self-time table out.

The input is the "collapsed" format flamegraph.pl, speedscope and ``py-spy record --format
raw`` share: one line per distinct stack, frames from the outermost to the innermost joined by
``;``, then a space and a weight (samples, or microseconds of CPU).  A frame reads
``function (file:line)``.

Self time is the weight of the stacks in which a function is the innermost frame: where the
CPU actually was.  Total time is the weight of the stacks in which it appears at all.
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass, field
from html import escape

__all__ = ["Profile", "flame_svg", "parse_collapsed", "top_table"]


@dataclass
class Profile:
    stacks: Counter[tuple[str, ...]] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.stacks.values())

    def self_weights(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for stack, weight in self.stacks.items():
            found[stack[-1]] += weight
        return found

    def total_weights(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for stack, weight in self.stacks.items():
            for frame in set(stack):
                found[frame] += weight
        return found


def parse_collapsed(text: str) -> Profile:
    profile = Profile()
    for line in text.splitlines():
        stack, _, weight = line.rstrip().rpartition(" ")
        if not stack or not weight.isdigit():
            continue
        profile.stacks[tuple(stack.split(";"))] += int(weight)
    return profile


def split_frame(frame: str) -> tuple[str, str]:
    """``"run (asyncio/events.py:80)"`` -> ``("run", "asyncio/events.py:80")``."""
    name, _, where = frame.partition(" (")
    return name, where.rstrip(")")


def package(frame: str) -> str:
    """The top-level package or module a frame's file belongs to ("dualcorn", "asyncio")."""
    _name, where = split_frame(frame)
    path = where.rsplit(":", 1)[0]
    if not path or path.startswith("<"):
        return path or "?"
    if "site-packages/" in path:
        path = path.rsplit("site-packages/", 1)[1]
    elif "/lib/python3" in path:
        path = path.split("/lib/python3", 1)[1].partition("/")[2]
    head = path.lstrip("/").split("/", 1)[0]
    return head.removesuffix(".py") or "?"


def top_table(profile: Profile, limit: int = 20, unit: str = "samples") -> list[str]:
    """Markdown: the ``limit`` functions with the most self time, and self time by package."""
    total = profile.total or 1
    inclusive = profile.total_weights()
    out = [
        f"| # | function | file | self ({unit}) | self % | total % |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for rank, (frame, weight) in enumerate(profile.self_weights().most_common(limit), 1):
        name, where = split_frame(frame)
        out.append(
            f"| {rank} | `{name}` | `{where}` | {weight:,} | {100 * weight / total:.1f} "
            f"| {100 * inclusive[frame] / total:.1f} |"
        )
    by_package: Counter[str] = Counter()
    for frame, weight in profile.self_weights().items():
        by_package[package(frame)] += weight
    out += ["", "Self time by package:", "", "| package | self % |", "|---|---:|"]
    out += [
        f"| `{name}` | {100 * weight / total:.1f} |" for name, weight in by_package.most_common(15)
    ]
    return out


WIDTH = 1200
ROW = 17
FONT = "font-family='Verdana, sans-serif'"
CHAR = 6.6  # approximate width of one character at that size, to truncate labels


@dataclass
class _Node:
    name: str
    weight: int = 0
    children: dict[str, _Node] = field(default_factory=dict)


def _tree(profile: Profile) -> _Node:
    root = _Node("all")
    for stack, weight in profile.stacks.items():
        node = root
        node.weight += weight
        for frame in stack:
            node = node.children.setdefault(frame, _Node(frame))
            node.weight += weight
    return root


def _depth(node: _Node) -> int:
    return 1 + max((_depth(child) for child in node.children.values()), default=0)


def _colour(frame: str, highlight: str) -> str:
    """The server's own frames in orange-red, the rest in yellow-brown, stable per function."""
    shade = zlib.crc32(frame.encode()) % 60
    if package(frame) == highlight:
        return f"rgb(230,{80 + shade},40)"
    return f"rgb(235,{180 + shade // 2},{60 + shade})"


def flame_svg(profile: Profile, title: str, highlight: str = "dualcorn") -> str:
    """A flame graph: callers below their callees, width proportional to weight."""
    root = _tree(profile)
    total = root.weight or 1
    height = (_depth(root) + 3) * ROW
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}' "
        f"viewBox='0 0 {WIDTH} {height}'>",
        f"<rect width='{WIDTH}' height='{height}' fill='#fdfdf6'/>",
        f"<text x='{WIDTH / 2}' y='16' {FONT} font-size='14' text-anchor='middle'>"
        f"{escape(title)}</text>",
        f"<text x='{WIDTH / 2}' y='31' {FONT} font-size='11' text-anchor='middle' fill='#555'>"
        f"{escape(highlight)} frames in orange; hover a frame for its share</text>",
    ]
    minimum = total / WIDTH / 2  # narrower than half a pixel: not drawn

    def draw(node: _Node, x: float, depth: int) -> None:
        width = WIDTH * node.weight / total
        y = height - (depth + 1) * ROW
        share = 100 * node.weight / total
        label = f"{node.name} ({share:.1f} %)"
        parts.append(
            f"<g><title>{escape(label)}</title><rect x='{x:.2f}' y='{y}' width='{width:.2f}' "
            f"height='{ROW - 1}' fill='{_colour(node.name, highlight)}' rx='2'/>"
        )
        room = int((width - 6) / CHAR)
        if room >= 3:
            text = node.name if len(node.name) <= room else node.name[: room - 2] + ".."
            parts.append(
                f"<text x='{x + 3:.2f}' y='{y + ROW - 5}' {FONT} font-size='11'>"
                f"{escape(text)}</text>"
            )
        parts.append("</g>")
        child_x = x
        for child in sorted(node.children.values(), key=lambda c: c.name):
            if child.weight >= minimum:
                draw(child, child_x, depth + 1)
            child_x += WIDTH * child.weight / total

    draw(root, 0.0, 0)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
