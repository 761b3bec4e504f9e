"""``python -m benchmarks.soak``: dualcorn under honest traffic and low-rate attacks, for long.

Two dualcorn processes with default settings (one ASGI, one WSGI app from
``benchmarks/apps/soak_app.py``) serve :mod:`benchmarks.soak_traffic`'s honest clients and
issue 12's attacks for ``--minutes`` (30 by default).  Every ``--interval`` seconds (10) the
servers' RSS and CPU share are sampled with the requests served and errors so far.  The result
goes to ``benchmarks/results/soak.md`` (tables, and the closing note: RSS first and last,
requests served, errors) and ``soak.svg`` (RSS over time).  Everything runs on 127.0.0.1; every
client operation has a timeout, and the run stops by itself about a minute after its end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass
from html import escape
from pathlib import Path

from benchmarks import report
from benchmarks.procs import (
    CLIENT_CORE,
    ServerFailed,
    ServerProcess,
    exit_cleanly_on_signals,
    free_port,
    rss_bytes,
)
from benchmarks.soak_traffic import ATTACKS, HONEST, Tally, Targets

RESULTS = Path(__file__).resolve().parent / "results"
MIB = 1024 * 1024
APP = "benchmarks.apps.soak_app"


@dataclass
class Sample:
    seconds: float
    rss: tuple[int, int]  # ASGI, WSGI server: bytes
    cpu: tuple[float, float]  # share of one core since the previous sample
    served: int
    errors: int


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process (fields 14 and 15 of /proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(
    servers: tuple[ServerProcess, ServerProcess], args: argparse.Namespace, tally: Tally
) -> list[Sample]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    targets = Targets(servers[0].port, servers[1].port, start + args.minutes * 60, args.period)
    samples: list[Sample] = []

    async def sample() -> None:
        previous = [cpu_seconds(s.pid) for s in servers]
        last = loop.time()
        while True:
            now = loop.time()
            cpu = [cpu_seconds(s.pid) for s in servers]
            wall = max(now - last, 1e-9)
            samples.append(
                Sample(
                    now - start,
                    (rss_bytes(servers[0].pid), rss_bytes(servers[1].pid)),
                    ((cpu[0] - previous[0]) / wall, (cpu[1] - previous[1]) / wall),
                    sum(tally.served.values()),
                    sum(tally.errors.values()),
                )
            )
            previous, last = cpu, now
            for server in servers:
                server.check_alive()
            if now >= targets.deadline:
                return
            await asyncio.sleep(min(args.interval, max(0.0, targets.deadline - loop.time())))

    traffic = [
        asyncio.ensure_future(job)
        for job in (*HONEST(targets, tally, args.pause), *ATTACKS(targets, tally))
    ]
    try:
        await sample()
    finally:
        # Honest clients stop at the deadline; attacks in their last run get a minute.
        _done, pending = await asyncio.wait(traffic, timeout=60)
        for job in pending:
            job.cancel()
        await asyncio.wait(traffic)
    for job in traffic:
        if not job.cancelled() and job.exception() is not None:
            tally.errors["traffic task failed"] += 1
            tally.last_error["traffic task failed"] = repr(job.exception())[:120]
    return samples


# --- Report ---------------------------------------------------------------------------------


def _mib(size: int) -> str:
    return f"{size / MIB:.1f}"


def markdown(
    info: dict[str, object], args: argparse.Namespace, samples: list[Sample], tally: Tally,
    log_lines: tuple[int, int],
) -> str:  # fmt: skip
    first, last = samples[0], samples[-1]
    peak = [max(s.rss[i] for s in samples) for i in (0, 1)]
    served, errors = sum(tally.served.values()), sum(tally.errors.values())
    lines = [
        "# dualcorn soak test",
        "",
        f"Run {info['date']} with `python -m benchmarks.soak --minutes {args.minutes:g}` on "
        f"{info['cpu']} ({info['cores']} cores), Python {info['python']}; dualcorn "
        f"{report._dualcorn_version()}. Both servers run with default settings (the command "
        "line names only the app and a port), access log off, on core 0; the clients on core 1.",
        "",
        "## Result",
        "",
        f"- ASGI server RSS: {_mib(first.rss[0])} MiB first, {_mib(last.rss[0])} MiB last, "
        f"{_mib(peak[0])} MiB peak.",
        f"- WSGI server RSS: {_mib(first.rss[1])} MiB first, {_mib(last.rss[1])} MiB last, "
        f"{_mib(peak[1])} MiB peak.",
        f"- Honest operations served: {served:,}; errors: {errors:,}.",
        f"- Server log lines over the run: ASGI {log_lines[0]}, WSGI {log_lines[1]}.",
        "",
        "![RSS over time](soak.svg)",
        "",
        "## Honest traffic",
        "",
        "| operation | served | errors | slowest served (s) | last error |",
        "|---|---:|---:|---:|---|",
    ]
    for name in sorted(set(tally.served) | set(tally.errors)):
        error = tally.last_error.get(name, "").replace("|", "/")
        slowest = tally.slowest.get(name, 0.0)
        lines.append(
            f"| {name} | {tally.served[name]:,} | {tally.errors[name]:,} | {slowest:.2f} | "
            f"{error} |"
        )
    lines += ["", "## Attacks (what the server did)", "", "| attack | outcomes |", "|---|---|"]
    for name, outcomes in sorted(tally.attacks.items()):
        text = "; ".join(f"{what}: {count}" for what, count in outcomes.most_common())
        lines.append(f"| {name} | {text.replace('|', '/')} |")
    lines += [
        "",
        f"## Samples (every {args.interval:g} s)",
        "",
        "| time (s) | ASGI RSS (MiB) | WSGI RSS (MiB) | ASGI CPU | WSGI CPU | served | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in samples:
        lines.append(
            f"| {s.seconds:.0f} | {_mib(s.rss[0])} | {_mib(s.rss[1])} | {s.cpu[0]:.0%} | "
            f"{s.cpu[1]:.0%} | {s.served:,} | {s.errors:,} |"
        )
    lines.append("")
    return "\n".join(lines)


def chart(samples: list[Sample], title: str) -> str:
    """An SVG line chart of both servers' RSS over the run."""
    width, height, left, right, top, bottom = 860, 360, 70, 20, 50, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    span = max(samples[-1].seconds, 1.0)
    top_mib = max(max(s.rss) for s in samples) / MIB
    steps = [m * 10.0**k for k in range(1, 7) for m in (1, 2, 5)]
    scale = next((step for step in steps if step >= top_mib * 1.15), steps[-1])
    font = "font-family='Helvetica, Arial, sans-serif'"

    def x(seconds: float) -> float:
        return left + plot_w * seconds / span

    def y(size: int) -> float:
        return top + plot_h * (1 - size / MIB / scale)

    def text(px: float, py: float, body: str, anchor: str = "middle", size: int = 11) -> str:
        return (
            f"<text x='{px:.1f}' y='{py:.1f}' {font} font-size='{size}' "
            f"text-anchor='{anchor}' fill='#222'>{escape(body)}</text>"
        )

    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}'>",
        f"<rect width='{width}' height='{height}' fill='white'/>",
        text(width / 2, 22, title, size=15),
        text(width / 2, 38, "resident memory (MiB) of each server process over the run", size=11),
    ]
    for i in range(5):
        value = scale * i / 4
        py = top + plot_h * (1 - i / 4)
        parts.append(f"<line x1='{left}' y1='{py:.1f}' x2='{left + plot_w}' y2='{py:.1f}' "
                     "stroke='#ddd'/>")  # fmt: skip
        parts.append(text(left - 6, py + 4, f"{value:g}", anchor="end"))
    for i in range(6):
        seconds = span * i / 5
        parts.append(text(x(seconds), top + plot_h + 18, f"{seconds / 60:.1f} min"))
    for index, (name, colour) in enumerate((("ASGI", "#1f77b4"), ("WSGI", "#d62728"))):
        points = " ".join(f"{x(s.seconds):.1f},{y(s.rss[index]):.1f}" for s in samples)
        parts.append(f"<polyline points='{points}' fill='none' stroke='{colour}' "
                     "stroke-width='2'/>")  # fmt: skip
        legend_x = left + 10 + index * 110
        parts.append(f"<rect x='{legend_x}' y='{top + 6}' width='14' height='4' "
                     f"fill='{colour}'/>")  # fmt: skip
        parts.append(text(legend_x + 20, top + 12, f"{name} server", anchor="start"))
    parts.append(f"<line x1='{left}' y1='{top}' x2='{left}' y2='{top + plot_h}' stroke='#999'/>")
    parts += ["</svg>", ""]
    return "\n".join(parts)


