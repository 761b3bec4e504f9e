"""Run one scenario against one server and turn whatever happens into a :class:`Row`.

The sequence is the same for every peer: start the server pinned to core 0, wait until it
answers, check one response is right, warm up, then measure ``rounds`` runs of ``duration``
seconds from core 1 while a thread samples the server's RSS.  Any failure becomes a row with
``status="failed"`` and a reason; nothing here lets one server's failure stop the run.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.catalog import Scenario, ServerSpec
from benchmarks.certs import tls_files
from benchmarks.loadgen import IdleResult, LoadResult
from benchmarks.procs import (
    CLIENT_CORE,
    ROOT,
    RssSampler,
    ServerFailed,
    ServerProcess,
    busy_fraction,
    free_port,
    pinned,
)

# Above this CPU share used by something else, a row is marked as measured on a busy machine.
BUSY = 0.2

__all__ = ["Row", "Settings", "parse_wrk", "run_one", "wrk_available"]


@dataclass(frozen=True)
class Settings:
    rounds: int = 3
    duration: float = 10.0
    warmup: float = 2.0
    connections: int = 64
    idle_count: int = 10_000
    idle_hold: float = 3.0
    use_wrk: bool = True


@dataclass
class Row:
    """One table row: a server's result in one scenario."""

    server: str
    status: str = "ok"  # "ok" or "failed"
    reason: str = ""
    rps: float | None = None
    rounds_rps: list[float] = field(default_factory=list)
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: int = 0
    non_2xx: int = 0
    peak_rss: int = 0
    start_rss: int = 0
    tool: str = ""
    idle: IdleResult | None = None
    busy: float = 0.0  # CPU share used by other processes just before or after, at most


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_LATENCY = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.M)
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _wrk_script(body_size: int) -> str:
    return (
        'wrk.method = "POST"\n'
        f'wrk.body = string.rep("x", {body_size})\n'
        'wrk.headers["Content-Type"] = "application/octet-stream"\n'
    )


def parse_wrk(text: str) -> LoadResult:
    """Read requests/s, p50/p99 (ms), request and error counts out of wrk's report."""
    rps = _RPS.search(text)
    total = _TOTAL.search(text)
    if rps is None or total is None:
        raise ValueError(f"unrecognised wrk output: {text.strip()[-200:]!r}")
    latency = {m[1]: float(m[2]) * _UNITS[m[3]] for m in _LATENCY.finditer(text)}
    socket_errors = _SOCKET.search(text)
    non2xx = _NON2XX.search(text)
    # wrk counts a read error for every connection the server closes, and a timeout for
    # every request still unanswered after --timeout: both are failures of the server.
    errors = sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    return LoadResult(
        rps=float(rps[1]),
        p50_ms=latency.get("50", 0.0),
        p99_ms=latency.get("99", 0.0),
        requests=int(total[1]),
        errors=errors,
        non_2xx=int(non2xx[1]) if non2xx else 0,
        tool="wrk",
    )


def run_wrk(
    url: str, *, duration: float, connections: int, method: str = "GET", body_size: int = 0
) -> LoadResult:
    """One wrk run of ``duration`` seconds; raises RuntimeError if wrk itself fails."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            "--timeout",
            "10s",
        ]
        if method != "GET" or body_size:
            script = Path(tmp, "post.lua")
            script.write_text(_wrk_script(body_size))
            argv += ["-s", str(script)]
        argv.append(url)
        done = subprocess.run(
            pinned(argv, CLIENT_CORE),
            capture_output=True,
            text=True,
            timeout=duration + 60,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr.strip()[-200:]}")
    return parse_wrk(done.stdout)


def _probe(port: int, scenario: Scenario) -> None:
    """One request with the stdlib client; raise ServerFailed unless the answer is right.

    Over TLS the client verifies the server's certificate against the test CA."""
    conn = (
        http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=10, context=tls_files().client_context()
        )
        if scenario.tls
        else http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    )
    try:
        body = b"x" * scenario.body_size if scenario.method == "POST" else None
        conn.request(scenario.method, scenario.path, body=body)
        response = conn.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise ServerFailed(f"probe request failed: {exc!r}") from exc
    finally:
        conn.close()
    if response.status != 200:
        raise ServerFailed(f"probe answered {response.status}: {data[:80]!r}")
    if scenario.expect_body_size is not None and len(data) != scenario.expect_body_size:
        raise ServerFailed(f"probe body is {len(data)} bytes, not {scenario.expect_body_size}")
    if scenario.method == "POST" and data.strip() != str(scenario.body_size).encode():
        raise ServerFailed(f"upload answered {data[:40]!r}, not {scenario.body_size}")


