"""A small HTTP/1.1 load generator on raw asyncio streams: the fallback when wrk is missing.

Each connection is keep-alive with pipelining off: send one request, read the whole response
(Content-Length, chunked, or until close), record the latency, repeat until the deadline.
It also drives the idle scenario: open many connections, one request each, then hold them.

Run as ``python -m benchmarks.loadgen {throughput,idle} ...``; it prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["IdleResult", "LoadResult", "percentile"]

TIMEOUT = 10.0  # one request, like wrk --timeout 10s


@dataclass(frozen=True)
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    non_2xx: int
    tool: str


@dataclass(frozen=True)
class IdleResult:
    wanted: int
    answered: int  # connections whose one request got a 2xx answer
    errors: int  # refused, reset, timed out or non-2xx
    still_open: int  # of the answered ones, not closed by the server when the hold ended
    open_seconds: float  # time to open and answer them all
    error_kinds: dict[str, int]  # exception name (or "HTTP <status>") -> count


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


def _request(method: str, path: str, body_size: int) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if body_size or method == "POST":
        head += f"Content-Type: application/octet-stream\r\nContent-Length: {body_size}\r\n"
    return head.encode() + b"\r\n" + b"x" * body_size


async def read_response(reader: asyncio.StreamReader) -> tuple[int, int, bool]:
    """Read one response; return (status, body length, whether the connection stays open)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    keep_alive = "close" not in headers.get("connection", "")
    if "content-length" in headers:
        size = int(headers["content-length"])
        await reader.readexactly(size)
        return status, size, keep_alive
    if "chunked" in headers.get("transfer-encoding", ""):
        size = 0
        while True:
            chunk = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if chunk == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailer fields
                return status, size, keep_alive
            await reader.readexactly(chunk + 2)
            size += chunk
    body = await reader.read()  # RFC 9112 6.3: no length, so the body ends at close
    return status, len(body), False


class _Throughput:
    def __init__(
        self,
        host: str,
        port: int,
        request: bytes,
        deadline: float,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port, self.request, self.deadline = host, port, request, deadline
        self.tls = tls
        self.latencies: list[float] = []
        self.errors = 0
        self.non_2xx = 0

    async def worker(self) -> None:
        writer: asyncio.StreamWriter | None = None
        reader: asyncio.StreamReader | None = None
        while time.monotonic() < self.deadline:
            try:
                async with asyncio.timeout(TIMEOUT):
                    if writer is None or reader is None:
                        reader, writer = await asyncio.open_connection(
                            self.host, self.port, ssl=self.tls
                        )
                    started = time.perf_counter()
                    writer.write(self.request)
                    status, _size, keep_alive = await read_response(reader)
                self.latencies.append(time.perf_counter() - started)
                self.non_2xx += not 200 <= status < 400
                if not keep_alive:
                    writer.close()
                    writer = reader = None
            except (
                OSError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                TimeoutError,
                ValueError,
            ):
                self.errors += 1
                if writer is not None:
                    writer.close()
                writer = reader = None
        if writer is not None:
            writer.close()


async def throughput(args: argparse.Namespace) -> LoadResult:
    started = time.monotonic()
    state = _Throughput(
        args.host,
        args.port,
        _request(args.method, args.path, args.body_size),
        started + args.duration,
        _client_tls() if args.tls else None,
    )
    await asyncio.gather(*(state.worker() for _ in range(args.connections)))
    elapsed = time.monotonic() - started
    latencies = sorted(state.latencies)
    return LoadResult(
        rps=len(latencies) / elapsed,
        p50_ms=percentile(latencies, 0.5) * 1e3,
        p99_ms=percentile(latencies, 0.99) * 1e3,
        requests=len(latencies),
        errors=state.errors,
        non_2xx=state.non_2xx,
        tool="benchmarks.loadgen",
    )


async def idle(args: argparse.Namespace) -> IdleResult:
    request = _request("GET", args.path, 0)
    gate = asyncio.Semaphore(args.concurrency)
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    error_kinds: Counter[str] = Counter()
    # One deadline for the whole opening phase, so a server that stops accepting (a
    # connection limit) costs at most --open-timeout seconds, not 10 s per connection.
    open_deadline = asyncio.get_running_loop().time() + args.open_timeout

    async def open_one() -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout_at(open_deadline), gate, asyncio.timeout(TIMEOUT):
                reader, writer = await asyncio.open_connection(args.host, args.port)
                writer.write(request)
                status, _size, _keep = await read_response(reader)
            if 200 <= status < 300:
                held.append((reader, writer))
                return
            error_kinds[f"HTTP {status}"] += 1
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            error_kinds[type(exc).__name__] += 1
        if writer is not None:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(open_one() for _ in range(args.count)))
    open_seconds = time.monotonic() - started
    print(json.dumps({"event": "opened", "answered": len(held)}), flush=True)
    await asyncio.sleep(args.hold)  # the orchestrator samples server RSS meanwhile
    still_open = sum(not reader.at_eof() for reader, _ in held)
    for _, writer in held:
        writer.close()
    return IdleResult(
        args.count,
        len(held),
        error_kinds.total(),
        still_open,
        round(open_seconds, 2),
        dict(error_kinds),
    )


def _client_tls() -> ssl.SSLContext:
    # Like wrk: encrypt, but do not verify (the harness's probe already checked the server).
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen", description=__doc__)
    parser.add_argument("mode", choices=["throughput", "idle"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body-size", type=int, default=0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--hold", type=float, default=3.0)
    parser.add_argument("--open-timeout", type=float, default=60.0)
    parser.add_argument("--tls", action="store_true", help="throughput over TLS (https)")
    args = parser.parse_args(argv)
    from benchmarks.procs import raise_nofile

    raise_nofile()
    job = throughput(args) if args.mode == "throughput" else idle(args)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        result: Any = runner.run(job)
    print(json.dumps(dataclasses.asdict(result)), flush=True)


if __name__ == "__main__":
    main()
