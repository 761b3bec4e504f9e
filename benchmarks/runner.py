"""Load generation, the answer check, and the idle scenarios, one server at a time.

The throughput scenarios are run by ``benchmarks.turns`` (servers taking turns round by
round) with the pieces defined here: :func:`load` (wrk, or the built-in generator) and
:func:`probe` (one request whose answer must be right before anything is measured).  An idle
scenario starts one server pinned to core 0, checks one answer, opens its connections from
core 1 and samples the server's RSS.  Any failure becomes a row with ``status="failed"`` and
a reason; nothing here lets one server's failure stop the run.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.catalog import Scenario, ServerSpec
from benchmarks.certs import tls_files
from benchmarks.h2load import h2load_available, probe_h2, run_h2load
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

__all__ = [
    "Row",
    "Settings",
    "load",
    "parse_wrk",
    "probe",
    "run_one",
    "server_argv",
    "start",
    "wait_quiet",
    "wrk_available",
]


@dataclass(frozen=True)
class Settings:
    rounds: int = 3
    duration: float = 10.0
    warmup: float = 2.0
    connections: int = 64
    idle_count: int = 10_000
    idle_hold: float = 3.0
    use_wrk: bool = True
    quiet_wait: float = 60.0  # at most this long before a round for the machine to quieten
    h2_connections: int = 16  # h2load -c in the HTTP/2 scenarios
    h2_streams: int = 32  # h2load -m: streams in flight per connection


@dataclass
class Row:
    """One table row: a server's result in one scenario."""

    server: str
    status: str = "ok"  # "ok" or "failed"
    reason: str = ""
    rps: float | None = None
    cpu_us: float | None = None  # server CPU (process tree, user + system) per request, median
    rounds_rps: list[float] = field(default_factory=list)
    rounds_cpu_us: list[float] = field(default_factory=list)
    rounds_requests: list[int] = field(default_factory=list)
    rounds_p50_ms: list[float] = field(default_factory=list)
    rounds_p99_ms: list[float] = field(default_factory=list)
    rounds_others: list[float] = field(default_factory=list)  # CPU share of other processes
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: int = 0
    non_2xx: int = 0
    peak_rss: int = 0
    start_rss: int = 0
    tool: str = ""
    idle: IdleResult | None = None
    busy: float = 0.0  # CPU share used by other processes before or during rounds, at most


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


def _probe_h2(port: int, scenario: Scenario) -> tuple[int, bytes]:
    body = b"x" * scenario.body_size if scenario.method == "POST" else b""
    tls = tls_files().client_context() if scenario.tls else None
    return probe_h2(port, tls=tls, path=scenario.path, method=scenario.method, body=body)


def probe(port: int, scenario: Scenario) -> None:
    """One request with the stdlib client (HTTP/2 scenarios: the h2 library); raise
    ServerFailed unless the answer is right.

    Over TLS the client verifies the server's certificate against the test CA."""
    if scenario.protocol == "h2":
        status, data = _probe_h2(port, scenario)
        _check(scenario, status, data)
        return
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
    _check(scenario, response.status, data)


def _check(scenario: Scenario, status: int, data: bytes) -> None:
    if status != 200:
        raise ServerFailed(f"probe answered {status}: {data[:80]!r}")
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


def load(port: int, scenario: Scenario, settings: Settings, duration: float) -> LoadResult:
    if scenario.protocol == "h2":
        if not h2load_available():
            raise RuntimeError("h2load is not installed (apt-get install nghttp2-client)")
        return run_h2load(
            f"{'https' if scenario.tls else 'http'}://127.0.0.1:{port}{scenario.path}",
            duration=duration,
            connections=settings.h2_connections,
            streams=settings.h2_streams,
            method=scenario.method,
            body_size=scenario.body_size,
        )
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


def server_argv(spec: ServerSpec, scenario: Scenario, port: int) -> list[str]:
    """The argv of ``spec`` in ``scenario``: access log on if asked, the test certificate if
    the scenario is served over TLS."""
    tls = tls_files() if scenario.tls else None
    files = (tls.certfile, tls.keyfile) if tls else None
    return spec.command(
        scenario.app,
        scenario.interface,
        port,
        scenario.access_log,
        files,
        scenario.protocol == "h2",
    )


def start(server: ServerProcess, scenario: Scenario) -> None:
    """Wait until ``server`` answers (over TLS if the scenario is), then check one answer."""
    server.wait_ready(tls=tls_files().client_context() if scenario.tls else None)
    probe(server.port, scenario)


def run_one(spec: ServerSpec, scenario: Scenario, settings: Settings) -> Row:
    """Measure ``spec`` in the idle ``scenario``; never raises for a server's misbehaviour."""
    row = Row(server=spec.name)
    row.busy = wait_quiet(settings.quiet_wait)
    port = free_port()
    try:
        with ServerProcess(server_argv(spec, scenario, port), port) as server:
            start(server, scenario)
            _idle(server, settings, row)
    except subprocess.TimeoutExpired as exc:
        row.status, row.reason = "failed", f"load generator timed out after {exc.timeout:.0f} s"
    except (ServerFailed, RuntimeError, ValueError, OSError) as exc:
        row.status, row.reason = "failed", str(exc).replace("\n", " ")[:160]
    row.busy = max(row.busy, busy_fraction())
    return row


def wait_quiet(limit: float = 60.0) -> float:
    """Wait (at most ``limit`` s) until other processes leave the machine; return their share."""
    deadline = time.monotonic() + limit
    busy = busy_fraction()
    while busy > BUSY and time.monotonic() < deadline:
        busy = busy_fraction()
    return busy
