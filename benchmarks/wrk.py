"""Drive ``wrk`` (when installed) and turn its text report into a :class:`LoadResult`.

wrk runs one thread pinned to the client core, ``--latency`` for the percentile table, and a
generated Lua script when the scenario POSTs a body.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchmarks.loadgen import LoadResult
from benchmarks.procs import CLIENT_CORE, pinned

__all__ = ["available", "parse", "run"]

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_LATENCY = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.M)
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def available() -> bool:
    return shutil.which("wrk") is not None


def _post_script(body_size: int) -> str:
    return (
        'wrk.method = "POST"\n'
        f'wrk.body = string.rep("x", {body_size})\n'
        'wrk.headers["Content-Type"] = "application/octet-stream"\n'
    )


def parse(text: str) -> LoadResult:
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


def run(
    url: str, *, duration: float, connections: int, method: str = "GET", body_size: int = 0
) -> LoadResult:
    """One wrk run of ``duration`` seconds; raises RuntimeError if wrk itself fails."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s",
                "--latency", "--timeout", "10s"]
        if method != "GET" or body_size:
            script = Path(tmp, "post.lua")
            script.write_text(_post_script(body_size))
            argv += ["-s", str(script)]
        argv.append(url)
        done = subprocess.run(
            pinned(argv, CLIENT_CORE), capture_output=True, text=True, timeout=duration + 60,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr.strip()[-200:]}")
    return parse(done.stdout)
