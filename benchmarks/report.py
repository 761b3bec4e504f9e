"""The run's record: machine description, per-scenario Markdown tables and a JSON dump.

Ratios compare each server with dualcorn in the same scenario and the same run.  The headline
is CPU per request, ``server us / dualcorn us`` (above 1.00 the peer spends more CPU on a
request: dualcorn is cheaper); beside it ``server req/s / dualcorn req/s`` (above 1.00 the
peer is faster).  For the idle scenarios ``server peak RSS / dualcorn peak RSS``.

``chart`` draws CPU per request as a grouped horizontal bar chart in plain SVG (no plotting
library): one group per throughput scenario, one bar per server in a fixed colour, a whisker
for the rounds' min-max.  Scenarios differ by orders of magnitude (13 bytes versus 1 MiB), so
each group is scaled to its own most expensive server and every bar carries its numbers (CPU
per request and req/s); a failed server gets a label instead.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import re
import subprocess
from html import escape
from pathlib import Path
from typing import Any

from benchmarks import targets
from benchmarks.catalog import SERVERS, Scenario
from benchmarks.h2load import h2load_version
from benchmarks.procs import ROOT
from benchmarks.runner import BUSY, Row, Settings

__all__ = ["chart", "machine", "markdown", "write_json"]

REFERENCE = "dualcorn"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return 0.0


def _dualcorn_version() -> str:
    """The checkout under test (servers import it from the repository root, not site-packages)."""
    source = (ROOT / "dualcorn" / "__init__.py").read_text()
    found = re.search(r"__version__\s*=\s*[\"']([^\"']+)", source)
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        commit = done.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return f"{found[1] if found else '?'} ({commit or 'this checkout'})"


def _version(package: str) -> str:
    if package == "dualcorn":
        return _dualcorn_version()
    if package == "nginx":
        return _nginx_version()
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _nginx_version() -> str:
    """``nginx -v`` prints "nginx version: nginx/1.22.1" on stderr; not a Python package."""
    try:
        done = subprocess.run(["nginx", "-v"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    return done.stderr.strip().rpartition("/")[2] or "?"


def _wrk_version() -> str:
    try:
        done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    return (done.stdout or done.stderr).split("Copyright")[0].strip() or "unknown"


def machine() -> dict[str, Any]:
    """What the numbers were measured on; printed above every table."""
    packages = sorted({spec.package for spec in SERVERS.values()} | {"uvloop", "httptools"})
    packages += ["h11", "fastapi", "starlette", "litestar", "flask", "django"]
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(_ram_gib(), 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": {name: _version(name) for name in packages},
        "wrk": _wrk_version(),
        "h2load": h2load_version(),
    }


def _mib(size: int) -> str:
    return f"{size / 1024**2:.1f} MiB" if size else "-"


def _ratio(value: float | None, reference: float | None) -> str:
    if not value or not reference:
        return "n/a"
    return f"{value / reference:.2f}"


def _name(row: Row) -> str:
    if row.busy > BUSY:
        return f"{row.server} (busy machine: {row.busy:.0%} CPU elsewhere)"
    return row.server


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _spread(values: list[float], fmt: str) -> str:
    """The rounds' min-max, or "" with a single round."""
    if len(values) < 2:
        return ""
    return f" ({format(min(values), fmt)}-{format(max(values), fmt)})"


def _reference(rows: list[Row], attribute: str) -> float | None:
    for r in rows:
        if r.server == REFERENCE and r.status == "ok":
            value: float | None = getattr(r, attribute)
            return value
    return None


def _h2_settings(
    info: dict[str, Any], settings: Settings, results: list[tuple[Scenario, list[Row]]]
) -> list[str]:
    if not any(s.protocol == "h2" for s, _ in results):
        return []
    return [
        f"- HTTP/2 scenarios: {info.get('h2load', 'h2load')} `-t1 -c{settings.h2_connections} "
        f"-m{settings.h2_streams} -D<duration> -T10` (h2c with prior knowledge, or TLS with "
        "ALPN h2) instead of wrk; req/s is the requests answered over the span from the first "
        "request's start to the last one's end, p50/p99 from h2load's per-request log; errors "
        "are h2load's failed streams."
    ]


