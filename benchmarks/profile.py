"""``python -m benchmarks.profile SCENARIO``: where a server spends its CPU under load.

Starts the server (dualcorn unless ``--server``) the way ``python -m benchmarks`` does, checks
one answer, warms up, then loads it with wrk (or the built-in generator) for ``--duration``
seconds while a sampling profiler watches it:

- py-spy (``pip install py-spy``; needs ptrace, which root has) attaches to the server's
  process tree from the client core, ``--rate`` samples a second, keeping by default only the
  thread that holds the GIL: py-spy's idle detection counts a WSGI pool thread blocked in a C
  queue as busy, which would bury the profile under waiting (``--no-gil`` keeps them);
- where py-spy is missing or may not attach, the server is restarted under
  ``benchmarks.profiled_server``, an in-process sampler weighting each thread's stack by the
  CPU time it used (``--profiler inprocess`` forces it).

Writes ``results/profile-SCENARIO.svg`` (flame graph), ``.md`` (top-20 functions by self
time, self time by package) and ``.txt`` (the collapsed stacks, for flamegraph.pl or
speedscope); with another ``--server`` the names end in ``-SERVER``.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.catalog import SCENARIOS, SERVERS, Scenario
from benchmarks.flame import flame_svg, parse_collapsed, top_table
from benchmarks.loadgen import LoadResult
from benchmarks.procs import CLIENT_CORE, ServerFailed, ServerProcess, free_port, pinned
from benchmarks.runner import Settings, load, server_argv, start

RESULTS = Path(__file__).resolve().parent / "results"


class ProfilerFailed(Exception):
    """py-spy could not sample (absent, or ptrace refused)."""


class _Background:
    """The load generator running on a thread while the profiler samples."""

    def __init__(self, port: int, scenario: Scenario, settings: Settings, seconds: float) -> None:
        self.seconds = seconds
        self.result: LoadResult | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(port, scenario, settings), daemon=True
        )
        self._thread.start()

    def _run(self, port: int, scenario: Scenario, settings: Settings) -> None:
        try:
            self.result = load(port, scenario, settings, self.seconds)
        except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
            self.error = exc

    def wait(self) -> LoadResult:
        self._thread.join(self.seconds + 90)
        if self.result is None:
            raise ServerFailed(f"the load generator failed: {self.error!r}")
        return self.result


def _py_spy(server: ServerProcess, args: argparse.Namespace, out: Path) -> None:
    exe = shutil.which("py-spy")
    if exe is None:
        raise ProfilerFailed("py-spy is not installed (pip install py-spy)")
    argv = [exe, "record", "--pid", str(server.pid), "--rate", str(args.rate)]
    argv += ["--duration", str(round(args.duration)), "--format", "raw", "--function"]
    argv += ["--subprocesses", "--output", str(out)]
    if args.nonblocking:
        argv.append("--nonblocking")
    if args.native:
        argv.append("--native")
    if args.gil:
        argv.append("--gil")
    done = subprocess.run(
        pinned(argv, CLIENT_CORE),
        capture_output=True,
        text=True,
        timeout=args.duration + 60,
        check=False,
    )
    if done.returncode != 0 or not out.exists() or not out.stat().st_size:
        raise ProfilerFailed(f"py-spy failed: {(done.stderr or done.stdout).strip()[-300:]}")


def _run(args: argparse.Namespace, scenario: Scenario, raw: Path, inprocess: bool) -> str:
    """One profiled run; returns a description of the profiler and the load."""
    settings = Settings(connections=args.connections, use_wrk=args.loadgen != "python")
    spec = SERVERS[args.server]
    port = free_port()
    argv = server_argv(spec, scenario, port)
    if inprocess:
        if argv[0] != sys.executable or argv[1] != "-m":
            raise ServerFailed(f"{spec.name} is not a 'python -m' server: use py-spy")
        argv = [sys.executable, "-m", "benchmarks.profiled_server", str(raw), str(args.rate)]
        argv += server_argv(spec, scenario, port)[1:]
    with ServerProcess(argv, port) as server:
        start(server, scenario)
        if args.warmup > 0:
            load(port, scenario, settings, args.warmup)
        if inprocess:
            result = load(port, scenario, settings, args.duration)
            server.stop()
            what = f"in-process CPU sampler (benchmarks.profiled_server) at {args.rate:g} Hz"
        else:
            # The load runs a second longer than the profiler, so every sample is under load.
            background = _Background(port, scenario, settings, args.duration + 1)
            time.sleep(0.5)  # let wrk open its connections before the first sample
            _py_spy(server, args, raw)
            result = background.wait()
            server.check_alive()
            kept = "the thread holding the GIL" if args.gil else "threads not idle"
            what = f"py-spy {_py_spy_version()} at {args.rate:g} Hz, samples of {kept}"
    clients = _clients(settings, scenario)
    return (
        f"{what}, for {args.duration:g} s of {result.tool} load with {clients} "
        f"after {args.warmup:g} s warm-up: {result.rps:,.0f} req/s "
        f"with the profiler attached, {result.errors} errors"
    )


def _shorten(text: str) -> str:
    """py-spy's --subprocesses root frame carries the whole command line: keep the pid."""
    return re.sub(r'^process (\d+):"[^"]*"', r"process \1", text, flags=re.M)


