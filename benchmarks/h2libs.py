"""h2 versus zttp as dualcorn's HTTP/2 core: server CPU per request, and what each refuses.

``python -m benchmarks.h2libs`` (``--requests N --rounds R --output FILE``) runs in-process,
without sockets, so the numbers are the library's cost alone:

- **speed**: an ``h2`` client (the bytes any RFC 9113 client sends) opens streams 32 at a time
  on one connection (``h2load -m 32``), the server library parses them, the harness answers
  each (``:status 200``, 13-byte DATA) and takes the library's output; the client's reading of
  that output is not timed. Workloads: GET with six browser-like headers, POST with a 1 KiB
  body (HEADERS + DATA, inbound flow-control credit returned), and a new connection per GET
  (preface, SETTINGS, one request). Libraries take turns round by round; the figure is the
  median over rounds of server CPU time (``time.process_time_ns``) per request.
- **conformance**: ``benchmarks.h2attacks`` feeds both libraries the attack and malformed
  inputs of issue 13 as raw frames and records what each does on its own.

Results go to ``benchmarks/results/h2libs.md`` with the machine and the recommendation.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import h2.config
import h2.connection
import h2.events

from benchmarks.h2attacks import CASES, Outcome, run_case
from benchmarks.h2servers import Lib, make

__all__ = ["main", "measure"]

LIBS = ("h2", "zttp")
CONCURRENT = 32  # streams in flight per round trip, as `h2load -m 32`
# Streams per connection. zttp 0.0.35 answers a connection's 4,097th stream with GOAWAY
# ENHANCE_YOUR_CALM (see the conformance table), so connections stay well under that; 1,000 is
# nginx's default `keepalive_requests` for HTTP/2 connections too.
PER_CONNECTION = 1000
POST_BODY = b"x" * 1024
REQUEST_HEADERS = [
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) bench"),
    (b"accept", b"text/html,application/xhtml+xml,*/*;q=0.8"),
    (b"accept-encoding", b"gzip, deflate, br"),
    (b"accept-language", b"en-GB,en;q=0.9"),
    (b"cookie", b"session=0123456789abcdef"),
    (b"x-request-id", b"abc"),
]
RESULTS = Path(__file__).parent / "results" / "h2libs.md"


def _client() -> h2.connection.H2Connection:
    config = h2.config.H2Configuration(client_side=True, header_encoding=None)
    client = h2.connection.H2Connection(config=config)
    client.initiate_connection()
    return client


def _open(client: h2.connection.H2Connection, post: bool, index: int) -> None:
    stream_id = client.get_next_available_stream_id()
    head = [
        (b":method", b"POST" if post else b"GET"),
        (b":scheme", b"http"),
        (b":authority", b"127.0.0.1:8000"),
        (b":path", b"/hello?n=%d" % index),
        *REQUEST_HEADERS,
    ]
    if post:
        head.append((b"content-length", b"%d" % len(POST_BODY)))
        client.send_headers(stream_id, head)
        client.send_data(stream_id, POST_BODY, end_stream=True)
    else:
        client.send_headers(stream_id, head, end_stream=True)


def _read(client: h2.connection.H2Connection, data: bytes) -> None:
    """The client's side, untimed: read the answers and return flow-control credit."""
    for event in client.receive_data(data):
        if isinstance(event, h2.events.DataReceived) and event.flow_controlled_length:
            client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)


def _connections(name: str, requests: int, post: bool) -> int:
    """``requests`` over connections of PER_CONNECTION streams each; server CPU in ns."""
    spent = 0
    while requests > 0:
        count = min(PER_CONNECTION, requests)
        spent += _one_connection(make(name), count, post)
        requests -= count
    return spent


def _one_connection(lib: Lib, requests: int, post: bool) -> int:
    """All ``requests`` on one connection, CONCURRENT per round trip; server CPU in ns."""
    client = _client()
    spent = 0
    begin = time.process_time_ns()
    out = lib.start()
    spent += time.process_time_ns() - begin
    _read(client, out)
    sent = 0
    while sent < requests:
        batch = min(CONCURRENT, requests - sent)
        for i in range(batch):
            _open(client, post, sent + i)
        sent += batch
        data = client.data_to_send()
        begin = time.process_time_ns()
        out = lib.feed(data)
        spent += time.process_time_ns() - begin
        _read(client, out)
    if lib.answered != requests:
        raise RuntimeError(f"{lib.name} answered {lib.answered} of {requests}")
    return spent


