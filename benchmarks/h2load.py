"""HTTP/2 load with h2load (Debian ``nghttp2-client``) and a one-request HTTP/2 probe.

``run_h2load`` runs ``h2load -t 1 -c C -m M -D S`` (h2c with prior knowledge for http://,
ALPN ``h2`` for https://) pinned to the client core, with ``--log-file`` so that the request
rate and latency percentiles come from every request, not from h2load's summary:

- h2load does not reconnect a connection the server ended (a GOAWAY after a per-connection
  stream cap, or a reset): it counts the streams it had in flight as failed and the
  connection then sits out the rest of the round. Its own req/s (requests / whole duration)
  would then charge that idle tail to the server, so req/s here is the requests answered
  divided by the span from the first request's start to the last one's end. The failures are
  reported as errors; ``benchmarks/catalog.py`` lists each server's caps.
- p50 and p99 are the per-request times from the log (start to end of the response).

``probe_h2`` makes one request with the ``h2`` library (a dependency of hypercorn, in the
bench extra) over h2c prior knowledge or TLS with ALPN, and fails unless the answer came over
HTTP/2 with the right status and body size, so a server that falls back to HTTP/1.1 cannot score.
"""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
import tempfile
from pathlib import Path

from benchmarks.loadgen import LoadResult, percentile
from benchmarks.procs import CLIENT_CORE, ServerFailed, pinned

__all__ = ["h2load_available", "h2load_version", "parse_h2load", "probe_h2", "run_h2load"]

_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_PROTOCOL = re.compile(r"Application protocol: (\S+)")


def h2load_available() -> bool:
    return shutil.which("h2load") is not None


def h2load_version() -> str:
    try:
        done = subprocess.run(["h2load", "--version"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    return done.stdout.strip() or "unknown"


def parse_h2load(text: str, log: str) -> LoadResult:
    """The LoadResult of one h2load run: its summary ``text`` and its ``--log-file`` lines."""
    counts = _REQUESTS.search(text)
    protocol = _PROTOCOL.search(text)
    if counts is None:
        raise ValueError(f"unrecognised h2load output: {text.strip()[-300:]!r}")
    if protocol is None or protocol[1] not in ("h2", "h2c"):
        found = protocol[1] if protocol else "none"
        raise ServerFailed(f"h2load negotiated {found}, not HTTP/2: {text.strip()[-200:]!r}")
    failed, errored, timeout = int(counts[5]), int(counts[6]), int(counts[7])
    status = _STATUS.search(text)
    non_2xx = sum(int(n) for n in status.groups()[1:]) if status else 0
    starts: list[int] = []
    ends: list[int] = []
    times: list[float] = []
    for line in log.splitlines():
        fields = line.split("\t")
        if len(fields) < 3 or not fields[1].lstrip("-").isdigit():
            continue
        start, code, took = int(fields[0]), int(fields[1]), int(fields[2])
        if 200 <= code < 300:
            starts.append(start)
            ends.append(start + took)
            times.append(took / 1000)
    answered = len(times)
    span_us = (max(ends) - min(starts)) if answered else 0
    times.sort()
    return LoadResult(
        rps=answered / (span_us / 1e6) if span_us > 0 else 0.0,
        p50_ms=percentile(times, 0.50),
        p99_ms=percentile(times, 0.99),
        requests=answered,
        # h2load's "failed" includes the errored and timed-out ones; non-2xx are separate.
        errors=max(failed, errored + timeout),
        non_2xx=non_2xx,
        tool=f"h2load ({protocol[1]})",
    )


def run_h2load(
    url: str,
    *,
    duration: float,
    connections: int,
    streams: int,
    method: str = "GET",
    body_size: int = 0,
) -> LoadResult:
    """One h2load run of ``duration`` seconds; raises RuntimeError if h2load itself fails."""
    with tempfile.TemporaryDirectory(prefix="dualcorn-h2load-") as tmp:
        log = Path(tmp, "requests.tsv")
        argv = [
            "h2load",
            "-t1",
            f"-c{connections}",
            f"-m{streams}",
            f"-D{max(1, round(duration))}",
            "-T10",  # like wrk --timeout 10s: a stream unanswered that long is a failure
            f"--log-file={log}",
        ]
        if method != "GET" or body_size:
            body = Path(tmp, "body")
            body.write_bytes(b"x" * body_size)
            argv += ["-d", str(body), "-H", "content-type: application/octet-stream"]
        argv.append(url)
        done = subprocess.run(
            pinned(argv, CLIENT_CORE),
            capture_output=True,
            text=True,
            timeout=duration + 60,
            check=False,
        )
        if done.returncode != 0 and "requests:" not in done.stdout:
            raise RuntimeError(f"h2load exited {done.returncode}: {done.stderr.strip()[-200:]}")
        text = log.read_text() if log.is_file() else ""
    return parse_h2load(done.stdout, text)


def probe_h2(
    port: int,
    *,
    tls: ssl.SSLContext | None,
    path: str = "/",
    method: str = "GET",
    body: bytes = b"",
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """One request over HTTP/2 (h2c prior knowledge, or TLS + ALPN h2): (status, body).

    Raises ServerFailed if the server does not speak HTTP/2 (ALPN not h2, or no valid
    HTTP/2 answer) within ``timeout``."""
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions

    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as exc:
        raise ServerFailed(f"h2 probe could not connect: {exc!r}") from exc
    sock: socket.socket = raw
    try:
        if tls is not None:
            tls.set_alpn_protocols(["h2"])
            sock = tls.wrap_socket(raw, server_hostname="127.0.0.1")
            if sock.selected_alpn_protocol() != "h2":
                raise ServerFailed(f"ALPN chose {sock.selected_alpn_protocol()!r}, not h2")
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        conn.initiate_connection()
        head = [
            (b":method", method.encode()),
            (b":scheme", b"https" if tls else b"http"),
            (b":authority", f"127.0.0.1:{port}".encode()),
            (b":path", path.encode()),
        ]
        if body:
            head.append((b"content-length", str(len(body)).encode()))
        conn.send_headers(1, head, end_stream=not body)
        if body:
            conn.send_data(1, body, end_stream=True)  # within the 64 KiB default window
        sock.sendall(conn.data_to_send())
        status, data, ended = 0, bytearray(), False
        while not ended:
            chunk = sock.recv(65536)
            if not chunk:
                raise ServerFailed("h2 probe: the server closed the connection")
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    data += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
                elif isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    raise ServerFailed(f"h2 probe: {event}")
            sock.sendall(conn.data_to_send())
        return status, bytes(data)
    except (OSError, h2.exceptions.H2Error, KeyError, ValueError) as exc:  # ssl.SSLError too
        raise ServerFailed(f"h2 probe failed: {exc!r}") from exc
    finally:
        sock.close()
