"""``python -m benchmarks``: every selected server in every selected scenario.

In a throughput scenario all servers are started at once and take turns, round by round
(A B C, A B C, ...); an idle scenario runs one server at a time (see README.md).  The results
go to ``benchmarks/results/latest.{md,json,svg}``.  A server that fails shows up as
"failed: reason" in its row; the run goes on.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import time
from pathlib import Path

from benchmarks import plan, readme, report
from benchmarks.catalog import SCENARIOS, SERVERS, Scenario
from benchmarks.procs import CLIENT_CORE, exit_cleanly_on_signals
from benchmarks.runner import Row, Settings, run_one, wrk_available
from benchmarks.turns import run_turns

RESULTS = Path(__file__).resolve().parent / "results"
# --quick: every scenario and every server, briefly (about 25 minutes on 2 cores). What it
# trades: two rounds instead of three (a spread, but a thin one), 3 s of load (latency
# percentiles from fewer requests), 1 s of warm-up, 2,000 idle connections instead of 10,000,
# and at most 10 s of waiting for a quiet machine per round.
QUICK = {"rounds": 2, "duration": 3.0, "warmup": 1.0, "idle_count": 2000, "quiet_wait": 10.0}
QUICK_TEXT = "2 rounds of 3 s after 1 s warm-up, 2,000 idle connections, 10 s quiet wait"


def _names(value: str, known: dict[str, object], what: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(unknown)}; choose from {', '.join(known)}"
        )
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--scenario",
        default=",".join(SCENARIOS),
        help=f"comma-separated, from: {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--server", default=",".join(SERVERS), help=f"comma-separated, from: {', '.join(SERVERS)}"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="measured rounds, servers taking turns (median)"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per round")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--idle-connections",
        type=int,
        default=10_000,
        help="connections opened by the idle_keepalive scenarios",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"every scenario and server in about 25 minutes: {QUICK_TEXT} (overrides those)",
    )
    parser.add_argument(
        "--plan",
        action="store_true",
        help="print what would run and how long it should take, and exit",
    )
    parser.add_argument(
        "--no-readme",
        action="store_true",
        help="leave README.md's speed table alone (it is rewritten when --output is results/)",
    )
    parser.add_argument(
        "--loadgen",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="wrk when installed (auto), or the built-in Python generator",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS,
        help="directory for latest.md, latest.json and latest.svg",
    )
    parser.add_argument(
        "--h2-connections", type=int, default=16, help="h2load -c in the HTTP/2 scenarios (16)"
    )
    parser.add_argument(
        "--h2-streams",
        type=int,
        default=32,
        help="h2load -m: streams in flight per connection in the HTTP/2 scenarios (32)",
    )
    parser.add_argument("--note", default="", help="a line quoted at the top of latest.md")
    parser.add_argument(
        "--basename",
        default="latest",
        help="file name of the results, without suffix (latest: latest.md, .json, .svg)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="seconds to wait, at most, before each round for other processes to leave",
    )
    return parser


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _keep_off_server_core() -> None:
    """Run the harness (its /proc samplers) on the client core, away from the servers."""
    # Children inherit the mask, so only when taskset re-pins every server to its core.
    if (os.cpu_count() or 1) > CLIENT_CORE and hasattr(os, "sched_setaffinity"):
        if shutil.which("taskset") is None:
            return
        os.sched_setaffinity(0, {CLIENT_CORE})


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    exit_cleanly_on_signals()
    args = parser.parse_args(argv)
    try:
        scenarios = [SCENARIOS[n] for n in _names(args.scenario, dict(SCENARIOS), "scenario")]
        servers = [SERVERS[n] for n in _names(args.server, dict(SERVERS), "server")]
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.loadgen == "wrk" and not wrk_available():
        parser.error("--loadgen wrk: wrk is not installed (apt-get install wrk)")
    settings = Settings(
        rounds=args.rounds,
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        idle_count=args.idle_connections,
        use_wrk=args.loadgen != "python",
        quiet_wait=args.quiet_wait,
        h2_connections=args.h2_connections,
        h2_streams=args.h2_streams,
    )
    if args.quick:
        settings = dataclasses.replace(settings, **QUICK)
    if args.plan:
        print(plan.describe(scenarios, servers, settings))
        return 0
    began = time.monotonic()
    _log(plan.describe(scenarios, servers, settings, short=True))
    _keep_off_server_core()
    results: list[tuple[Scenario, list[Row]]] = []
    for scenario in scenarios:
        specs = [spec for spec in servers if spec.serves(scenario)]  # waitress: no TLS
        if scenario.kind == "throughput":
            results.append((scenario, run_turns(specs, scenario, settings, _log)))
            continue
        rows: list[Row] = []
        for spec in specs:
            started = time.monotonic()
            print(f"{scenario.name:<20} {spec.name:<13}", end=" ", file=sys.stderr, flush=True)
            row = run_one(spec, scenario, settings)
            summary = (
                f"failed: {row.reason}"
                if row.status != "ok"
                else f"{row.rps:,.0f} req/s"
                if row.rps is not None
                else f"peak RSS {row.peak_rss / 1024**2:.1f} MiB"
            )
            print(f"{summary}  [{time.monotonic() - started:.0f} s]", file=sys.stderr)
            rows.append(row)
        results.append((scenario, rows))
    args.output.mkdir(parents=True, exist_ok=True)
    info = report.machine()
    info["elapsed_s"] = round(time.monotonic() - began)
    base = args.output / args.basename
    base.with_suffix(".md").write_text(report.markdown(info, settings, results, args.note))
    report.write_json(base.with_suffix(".json"), info, settings, results, args.note)
    base.with_suffix(".svg").write_text(report.chart(results, "dualcorn and peers"))
    print(f"wrote {base}.{{md,json,svg}}", file=sys.stderr)
    if (
        args.output.resolve() == RESULTS
        and args.basename == "latest"
        and not args.no_readme
        and readme.update(RESULTS)
    ):
        print("wrote README.md's speed table from results/latest.json", file=sys.stderr)
    print(f"the run took {info['elapsed_s'] / 60:.1f} min", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
