"""Throughput scenarios with the servers taking turns: A B C, A B C, ... one round at a time.

All servers of a scenario are started once, on separate ports, all pinned to the server core,
and stay up for the whole scenario; the load moves from one to the next.  A neighbour that
steals the CPU for a minute then hurts one round of every server instead of every round of
one server, and the spread of the rounds (min-max) shows how noisy the run was.

Besides requests per second, every turn records the server's CPU time (user + system, the
whole process tree, from /proc at the start and end of the turn) divided by the requests
completed in it: microseconds of CPU per request, the headline number.  A neighbour that
steals cycles lowers req/s a lot but CPU per request only a little (cache and frequency
effects), so it is the number to compare across rounds and runs.
"""

from __future__ import annotations

import contextlib
import os
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from benchmarks.catalog import Scenario, ServerSpec
from benchmarks.loadgen import LoadResult
from benchmarks.procs import (
    TICKS,
    RssSampler,
    ServerFailed,
    ServerProcess,
    cpu_seconds,
    free_port,
)
from benchmarks.runner import Row, Settings, load, server_argv, start, wait_quiet

__all__ = ["machine_busy_seconds", "run_turns"]

Log = Callable[[str], None]


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores, /proc/stat), 0.0 if unknown."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / TICKS


def _own_seconds() -> float:
    """CPU used by this harness and the load generators it has waited for."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class _Turn:
    """One server's seat at the table: its process, its row and what its rounds measured."""

    spec: ServerSpec
    row: Row
    server: ServerProcess
    results: list[LoadResult] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    others: list[float] = field(default_factory=list)  # CPU share of other processes
    alive: bool = True


def _fail(row: Row, exc: BaseException) -> None:
    row.status = "failed"
    if isinstance(exc, subprocess.TimeoutExpired):
        row.reason = f"load generator timed out after {exc.timeout:.0f} s"
    else:
        row.reason = str(exc).replace("\n", " ")[:160]


FAILURES = (ServerFailed, RuntimeError, ValueError, OSError, subprocess.TimeoutExpired)


def _measure(turn: _Turn, scenario: Scenario, settings: Settings) -> None:
    """One round for one server: load for ``duration`` s, CPU of its tree before and after."""
    pid = turn.server.pid
    machine0, own0, wall0 = machine_busy_seconds(), _own_seconds(), time.monotonic()
    cpu0 = cpu_seconds(pid)
    with RssSampler(pid) as rss:
        result = load(turn.server.port, scenario, settings, settings.duration)
    cpu1 = cpu_seconds(pid)
    machine1, own1, wall1 = machine_busy_seconds(), _own_seconds(), time.monotonic()
    turn.server.check_alive()
    turn.row.start_rss = turn.row.start_rss or rss.first
    turn.row.peak_rss = max(turn.row.peak_rss, rss.peak)
    if result.requests <= result.non_2xx:
        raise ServerFailed(f"no successful responses ({result.errors} socket errors)")
    turn.results.append(result)
    turn.cpu_us.append((cpu1 - cpu0) / result.requests * 1e6)
    # What the rest of the machine did meanwhile: busy time minus the server, the harness and
    # the load generator, as a share of all cores.
    cores = os.cpu_count() or 1
    other = (machine1 - machine0) - (cpu1 - cpu0) - (own1 - own0)
    turn.others.append(max(0.0, other) / max(1e-9, (wall1 - wall0) * cores))


def _summarise(turn: _Turn) -> None:
    row, results = turn.row, turn.results
    row.rounds_rps = [round(r.rps, 1) for r in results]
    row.rounds_cpu_us = [round(v, 2) for v in turn.cpu_us]
    row.rounds_requests = [r.requests for r in results]
    row.rounds_p50_ms = [round(r.p50_ms, 3) for r in results]
    row.rounds_p99_ms = [round(r.p99_ms, 3) for r in results]
    row.rounds_others = [round(v, 3) for v in turn.others]
    row.errors = sum(r.errors for r in results)
    row.non_2xx = sum(r.non_2xx for r in results)
    row.busy = max([row.busy, *turn.others])
    if not results:
        return
    row.tool = results[0].tool
    row.rps = statistics.median(r.rps for r in results)
    row.cpu_us = statistics.median(turn.cpu_us)
    row.p50_ms = statistics.median(r.p50_ms for r in results)
    row.p99_ms = statistics.median(r.p99_ms for r in results)


def _start(spec: ServerSpec, scenario: Scenario, stack: contextlib.ExitStack, row: Row) -> _Turn:
    port = free_port()
    server = stack.enter_context(ServerProcess(server_argv(spec, scenario, port), port))
    try:
        start(server, scenario)  # over TLS when the scenario is
    except BaseException:
        server.stop()
        raise
    return _Turn(spec, row, server)


def run_turns(
    specs: list[ServerSpec], scenario: Scenario, settings: Settings, log: Log
) -> list[Row]:
    """Every server in ``specs`` through ``settings.rounds`` rounds of ``scenario``, in turns."""
    rows = [Row(server=spec.name) for spec in specs]
    with contextlib.ExitStack() as stack:
        turns: list[_Turn] = []
        for spec, row in zip(specs, rows, strict=True):
            try:
                turns.append(_start(spec, scenario, stack, row))
            except FAILURES as exc:
                _fail(row, exc)
                log(f"{scenario.name:<20} {spec.name:<13} failed: {row.reason}")
        if settings.warmup > 0:
            for turn in turns:
                _guarded(turn, partial(_warm, turn, scenario, settings), log, scenario)
        for number in range(1, settings.rounds + 1):
            busy = wait_quiet(settings.quiet_wait)
            for turn in turns:
                if not turn.alive:
                    continue
                turn.row.busy = max(turn.row.busy, busy)
                started = time.monotonic()
                if _guarded(turn, partial(_measure, turn, scenario, settings), log, scenario):
                    log(
                        f"{scenario.name:<20} {turn.spec.name:<13} round {number}: "
                        f"{turn.results[-1].rps:,.0f} req/s, {turn.cpu_us[-1]:.1f} us CPU/req, "
                        f"others {turn.others[-1]:.0%}  [{time.monotonic() - started:.0f} s]"
                    )
        for turn in turns:
            _summarise(turn)
    return rows


def _warm(turn: _Turn, scenario: Scenario, settings: Settings) -> None:
    load(turn.server.port, scenario, settings, settings.warmup)
    turn.server.check_alive()


def _guarded(turn: _Turn, step: Callable[[], None], log: Log, scenario: Scenario) -> bool:
    """Run ``step``; on a failure mark the row failed, stop that server and leave the table."""
    if not turn.alive:
        return False
    try:
        step()
    except FAILURES as exc:
        _fail(turn.row, exc)
        turn.alive = False
        turn.server.stop()
        log(f"{scenario.name:<20} {turn.spec.name:<13} failed: {turn.row.reason}")
        return False
    return True
