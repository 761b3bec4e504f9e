"""Split a profile's samples into the server's share and the app's (framework's) share.

``python -m benchmarks.profile_shares results/profile-fastapi_json.txt [--cpu-us 59.7]``
reads the collapsed stacks ``benchmarks.profile`` writes and says which share of the samples
ran dualcorn's code and which ran the app's: a sample whose innermost frame is the app's
package, or the standard library called from the app (json, contextlib, typing...), is the
app's; one whose innermost frame is dualcorn's (its ``send`` called by the app included), the
event loop's or asyncio's bookkeeping for the cycle's task is the server's.  With
``--cpu-us`` (the scenario's CPU per request from ``results/latest.md``) the shares become
microseconds per request.  Used for ``results/profiles-asgi.md``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

__all__ = ["Shares", "shares"]

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]+):\d+\)$")
# Where the app's own code begins: the first frame under the cycle's call of the app.
_SERVER_PACKAGES = ("dualcorn/", "asyncio/", "uvloop/", "_weakrefset", "runpy", "<frozen runpy>")


class Shares:
    """Samples by who ran them; ``packages`` counts the app's by innermost package."""

    def __init__(self) -> None:
        self.server = 0
        self.app = 0
        self.packages: Counter[str] = Counter()
        self.server_functions: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return self.server + self.app


def _package(file: str) -> str:
    top = file.split("/", 1)[0]
    return top.removesuffix(".py")


def shares(lines: list[str]) -> Shares:
    """Count the collapsed stacks ``lines`` ("frame;frame;... COUNT") by who ran the leaf."""
    result = Shares()
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [m for m in map(_FRAME.match, stack.split(";")) if m is not None]
        if not frames:
            continue
        leaf = frames[-1]
        in_app = False
        for frame in frames:
            file = frame["file"]
            if in_app and file.startswith("dualcorn/"):
                in_app = False  # the app called the server (send, receive)
            elif frame["func"] == "run_cycle":
                in_app = True  # what run_cycle calls is the app, until it calls back
        if in_app and not leaf["file"].startswith("dualcorn/"):
            result.app += count
            result.packages[_package(leaf["file"])] += count
        else:
            result.server += count
            result.server_functions[f"{leaf['func']} ({leaf['file']})"] += count
    return result


def main(argv: list[str] | None = None) -> int:
    prog = "python -m benchmarks.profile_shares"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("collapsed", type=Path)
    parser.add_argument("--cpu-us", type=float, default=None, help="CPU us per request")
    args = parser.parse_args(argv)
    found = shares(args.collapsed.read_text().splitlines())
    if not found.total:
        print("no samples", file=sys.stderr)
        return 1
    scale = (args.cpu_us or 0) / found.total
    for name, count in (("server", found.server), ("app", found.app)):
        us = f", {count * scale:.1f} us/req" if scale else ""
        print(f"{name}: {count} samples, {100 * count / found.total:.1f} %{us}")
    for package, count in found.packages.most_common(8):
        print(f"  app {package}: {100 * count / found.total:.1f} %")
    for function, count in found.server_functions.most_common(8):
        print(f"  server {function}: {100 * count / found.total:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
