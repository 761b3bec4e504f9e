"""The README's speed table, written from a run's ``latest.json`` between two markers.

``python -m benchmarks`` calls :func:`update` after a run written to ``benchmarks/results/``
(the default), so the README always shows the run that ``results/latest.md`` describes;
``python -m benchmarks.readme`` rewrites it from the last run by hand.  Only the text between
``<!-- speed-table:start -->`` and ``<!-- speed-table:end -->`` changes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.procs import ROOT

__all__ = ["END", "START", "table", "update"]

START, END = "<!-- speed-table:start -->", "<!-- speed-table:end -->"
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"

SCENARIOS = [
    ("asgi_hello", "ASGI hello"),
    ("asgi_hello_log", "ASGI hello, access log on"),
    ("wsgi_hello", "WSGI hello"),
    ("fastapi_json", "FastAPI JSON"),
    ("starlette_json", "Starlette JSON"),
    ("litestar_json", "Litestar JSON"),
    ("flask_json", "Flask JSON"),
    ("django_view", "Django view (WSGI)"),
]
SERVERS = [
    ("dualcorn", "dualcorn"),
    ("uvicorn", "uvicorn[standard]"),
    ("uvicorn-zttp", "uvicorn `--http zttp`"),
    ("granian", "granian (Rust)"),
    ("hypercorn", "hypercorn"),
    ("waitress", "waitress"),
    ("gunicorn", "gunicorn gthread"),
]


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return ""
    if row.get("status") != "ok" or not row.get("rps"):
        return "failed"
    if not row.get("cpu_us"):  # a run from before CPU per request was recorded
        return f"{row['rps']:,.0f}/s"
    return f"{row['cpu_us']:.1f} us ({row['rps']:,.0f}/s)"


def _best(rows: list[dict[str, Any] | None]) -> set[int]:
    """Indexes of a row's best cells: the least CPU per request (the headline), or the most
    req/s in a run from before CPU was recorded; every cell of a tie, none if none ran."""
    ok = [(i, r) for i, r in enumerate(rows) if r and r.get("status") == "ok" and r.get("rps")]
    if not ok:
        return set()
    if all(r.get("cpu_us") for _, r in ok):
        least = min(r["cpu_us"] for _, r in ok)
        return {i for i, r in ok if round(r["cpu_us"], 1) == round(least, 1)}
    most = max(r["rps"] for _, r in ok)
    return {i for i, r in ok if round(r["rps"]) == round(most)}


def table(data: dict[str, Any]) -> str:
    """The Markdown between the markers for one run's JSON."""
    machine, settings = data["machine"], data["settings"]
    scenarios = data["scenarios"]
    lines = [
        f"Server CPU per request (lower is better; the best of each row in bold) and, in "
        f"brackets, requests per second; one "
        f"process each, server on core 0 and wrk on core 1, {settings['connections']} "
        f"connections, median of {settings['rounds']} round(s) of {settings['duration']:g} s "
        f"with the servers taking turns; {machine['cpu']} ({machine['cores']} cores), "
        f"{machine['python']}, {machine['date']}. Every number, the spread over rounds, "
        "latency and memory: [results/latest.md](benchmarks/results/latest.md) "
        "(`python -m benchmarks` to reproduce).",
        "",
    ]
    if data.get("note"):
        lines += [f"> {data['note']}", ""]
    present = [
        (name, label)
        for name, label in SERVERS
        if any(r["server"] == name for s in scenarios.values() for r in s["rows"])
    ]
    lines += [
        "| scenario | " + " | ".join(label for _, label in present) + " |",
        "|---|" + "---:|" * len(present),
    ]
    for name, label in SCENARIOS:
        if name not in scenarios:
            continue
        rows = {r["server"]: r for r in scenarios[name]["rows"]}
        found = [rows.get(server) for server, _ in present]
        best = _best(found)
        cells = [f"**{_cell(row)}**" if i in best else _cell(row) for i, row in enumerate(found)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def update(results: Path = RESULTS, readme: Path = README) -> bool:
    """Rewrite the README's table from ``results/latest.json``; False if a marker is missing."""
    data = json.loads((results / "latest.json").read_text())
    text = readme.read_text()
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        return False
    new = text[: start + len(START)] + "\n" + table(data) + "\n" + text[end:]
    if new != text:
        readme.write_text(new)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.readme", description=__doc__)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    if not update(args.results, args.readme):
        print(f"{args.readme}: no {START} ... {END} markers", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
