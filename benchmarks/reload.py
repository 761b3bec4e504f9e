"""Reload latency: how long an edit takes to be served under ``--reload``, and what clients see.

``python -m benchmarks.reload`` starts each server with ``--reload`` on a small ASGI app in a
temporary directory, polls it every 20 ms from a client thread, rewrites the app a few times,
and records per edit: the time from the write to the first response carrying the new version,
and the slowest request and the failed requests while the server reloads.  Servers take turns
edit by edit (dualcorn, uvicorn, granian, dualcorn, ...), so a busy neighbour hits all alike.

This is where reload timings belong: the test suite asserts only that edits are served with no
failed request (``tests/test_reload.py``).  Results go to ``benchmarks/results/reload.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.procs import ROOT, ServerFailed, ServerProcess, exit_cleanly_on_signals, free_port
from benchmarks.report import machine

__all__ = ["main"]

APP = """VERSION = "{version}"

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = VERSION.encode()
    # A length, so every server sends the body as is (no chunked framing for the poller).
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
    await send({{"type": "http.response.start", "status": 200, "headers": headers}})
    await send({{"type": "http.response.body", "body": body}})
"""

Command = Callable[[int], list[str]]


def _commands() -> dict[str, Command]:
    py = sys.executable
    return {
        "dualcorn": lambda port: [py, "-m", "dualcorn", "app:app", "--reload", "--port",
                                  str(port), "--no-access-log", "--reload-dir", "."],
        "uvicorn": lambda port: [py, "-m", "uvicorn", "app:app", "--reload", "--port",
                                 str(port), "--no-access-log", "--reload-dir", "."],
        "granian": lambda port: ["granian", "--interface", "asgi", "--reload", "--port",
                                 str(port), "--no-ws", "app:app"],
    }  # fmt: skip


def _available(name: str) -> bool:
    if name == "granian":
        return shutil.which("granian") is not None
    return importlib.util.find_spec(name) is not None


@dataclass
class Poll:
    started: float
    ended: float
    text: str | None  # None: the request failed


@dataclass
class Poller:
    """Sends one GET every ``interval`` on a fresh connection, like a browser tab on reload."""

    port: int
    interval: float = 0.02
    results: list[Poll] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _get(self) -> str | None:
        request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                sock.sendall(request)
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
        except OSError:
            return None
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            return None
        return body.decode(errors="replace")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            started = time.monotonic()
            text = self._get()
            self.results.append(Poll(started, time.monotonic(), text))

    @contextlib.contextmanager
    def running(self) -> Iterator[Poller]:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(10)


@dataclass
class EditResult:
    served_after: float | None  # seconds from the write to the new version; None: never
    slowest: float
    failed: int


def _one_edit(directory: Path, poller: Poller, version: str, timeout: float) -> EditResult:
    # As an editor saves (and sed -i): a new file renamed over the old one, so no reloader can
    # read a half-written module.
    staged = directory / "app.py.tmp"
    staged.write_text(APP.format(version=version))
    written = time.monotonic()
    os.replace(staged, directory / "app.py")
    deadline = written + timeout
    served: float | None = None
    while time.monotonic() < deadline and served is None:
        time.sleep(0.02)
        served = next((p.ended - written for p in poller.results
                       if p.started > written and p.text == version), None)  # fmt: skip
    time.sleep(0.3)  # the requests right after the switch belong to this edit too
    window = [p for p in poller.results if p.started > written]
    return EditResult(
        served_after=served,
        slowest=max((p.ended - p.started for p in window), default=0.0),
        failed=sum(p.text is None for p in window),
    )


def run(
    servers: list[str], edits: int, timeout: float, settle: float
) -> dict[str, list[EditResult]]:
    commands = _commands()
    results: dict[str, list[EditResult]] = {name: [] for name in servers}
    for round_no in range(1, edits + 1):
        for name in servers:
            results[name].append(_measure(name, commands[name], round_no, timeout, settle))
    return results


def _measure(
    name: str, command: Command, round_no: int, timeout: float, settle: float
) -> EditResult:
    with tempfile.TemporaryDirectory(prefix=f"reload-{name}-") as tmp:
        directory = Path(tmp)
        (directory / "app.py").write_text(APP.format(version="v0"))
        port = free_port()
        env = {"PYTHONPATH": f"{directory}:{ROOT}"}
        server = ServerProcess(command(port), port, env=env, cwd=directory)
        with server:
            server.wait_ready()
            with Poller(port).running() as poller:
                # A person edits some time after the start; a watcher that is still starting
                # (uvicorn's starts after its first server answers) would miss the edit.
                time.sleep(settle)
                result = _one_edit(directory, poller, f"v{round_no}", timeout)
        print(f"  {name:9} edit {round_no}: served after "
              f"{_ms(result.served_after)}, slowest {_ms(result.slowest)}, "
              f"{result.failed} failed", flush=True)  # fmt: skip
        return result


def _ms(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds * 1000:.0f} ms"


def report(results: dict[str, list[EditResult]], path: Path) -> str:
    info = machine()
    versions = ", ".join(f"{k} {info['packages'].get(k, '?')}" for k in results)
    lines = [
        "# Reload latency",
        "",
        f"Run {info['date']} with `python -m benchmarks.reload` on {info['cpu']}, "
        f"{info['cores']} cores, {info['python']} ({versions}). Per edit, servers take turns, "
        "each started afresh with `--reload`; a client polls every 20 ms on fresh connections. "
        "'Served after' runs from the write to the first response with the new code.",
        "",
        "| server | edits | served after (median) | served after (max) | slowest request "
        "(max) | failed requests |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, edits in results.items():
        served = [e.served_after for e in edits if e.served_after is not None]
        never = len(edits) - len(served)
        lines.append(
            f"| {name} | {len(edits)}{f' ({never} never served)' if never else ''} | "
            f"{_ms(statistics.median(served)) if served else 'never'} | "
            f"{_ms(max(served)) if served else 'never'} | "
            f"{_ms(max(e.slowest for e in edits))} | {sum(e.failed for e in edits)} |"
        )
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    exit_cleanly_on_signals()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reload", description=__doc__)
    parser.add_argument("--server", default="dualcorn,uvicorn,granian")
    parser.add_argument("--edits", type=int, default=5, help="edits per server (5)")
    parser.add_argument("--timeout", type=float, default=10.0, help="wait per edit (10 s)")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds between the server answering and the edit (3)")  # fmt: skip
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    servers = [s for s in args.server.split(",") if s]
    unknown = set(servers) - set(_commands())
    if unknown:
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    missing = [s for s in servers if not _available(s)]
    for name in missing:
        print(f"skipping {name}: not installed")
    servers = [s for s in servers if s not in missing]
    try:
        results = run(servers, args.edits, args.timeout, args.settle)
    except ServerFailed as exc:
        raise SystemExit(f"a server failed: {exc}") from None
    args.output.mkdir(parents=True, exist_ok=True)
    print(report(results, args.output / "reload.md"))


if __name__ == "__main__":
    main()