def _loadgen(args: list[str], timeout: float) -> str:
    argv = pinned([sys.executable, "-m", "benchmarks.loadgen", *args], CLIENT_CORE)
    done = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"loadgen exited {done.returncode}: {done.stderr.strip()[-200:]}")
    return done.stdout.strip().splitlines()[-1]


def _load(port: int, scenario: Scenario, settings: Settings, duration: float) -> LoadResult:
    if settings.use_wrk and wrk_available():
        return run_wrk(
            f"{'https' if scenario.tls else 'http'}://127.0.0.1:{port}{scenario.path}",
            duration=duration,
            connections=settings.connections,
            method=scenario.method,
            body_size=scenario.body_size,
        )
    args = [
        "throughput",
        "--port",
        str(port),
        "--duration",
        str(duration),
        "--connections",
        str(settings.connections),
        "--method",
        scenario.method,
        "--body-size",
        str(scenario.body_size),
        *(["--tls"] if scenario.tls else []),
        "--path",
        scenario.path,
    ]
    return LoadResult(**json.loads(_loadgen(args, duration + 60)))


def _throughput(server: ServerProcess, scenario: Scenario, settings: Settings, row: Row) -> None:
    if settings.warmup > 0:
        _load(server.port, scenario, settings, settings.warmup)
        server.check_alive()
    results: list[LoadResult] = []
    with RssSampler(server.pid) as rss:
        for _ in range(settings.rounds):
            results.append(_load(server.port, scenario, settings, settings.duration))
            server.check_alive()
    row.start_rss, row.peak_rss = rss.first, rss.peak
    row.rounds_rps = [round(r.rps, 1) for r in results]
    row.rps = statistics.median(r.rps for r in results)
    row.p50_ms = statistics.median(r.p50_ms for r in results)
    row.p99_ms = statistics.median(r.p99_ms for r in results)
    row.errors = sum(r.errors for r in results)
    row.non_2xx = sum(r.non_2xx for r in results)
    row.tool = results[0].tool
    if sum(r.requests for r in results) == row.non_2xx:
        raise ServerFailed(f"no successful responses ({row.errors} socket errors)")


def _idle(server: ServerProcess, settings: Settings, row: Row) -> None:
    args = [
        "idle",
        "--port",
        str(server.port),
        "--count",
        str(settings.idle_count),
        "--hold",
        str(settings.idle_hold),
    ]
    with RssSampler(server.pid, interval=0.05) as rss:
        line = _loadgen(args, timeout=60 + settings.idle_hold + 30)
    server.check_alive()
    row.idle = IdleResult(**json.loads(line))
    row.start_rss, row.peak_rss = rss.first, rss.peak
    row.errors = row.idle.errors
    row.tool = "benchmarks.loadgen"


def run_one(spec: ServerSpec, scenario: Scenario, settings: Settings) -> Row:
    """Measure ``spec`` in ``scenario``; never raises for a server's misbehaviour."""
    row = Row(server=spec.name)
    row.busy = _wait_quiet()
    port = free_port()
    try:
        tls = tls_files() if scenario.tls else None
        files = (tls.certfile, tls.keyfile) if tls else None
        argv = spec.command(scenario.app, scenario.interface, port, files)
        with ServerProcess(argv, port) as server:
            server.wait_ready(tls=tls.client_context() if tls else None)
            _probe(port, scenario)
            if scenario.kind == "idle":
                _idle(server, settings, row)
            else:
                _throughput(server, scenario, settings, row)
    except subprocess.TimeoutExpired as exc:
        row.status, row.reason = "failed", f"load generator timed out after {exc.timeout:.0f} s"
    except (ServerFailed, RuntimeError, ValueError, OSError) as exc:
        row.status, row.reason = "failed", str(exc).replace("\n", " ")[:160]
    row.busy = max(row.busy, busy_fraction())
    return row


def _wait_quiet(limit: float = 60.0) -> float:
    """Wait (at most ``limit`` s) until other processes leave the machine; return their share."""
    deadline = time.monotonic() + limit
    busy = busy_fraction()
    while busy > BUSY and time.monotonic() < deadline:
        busy = busy_fraction()
    return busy