def _py_spy_version() -> str:
    exe = shutil.which("py-spy")
    if exe is None:
        return "?"
    done = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
    return done.stdout.strip().rpartition(" ")[2] or "?"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    throughput = [name for name, s in SCENARIOS.items() if s.kind == "throughput"]
    parser.add_argument("scenario", choices=throughput)
    parser.add_argument("--server", default="dualcorn", choices=list(SERVERS))
    parser.add_argument("--duration", type=float, default=20.0, help="seconds profiled (20)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before (2)")
    parser.add_argument("--rate", type=int, default=250, help="samples per second (250)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument(
        "--profiler",
        choices=["auto", "py-spy", "inprocess"],
        default="auto",
        help="py-spy, falling back to the in-process sampler (auto)",
    )
    parser.add_argument(
        "--nonblocking",
        action="store_true",
        help="py-spy does not pause the server to sample (less overhead, torn stacks)",
    )
    parser.add_argument(
        "--native",
        action="store_true",
        help="py-spy also samples C frames (uvloop, httptools), where they have symbols",
    )
    parser.add_argument(
        "--gil",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="py-spy keeps only samples of the thread holding the GIL (default: on)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="directory (results/)")
    return parser


def _clients(settings: Settings, scenario: Scenario) -> str:
    if scenario.protocol == "h2":  # h2load: streams on connections
        return f"{settings.h2_connections} connections x {settings.h2_streams} streams"
    return f"{settings.connections} connections"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    scenario = SCENARIOS[args.scenario]
    if args.server not in SERVERS or not SERVERS[args.server].serves(scenario):
        what = "TLS" if scenario.tls else f"{scenario.interface} apps"
        print(f"{args.server} does not serve {what}", file=sys.stderr)
        return 2
    stem = f"profile-{scenario.name}" + ("" if args.server == "dualcorn" else f"-{args.server}")
    args.output.mkdir(parents=True, exist_ok=True)
    unit = "samples"
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp, "stacks.txt")
        try:
            if args.profiler == "inprocess":
                raise ProfilerFailed("--profiler inprocess")
            how = _run(args, scenario, raw, inprocess=False)
        except ProfilerFailed as exc:
            if args.profiler == "py-spy":
                print(exc, file=sys.stderr)
                return 1
            print(f"{exc}: using the in-process sampler", file=sys.stderr)
            how = _run(args, scenario, raw, inprocess=True)
            unit = "CPU us"
        text = _shorten(raw.read_text()) if raw.exists() else ""
    profile = parse_collapsed(text)
    if not profile.total:
        print("no samples recorded", file=sys.stderr)
        return 1
    (args.output / f"{stem}.txt").write_text(text)
    title = f"{scenario.name} under {args.server}: CPU flame graph"
    (args.output / f"{stem}.svg").write_text(flame_svg(profile, title))
    lines = [
        f"# Profile: {scenario.name} under {args.server}",
        "",
        f"Run {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC} with "
        f"`python -m benchmarks.profile {scenario.name}"
        + ("" if args.server == "dualcorn" else f" --server {args.server}")
        + f"` on {platform.python_implementation()} {platform.python_version()}.",
        "",
        f"{scenario.description}. Profiler: {how}. {profile.total:,} {unit} in all.",
        "",
        f"Flame graph: [`{stem}.svg`]({stem}.svg); collapsed stacks: `{stem}.txt`.",
        "",
        "Reading it: self time in the event loop's `run` (asyncio/runners.py) is the loop's "
        "own C code that Python-level sampling cannot look into (uvloop: polling, transports, "
        "socket system calls; `--native` lets py-spy try); with the in-process sampler, time "
        "spent in C is charged to the next Python function the main thread runs.",
        "",
        "## Top 20 functions by self time",
        "",
        *top_table(profile, 20, unit),
        "",
    ]
    (args.output / f"{stem}.md").write_text("\n".join(lines))
    print(f"wrote {args.output}/{stem}.{{svg,md,txt}}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
