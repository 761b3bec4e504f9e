"""``python -m benchmarks``: every selected server in every selected scenario, one at a time.

Servers run one after another under the same conditions (see README.md); the results go to
``benchmarks/results/latest.{md,json,svg}``.  A server that fails shows up as "failed: reason"
in its row; the run goes on.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks import report
from benchmarks.catalog import SCENARIOS, SERVERS, Scenario
from benchmarks.procs import exit_cleanly_on_signals
from benchmarks.runner import Row, Settings, run_one, wrk_available

RESULTS = Path(__file__).resolve().parent / "results"


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
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (median)")
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
        help="1 round of 3 s after 1 s warm-up (overrides the three above)",
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
    parser.add_argument("--note", default="", help="a line quoted at the top of latest.md")
    return parser


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
        rounds=1 if args.quick else args.rounds,
        duration=3.0 if args.quick else args.duration,
        warmup=1.0 if args.quick else args.warmup,
        connections=args.connections,
        idle_count=args.idle_connections,
        use_wrk=args.loadgen != "python",
    )
    results: list[tuple[Scenario, list[Row]]] = []
    for scenario in scenarios:
        rows: list[Row] = []
        for spec in servers:
            if scenario.interface not in spec.interfaces:
                continue
            if scenario.tls and spec.tls_flags is None:
                continue  # waitress serves no TLS itself
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
    (args.output / "latest.md").write_text(report.markdown(info, settings, results, args.note))
    report.write_json(args.output / "latest.json", info, settings, results, args.note)
    (args.output / "latest.svg").write_text(report.chart(results, "dualcorn and peers"))
    print(f"wrote {args.output}/latest.{{md,json,svg}}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