def _connection_each(name: str, requests: int) -> int:
    """One GET per new connection: preface, SETTINGS both ways, one stream."""
    spent = 0
    for i in range(requests):
        client = _client()
        _open(client, False, i)
        data = client.data_to_send()
        begin = time.process_time_ns()
        lib = make(name)
        out = lib.start() + lib.feed(data)
        spent += time.process_time_ns() - begin
        _read(client, out)
        if lib.answered != 1:
            raise RuntimeError(f"{name} did not answer")
    return spent


WORKLOADS: dict[str, tuple[str, Callable[[str, int], int]]] = {
    "get": (
        f"GET, 6 headers, {CONCURRENT} streams in flight, {PER_CONNECTION} per connection",
        lambda name, n: _connections(name, n, post=False),
    ),
    "post_1k": (
        f"POST 1 KiB body, {CONCURRENT} in flight, {PER_CONNECTION} per connection",
        lambda name, n: _connections(name, n, post=True),
    ),
    "new_conn": ("new connection per GET (preface + SETTINGS + 1 stream)", _connection_each),
}


def measure(requests: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    """us of server CPU per request, per workload, per library, per round (libraries alternate)."""
    found: dict[str, dict[str, list[float]]] = {w: {lib: [] for lib in LIBS} for w in WORKLOADS}
    for workload, (_, run) in WORKLOADS.items():
        count = requests if workload != "new_conn" else max(1, requests // 10)
        for name in LIBS:  # warm-up: imports, caches, first allocations
            run(name, min(count, 500))
        for round_index in range(rounds):
            order = LIBS if round_index % 2 == 0 else LIBS[::-1]
            for name in order:
                spent = run(name, count)
                found[workload][name].append(spent / 1000 / count)
    return found


def _machine() -> str:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = ", ".join(
        f"{pkg} {importlib.metadata.version(pkg)}" for pkg in ("h2", "hpack", "zttp")
    )
    return (
        f"{cpu}, {platform.system()} {platform.release()}, "
        f"{platform.python_implementation()} {platform.python_version()}; {versions}"
    )


def _speed_table(found: dict[str, dict[str, list[float]]], rounds: int) -> list[str]:
    lines = [
        "| workload | h2 us/req | zttp us/req | h2 / zttp |",
        "|---|---|---|---|",
    ]
    for workload, (label, _) in WORKLOADS.items():
        cells = []
        medians = {}
        for name in LIBS:
            values = found[workload][name]
            medians[name] = statistics.median(values)
            cells.append(f"{medians[name]:.1f} ({min(values):.1f}-{max(values):.1f})")
        ratio = medians["h2"] / medians["zttp"] if medians["zttp"] else float("nan")
        lines.append(f"| `{workload}`: {label} | {cells[0]} | {cells[1]} | {ratio:.1f}x |")
    lines.append("")
    lines.append(f"Median over {rounds} rounds, (min-max) in brackets.")
    return lines


def _conformance_table(outcomes: dict[str, dict[str, Outcome]]) -> list[str]:
    lines = [
        "| input | what a server must do | h2 | zttp |",
        "|---|---|---|---|",
    ]
    for case in CASES:
        row = outcomes[case.key]
        lines.append(
            f"| {case.title} | {case.expected} | {row['h2'].summary()} | {row['zttp'].summary()} |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000, help="requests per round (20000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per library (5)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="markdown file to write")
    parser.add_argument(
        "--recommendation",
        type=Path,
        default=Path(__file__).parent / "h2libs_recommendation.md",
        help="markdown appended as the recommendation (benchmarks/h2libs_recommendation.md)",
    )
    args = parser.parse_args(argv)

    found = measure(args.requests, args.rounds)
    speed = _speed_table(found, args.rounds)
    print("\n".join(speed))
    outcomes = {case.key: {name: run_case(case, name) for name in LIBS} for case in CASES}
    conformance = _conformance_table(outcomes)
    print("\n".join(conformance))
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = [
        "# HTTP/2 library: h2 versus zttp (issue 13)",
        "",
        f"Measured {stamp} by `python -m benchmarks.h2libs --requests {args.requests} "
        f"--rounds {args.rounds}` on: {_machine()}.",
        "",
        "## Server CPU per request (in-process, no sockets)",
        "",
        *speed,
        "",
        "## What each library does on its own with attack and malformed input",
        "",
        "Each input is sent as raw frames after a valid client preface, to a fresh server",
        "connection, in reads of 16 KiB; the harness reads events and answers nothing (except in",
        "the 5,000-GET row) and reads no request body. **yes**: the library alone did what a",
        "server must; 'app sees' counts the request heads it handed to the application; the",
        "frames are those it queued to send; 'read X of Y' where it stopped reading.",
        "",
        *conformance,
    ]
    if args.recommendation.is_file():
        text += ["", "## Recommendation", "", args.recommendation.read_text().strip()]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(text) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