def _throughput_table(rows: list[Row]) -> list[str]:
    ref_rps, ref_cpu = _reference(rows, "rps"), _reference(rows, "cpu_us")
    out = [
        "| server | CPU/req (min-max) | CPU ratio to dualcorn | req/s (min-max) "
        "| req/s ratio to dualcorn | p50 | p99 | peak RSS | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.status != "ok" or r.rps is None or r.cpu_us is None:
            out.append(f"| {_name(r)} | failed: {_cell(r.reason)} | | | | | | | |")
            continue
        errors = f"{r.errors}" + (f" (+{r.non_2xx} non-2xx)" if r.non_2xx else "")
        out.append(
            f"| {_name(r)} | {r.cpu_us:.1f} us{_spread(r.rounds_cpu_us, '.1f')} "
            f"| {_ratio(r.cpu_us, ref_cpu)} "
            f"| {r.rps:,.0f}{_spread(r.rounds_rps, ',.0f')} | {_ratio(r.rps, ref_rps)} "
            f"| {r.p50_ms:.2f} ms | {r.p99_ms:.2f} ms | {_mib(r.peak_rss)} | {errors} |"
        )
    return out


def _headline(results: list[tuple[Scenario, list[Row]]]) -> list[str]:
    """One line per throughput scenario: every server's CPU per request and its ratio."""
    groups = [(s, rows) for s, rows in results if s.kind == "throughput" and rows]
    servers = [name for name in SERVERS if any(r.server == name for _, rs in groups for r in rs)]
    if not groups or not servers:
        return []
    out = [
        "## Headline: server CPU per request, ratio to dualcorn",
        "",
        "Microseconds of server CPU (user + system, whole process tree) per completed "
        "request, median over rounds; in brackets the ratio to dualcorn (below 1.00 the "
        "peer is cheaper, above 1.00 dualcorn is). Lower is better.",
        "",
        "| scenario | " + " | ".join(servers) + " |",
        "|---|" + "---:|" * len(servers),
    ]
    for scenario, rows in groups:
        ref = _reference(rows, "cpu_us")
        by_name = {r.server: r for r in rows}
        cells = []
        for name in servers:
            r = by_name.get(name)
            if r is None:
                cells.append("")
            elif r.status != "ok" or r.cpu_us is None:
                cells.append("failed")
            else:
                cells.append(f"{r.cpu_us:.1f} us ({_ratio(r.cpu_us, ref)})")
        out.append(f"| {scenario.name} | " + " | ".join(cells) + " |")
    return [*out, ""]


def _idle_table(rows: list[Row]) -> list[str]:
    ref = next((r.peak_rss for r in rows if r.server == REFERENCE and r.status == "ok"), None)
    out = [
        "| server | answered | errors | still open | open time | start RSS | peak RSS "
        "| RSS ratio to dualcorn |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.status != "ok" or r.idle is None:
            out.append(f"| {_name(r)} | failed: {_cell(r.reason)} | | | | | | |")
            continue
        i = r.idle
        kinds = ", ".join(f"{n:,} {kind}" for kind, n in sorted(i.error_kinds.items()))
        errors = f"{i.errors:,}" + (f" ({kinds})" if kinds else "")
        out.append(
            f"| {_name(r)} | {i.answered:,} / {i.wanted:,} | {errors} | {i.still_open:,} "
            f"| {i.open_seconds:.1f} s | {_mib(r.start_rss)} | {_mib(r.peak_rss)} "
            f"| {_ratio(r.peak_rss, ref)} |"
        )
    return out


def markdown(
    info: dict[str, Any],
    settings: Settings,
    results: list[tuple[Scenario, list[Row]]],
    note: str = "",
) -> str:
    lines = ["# dualcorn benchmarks", ""]
    if note:
        lines += [f"> {note}", ""]
    took = info.get("elapsed_s")
    lines += [
        f"Run {info['date']} with `python -m benchmarks` on {info['python']}, {info['cpu']} "
        f"({info['cores']} cores)" + (f"; the run took {took / 60:.0f} min." if took else "."),
        "",
        *targets.markdown(results),
        "## Machine",
        "",
        f"- CPU: {info['cpu']}, {info['cores']} cores; RAM {info['ram_gib']} GiB",
        f"- OS: {info['os']}; Python: {info['python']}; load generator: {info['wrk']}",
        "- Packages: " + ", ".join(f"{k} {v}" for k, v in info["packages"].items()),
        f"- Settings: {settings.rounds} round(s) x {settings.duration:g} s after "
        f"{settings.warmup:g} s warm-up, {settings.connections} connections, server on core 0 "
        "and client on core 1 (taskset); in a throughput scenario all servers run at once and "
        "take turns round by round (A B C, A B C); CPU/req, req/s, p50 and p99 are medians "
        "over rounds, in brackets the rounds' min-max; peak RSS sums the server process and "
        'its children. A server marked "busy machine" had other processes using more than '
        f"{BUSY:.0%} of the CPU before or during one of its rounds.",
        *_h2_settings(info, settings, results),
        "",
        *_headline(results),
        "## Servers",
        "",
    ]
    lines += [f"- **{spec.name}**: {spec.note}" for spec in SERVERS.values()]
    if any(s.protocol == "h2" for s, _ in results):
        lines += ["", "HTTP/2 per-connection caps (h2load counts the streams of a connection "
                  "a server ends as failed, and does not reconnect):", ""]  # fmt: skip
        lines += [f"- **{spec.name}**: {spec.h2_caps}" for spec in SERVERS.values() if spec.h2_caps]
    for scenario, rows in results:
        lines += ["", f"## {scenario.name}", "", f"{scenario.description}.", ""]
        table = _idle_table if scenario.kind == "idle" else _throughput_table
        lines += table(rows)
    lines.append("")
    return "\n".join(lines)


def write_json(
    path: Path,
    info: dict[str, Any],
    settings: Settings,
    results: list[tuple[Scenario, list[Row]]],
    note: str = "",
) -> None:
    data = {
        "note": note,
        "machine": info,
        "settings": dataclasses.asdict(settings),
        "scenarios": {
            scenario.name: {
                **dataclasses.asdict(scenario),
                "rows": [dataclasses.asdict(row) for row in rows],
            }
            for scenario, rows in results
        },
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


PALETTE = (
    "#d62728",
    "#ff9896",
    "#1f77b4",
    "#aec7e8",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
WIDTH = 900
LABEL = 150  # the server-name column
BAR_AREA = 520
BAR = 14
GAP = 4
HEADER = 26
FONT = "font-family='Helvetica, Arial, sans-serif'"


def _colour(server: str) -> str:
    names = list(SERVERS)
    index = names.index(server) if server in names else len(names)
    return PALETTE[index % len(PALETTE)]


def _text(
    x: float,
    y: float,
    body: str,
    *,
    size: int = 12,
    anchor: str = "start",
    weight: str = "normal",
    fill: str = "#222",
) -> str:
    return (
        f"<text x='{x:.1f}' y='{y:.1f}' {FONT} font-size='{size}' text-anchor='{anchor}' "
        f"font-weight='{weight}' fill='{fill}'>{escape(body)}</text>"
    )


def _whisker(values: list[float], worst: float, y: float) -> list[str]:
    """A line from the rounds' minimum to their maximum across the middle of the bar."""
    if len(values) < 2:
        return []
    low, high = (LABEL + BAR_AREA * v / worst for v in (min(values), max(values)))
    middle = y + BAR / 2
    return [
        f"<line x1='{low:.1f}' y1='{middle:.1f}' x2='{high:.1f}' y2='{middle:.1f}' "
        "stroke='#222' stroke-width='1.5'/>",
        *(
            f"<line x1='{x:.1f}' y1='{y + 3:.1f}' x2='{x:.1f}' y2='{y + BAR - 3:.1f}' "
            "stroke='#222' stroke-width='1.5'/>"
            for x in (low, high)
        ),
    ]


def chart(results: list[tuple[Scenario, list[Row]]], title: str) -> str:
    """The whole SVG document for the throughput scenarios in ``results``."""
    groups = [(s, rows) for s, rows in results if s.kind == "throughput" and rows]
    parts: list[str] = []
    y = 48.0
    parts.append(_text(WIDTH / 2, 22, title, size=15, anchor="middle", weight="bold"))
    parts.append(
        _text(
            WIDTH / 2,
            38,
            "server CPU per request (us), lower is better; whisker: rounds' min-max; "
            "each scenario scaled to its most expensive server",
            size=11,
            anchor="middle",
            fill="#555",
        )
    )
    for scenario, rows in groups:
        y += HEADER
        parts.append(_text(10, y - 8, scenario.name, size=13, weight="bold"))
        ok = [r for r in rows if r.status == "ok" and r.cpu_us]
        worst = max((max([r.cpu_us or 0.0, *r.rounds_cpu_us]) for r in ok), default=0.0) or 1.0
        for row in rows:
            middle = y + BAR / 2 + 4
            parts.append(_text(LABEL - 8, middle, row.server, size=11, anchor="end"))
            if row in ok and row.cpu_us and row.rps:
                length = max(1.0, BAR_AREA * row.cpu_us / worst)
                parts.append(
                    f"<rect x='{LABEL}' y='{y:.1f}' width='{length:.1f}' "
                    f"height='{BAR}' fill='{_colour(row.server)}'/>"
                )
                parts += _whisker(row.rounds_cpu_us, worst, y)
                label = f"{row.cpu_us:.1f} us/req, {row.rps:,.0f} req/s"
                end = LABEL + BAR_AREA * max([row.cpu_us, *row.rounds_cpu_us]) / worst
                parts.append(_text(end + 5, middle, label, size=11))
            else:
                parts.append(_text(LABEL + 5, middle, "failed", size=11, fill="#b00"))
            y += BAR + GAP
    height = y + 16
    head = (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height:.0f}' "
        f"viewBox='0 0 {WIDTH} {height:.0f}'>"
    )
    background = f"<rect width='{WIDTH}' height='{height:.0f}' fill='white'/>"
    axis = f"<line x1='{LABEL}' y1='48' x2='{LABEL}' y2='{y:.0f}' stroke='#999' stroke-width='1'/>"
    return "\n".join([head, background, axis, *parts, "</svg>", ""])
