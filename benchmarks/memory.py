"""RSS under load with big bodies: does a server stream, or does it buffer?

``python -m benchmarks.memory`` serves ``benchmarks/apps/memory_wsgi.py`` with dualcorn and its
WSGI peers, one after another, and for each one:

(a) **upload**: POSTs 512 MiB with chunked transfer coding in 64 KiB chunks; the app reads
    ``wsgi.input`` in 64 KiB blocks and answers length and SHA-256, which must match;
(b) **download**: GETs 512 MiB yielded by a generator, read by a client throttled to
    64 MiB/s, checking length and SHA-256.

A thread samples the server's RSS (process tree) meanwhile; the growth is peak minus the RSS
just before the transfer.  A server that streams grows by a few MiB; one that buffers a body
grows by about its size.  Every socket operation has a timeout and every transfer a deadline.
Results go to ``benchmarks/results/memory.md``.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from hashlib import sha256
from pathlib import Path

import h11

from benchmarks import report
from benchmarks.apps.memory_wsgi import BLOCK, block
from benchmarks.catalog import SERVERS
from benchmarks.procs import (
    CLIENT_CORE,
    RssSampler,
    ServerFailed,
    ServerProcess,
    exit_cleanly_on_signals,
    free_port,
    rss_bytes,
)

MIB = 1024 * 1024
APP = "benchmarks.apps.memory_wsgi:app"
PEERS = ("dualcorn", "uvicorn", "hypercorn", "waitress", "gunicorn", "granian")


@dataclass
class Transfer:
    ok: bool = False
    detail: str = ""
    seconds: float = 0.0
    growth: int = 0  # bytes: peak RSS during the transfer minus RSS just before it


@dataclass
class Outcome:
    server: str
    failure: str = ""
    start_rss: int = 0
    transfers: dict[str, Transfer] = field(default_factory=dict)


class _Client:
    """One HTTP/1.1 exchange over a blocking socket, with h11 doing the framing."""

    def __init__(self, port: int, deadline: float) -> None:
        self.deadline = deadline
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.conn = h11.Connection(h11.CLIENT)

    def send(self, event: h11.Event) -> None:
        self._check_deadline()
        data = self.conn.send(event)
        if data:
            self.sock.sendall(data)

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self._check_deadline()
            self.conn.receive_data(self.sock.recv(BLOCK))

    def _check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise TimeoutError("transfer deadline passed")

    def close(self) -> None:
        self.sock.close()


def _headers(*extra: tuple[str, str]) -> list[tuple[str, str]]:
    return [("Host", "127.0.0.1"), ("Connection", "close"), *extra]


@cache
def _expected_digest(blocks: int) -> str:
    digest = sha256()
    for index in range(blocks):
        digest.update(block(index))
    return digest.hexdigest()


def _early_answer(client: _Client) -> str:
    try:
        client.sock.settimeout(2)
        head = client.sock.recv(BLOCK).split(b"\r\n", 1)[0]
    except OSError:
        return "nothing"
    return head.decode(errors="replace") or "nothing"


def upload(port: int, mib: int, deadline: float) -> str:
    """POST ``mib`` MiB chunked; return a description, raise if the answer is wrong."""
    blocks = mib * MIB // BLOCK
    client = _Client(port, deadline)
    try:
        client.send(
            h11.Request(
                method="POST", target="/upload", headers=_headers(("Transfer-Encoding", "chunked"))
            )
        )
        try:
            for index in range(blocks):
                client.send(h11.Data(data=block(index)))
            client.send(h11.EndOfMessage())
        except OSError as exc:
            # The server stopped reading: say what it answered, if it answered.
            raise ValueError(
                f"{exc.strerror or exc} after {index * BLOCK // MIB} MiB; "
                f"server said {_early_answer(client)}"
            ) from exc
        status, body = 0, b""
        while not isinstance(event := client.next_event(), h11.EndOfMessage):
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
    finally:
        client.close()
    expected = f"{blocks * BLOCK} {_expected_digest(blocks)}"
    if status != 200 or body.decode(errors="replace").strip() != expected:
        raise ValueError(f"status {status}, body {body[:60]!r}")
    return "length and sha256 match"


def download(port: int, mib: int, rate: float, deadline: float) -> str:
    """GET ``mib`` MiB reading at most ``rate`` bytes/s; raise if length or digest differ."""
    blocks = mib * MIB // BLOCK
    client = _Client(port, deadline)
    digest = sha256()
    size = status = 0
    started = time.monotonic()
    try:
        client.send(h11.Request(method="GET", target=f"/download?mib={mib}", headers=_headers()))
        client.send(h11.EndOfMessage())
        while not isinstance(event := client.next_event(), h11.EndOfMessage):
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                digest.update(event.data)
                size += len(event.data)
                ahead = started + size / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)  # the throttle: a client slower than the server
    finally:
        client.close()
    if status != 200 or size != blocks * BLOCK or digest.hexdigest() != _expected_digest(blocks):
        raise ValueError(f"status {status}, {size} bytes, digest mismatch or short body")
    return "length and sha256 match"


def _measure(server: ServerProcess, job: Callable[[], str]) -> Transfer:
    result = Transfer()
    before = rss_bytes(server.pid)
    started = time.monotonic()
    with RssSampler(server.pid, interval=0.05) as rss:
        try:
            result.detail = job()
            result.ok = True
        except (OSError, ValueError, h11.ProtocolError) as exc:
            result.detail = f"{type(exc).__name__}: {exc}"[:120]
    result.seconds = time.monotonic() - started
    result.growth = max(0, rss.peak - before)
    try:
        server.check_alive()
    except ServerFailed as exc:
        result.ok, result.detail = False, f"server died: {exc}"[:120]
    return result


def run_server(name: str, mib: int, rate: float, timeout: float) -> Outcome:
    outcome = Outcome(server=name)
    port = free_port()
    try:
        with ServerProcess(SERVERS[name].command(APP, "wsgi", port), port) as server:
            server.wait_ready()
            outcome.start_rss = rss_bytes(server.pid)
            outcome.transfers["upload"] = _measure(
                server, lambda: upload(port, mib, time.monotonic() + timeout)
            )
            outcome.transfers["download"] = _measure(
                server, lambda: download(port, mib, rate, time.monotonic() + timeout)
            )
    except ServerFailed as exc:
        outcome.failure = str(exc)[:160]
    return outcome


def _mib(size: int) -> str:
    return f"{size / MIB:.1f} MiB"


def _cells(transfer: Transfer | None) -> str:
    if transfer is None:
        return "not run | | "
    verdict = "ok" if transfer.ok else f"failed: {transfer.detail}".replace("|", "\\|")
    return f"{verdict} | {transfer.seconds:.1f} s | {_mib(transfer.growth)}"


def render(outcomes: list[Outcome], mib: int, rate: float, note: str) -> str:
    info = report.machine()
    lines = ["# RSS under load: streaming big bodies", ""]
    if note:
        lines += [f"> {note}", ""]
    lines += [
        f"Run {info['date']} with `python -m benchmarks.memory` "
        f"(see the module docstring for the method).",
        "",
        f"- CPU: {info['cpu']}, {info['cores']} cores; RAM {info['ram_gib']} GiB; "
        f"{info['python']}; {info['os']}",
        "- Packages: " + ", ".join(f"{k} {v}" for k, v in info["packages"].items()),
        f"- Upload: {mib} MiB POSTed with chunked coding in 64 KiB chunks; the WSGI app reads "
        "wsgi.input in 64 KiB blocks and answers length + sha256.",
        f"- Download: {mib} MiB from a WSGI generator (64 KiB blocks), client throttled to "
        f"{rate / MIB:g} MiB/s.",
        "- RSS growth: peak RSS of the server's process tree during the transfer minus its RSS "
        "just before; streaming keeps it small, buffering makes it about the body size.",
        "",
        "| server | start RSS | upload | time | RSS growth | download | time | RSS growth |",
        "|---|---:|---|---:|---:|---|---:|---:|",
    ]
    for o in outcomes:
        if o.failure:
            lines.append(f"| {o.server} | failed: {o.failure.replace('|', '/')} | | | | | | |")
            continue
        lines.append(
            f"| {o.server} | {_mib(o.start_rss)} | {_cells(o.transfers.get('upload'))} "
            f"| {_cells(o.transfers.get('download'))} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--server", default=",".join(PEERS), help=f"comma-separated, from: {', '.join(SERVERS)}"
    )
    parser.add_argument("--mib", type=int, default=512, help="body size in MiB, both ways")
    parser.add_argument("--rate", type=float, default=64, help="download throttle, MiB/s")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per transfer")
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).resolve().parent / "results" / "memory.md"
    )
    parser.add_argument("--note", default="", help="a line quoted at the top of the report")
    args = parser.parse_args(argv)
    exit_cleanly_on_signals()
    names = [n.strip() for n in args.server.split(",") if n.strip()]
    unknown = [n for n in names if n not in SERVERS or "wsgi" not in SERVERS[n].interfaces]
    if unknown:
        parser.error(f"unknown or non-WSGI server {', '.join(unknown)}")
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > CLIENT_CORE:
        os.sched_setaffinity(0, {CLIENT_CORE})  # the client here, the server on core 0
    _expected_digest(args.mib * MIB // BLOCK)  # hash once, before any timing
    outcomes = []
    for name in names:
        print(f"{name:<13}", end=" ", file=sys.stderr, flush=True)
        outcome = run_server(name, args.mib, args.rate * MIB, args.timeout)
        summary = outcome.failure or "; ".join(
            f"{kind} {'ok' if t.ok else 'FAILED'} +{_mib(t.growth)} in {t.seconds:.1f} s"
            for kind, t in outcome.transfers.items()
        )
        print(summary, file=sys.stderr)
        outcomes.append(outcome)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(outcomes, args.mib, args.rate * MIB, args.note))
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
