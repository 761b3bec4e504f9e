"""``--reload`` end to end: the real command, a client polling every 20 ms while files change.

What is asserted is behaviour: the new code is served after an edit, no request fails while
the server reloads, a broken edit is reported once while the last good version keeps serving.
How fast a reload is, and the slowest request during one, are measured in
``benchmarks/reload.py`` beside uvicorn and granian; tests never assert timings.  Each test
prints what it measured (``pytest -s`` shows it).
"""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.supervising import Poller, children, is_alive, start_dualcorn, wait_for

ASGI_APP = """
VERSION = "{version}"

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({{"type": "lifespan.startup.complete"}})
            else:
                await send({{"type": "lifespan.shutdown.complete"}})
                return
    if scope["path"] == "/block":
        import sys, time
        print("/block: the event loop is now asleep", file=sys.stderr, flush=True)
        time.sleep(30)  # blocks the event loop: this process cannot stop gracefully
    body = VERSION.encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
    await send({{"type": "http.response.start", "status": 200, "headers": headers}})
    await send({{"type": "http.response.body", "body": body}})
{extra}
"""

WSGI_APP = """
VERSION = "{version}"

def app(environ, start_response):
    body = VERSION.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
{extra}
"""

BROKEN = "\ndef broken(:\n"  # a SyntaxError at import


def write(path: Path, template: str, version: str, extra: str = "") -> float:
    path.write_text(template.format(version=version, extra=extra))
    return time.monotonic()


def served_within(poller: Poller, version: str, written: float) -> float:
    wait_for(lambda: poller.first(version), 5.0, f"{version} to be served")
    result = poller.first(version)
    assert result is not None
    return result.ended - written


def stop_leaving_nothing(server: object) -> None:
    proc = server.proc  # type: ignore[attr-defined]
    family = children(proc.pid)
    assert family, "the supervisor should have server processes"
    assert server.stop(timeout=15) == 0  # type: ignore[attr-defined]
    assert not [pid for pid in family if is_alive(pid)]


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_edits_served_without_a_failed_request(tmp_path: Path, interface: str) -> None:
    if interface == "wsgi":
        pytest.importorskip("dualcorn.adapters.wsgi", reason="the WSGI adapter has not landed")
    template = ASGI_APP if interface == "asgi" else WSGI_APP
    module = tmp_path / "app.py"
    write(module, template, "v1")
    with start_dualcorn("app:app", "--reload", "--port", "0", cwd=tmp_path) as server:
        with Poller(server.url, interval=0.02) as poller:
            time.sleep(1.0)  # a person edits some time after the start
            first = served_within(poller, "v2", write(module, template, "v2"))
            time.sleep(0.5)
            broken_at = write(module, template, "v3", BROKEN)
            time.sleep(2.0)  # the broken code is held: v2 must keep serving
            during = [r.text for r in poller.results if r.started > broken_at]
            fixed = served_within(poller, "v4", write(module, template, "v4"))
            time.sleep(0.3)
        errors = server.stderr_text()
        print(
            f"\n[{interface}] reload: v2 served {first * 1000:.0f} ms after the write, fixed "
            f"code {fixed * 1000:.0f} ms after; {len(poller.results)} requests, "
            f"{len(poller.failures)} failed, slowest {poller.max_latency * 1000:.1f} ms"
        )
        assert poller.failures == []
        assert set(during) == {"v2"}
        # The broken edit is reported once, with where the error is, and what still serves.
        assert errors.count("SyntaxError") == 2  # the traceback's last line, and the summary
        assert errors.count("The new code did not start") == 1
        assert "Still serving the last good version" in errors
        assert "Detected change in 'app.py'. Reloading..." in errors
        stop_leaving_nothing(server)


def test_broken_code_at_start_waits_for_a_fix(tmp_path: Path) -> None:
    module = tmp_path / "app.py"
    write(module, ASGI_APP, "v1", BROKEN)
    with start_dualcorn("app:app", "--reload", "--port", "0", cwd=tmp_path) as server:
        wait_for(lambda: "Waiting for a change" in server.stderr_text(), 10, "the error")
        with pytest.raises(httpx.HTTPError):  # bound, but nothing can answer yet
            httpx.get(server.url, timeout=0.5)
        write(module, ASGI_APP, "v2")
        wait_for(lambda: "is serving" in server.stderr_text(), 10, "the fixed code")
        assert httpx.get(server.url).text == "v2"
        stop_leaving_nothing(server)


def test_a_stuck_old_process_is_killed_after_the_graceful_timeout(tmp_path: Path) -> None:
    module = tmp_path / "app.py"
    write(module, ASGI_APP, "v1")
    args = ("app:app", "--reload", "--port", "0", "--timeout-graceful-shutdown", "0.5")
    with start_dualcorn(*args, cwd=tmp_path) as server:
        # The address is printed (and connections queue) before the first server process is
        # listening.  Requests sent that early reach it in one burst: it accepts them all, then
        # /block puts its loop to sleep and the others die with it when it is killed (any
        # single-threaded event loop server does the same; the kernel cannot take an accepted
        # connection back).  So /block goes alone to a serving process, and the test knows
        # from the app itself, not from a client timeout, that the loop is asleep before it
        # sends anything else.
        wait_for(lambda: "is serving" in server.stderr_text(), 20, "the first server process")
        # Held open, not timed out: a client that gives up could be read as gone before the
        # app is called, and the loop would never block.
        blocked = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        blocked.sendall(b"GET /block HTTP/1.1\r\nHost: test\r\n\r\n")
        wait_for(lambda: "event loop is now asleep" in server.stderr_text(), 10, "/block")
        written = write(module, ASGI_APP, "v2")
        wait_for(lambda: httpx.get(server.url).text == "v2", 10, "the new code")
        wait_for(lambda: "did not stop in time: killing it" in server.stderr_text(), 10, "the kill")
        print(f"\nstuck process killed {time.monotonic() - written:.1f} s after the edit")
        assert httpx.get(server.url).text == "v2"
        blocked.close()
        stop_leaving_nothing(server)


def test_second_ctrl_c_and_sigquit_stop_at_once(tmp_path: Path) -> None:
    write(tmp_path / "app.py", ASGI_APP, "v1")
    with start_dualcorn("app:app", "--reload", "--port", "0", cwd=tmp_path) as server:
        family = children(server.proc.pid)
        server.proc.send_signal(signal.SIGQUIT)
        assert server.proc.wait(timeout=10) == 0
        assert not [pid for pid in family if is_alive(pid)]