# --- Command line ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the run (30)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--period", type=float, default=60.0, help="seconds between attacks")
    parser.add_argument(
        "--pause", type=float, default=0.02, help="seconds between two operations of a client"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="directory for the results")
    parser.add_argument("--note", default="", help="a line put at the top of soak.md")
    return parser


def main() -> int:
    args = _parser().parse_args()
    if args.minutes < 1:
        print("--minutes must be at least 1 (attacks run once a period)", file=sys.stderr)
        return 2
    exit_cleanly_on_signals()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > CLIENT_CORE:
        os.sched_setaffinity(0, {CLIENT_CORE})  # the clients here, the servers on core 0
    tally = Tally()
    python = sys.executable
    argv = [python, "-m", "dualcorn", "--no-access-log", "--host", "127.0.0.1"]
    asgi = ServerProcess([*argv, f"{APP}:asgi_app", "--port", str(port := free_port())], port)
    wsgi = ServerProcess([*argv, f"{APP}:wsgi_app", "--port", str(port := free_port())], port)
    started = time.monotonic()
    try:
        with asgi, wsgi:
            asgi.wait_ready()
            wsgi.wait_ready()
            samples = asyncio.run(drive((asgi, wsgi), args, tally))
            log_lines = (len(asgi.log_text().splitlines()), len(wsgi.log_text().splitlines()))
    except ServerFailed as exc:
        print(f"soak: a server failed: {exc}", file=sys.stderr)
        return 1
    args.output.mkdir(parents=True, exist_ok=True)
    text = markdown(report.machine(), args, samples, tally, log_lines)
    if args.note:
        text = text.replace("\n\n", f"\n\n> {args.note}\n\n", 1)
    (args.output / "soak.md").write_text(text)
    title = f"dualcorn soak: {args.minutes:g} minutes of honest traffic and attacks"
    (args.output / "soak.svg").write_text(chart(samples, title))
    with contextlib.suppress(IndexError):
        print(text.split("## Result", 1)[1].split("## Honest", 1)[0].strip())
    print(f"soak: done in {time.monotonic() - started:.0f} s; see {args.output / 'soak.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
