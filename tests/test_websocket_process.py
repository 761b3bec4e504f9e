"""WebSockets as users meet them: the ``dualcorn`` command stopped by SIGTERM, and a browser.

The browser test drives Debian's headless Chromium through the DevTools protocol (spoken with
the ``websockets`` client): it opens a page served by dualcorn whose script echoes a message
over a WebSocket to the same server, then waits, on a promise resolved by a DOM mutation
rather than a timer, for the echo to appear in the page.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import shutil
import signal
import tempfile
import time
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.apps.ws_fastapi import app
from tests.helpers import run_dualcorn
from tests.support import ServerThread

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_sigterm_closes_websockets_with_1012_after_http_requests_finish() -> None:
    args = ("tests.apps.ws_fastapi:app", "--port", "0", "--log-level", "info")
    with run_dualcorn(*args) as server:
        times: dict[str, float] = {}

        def slow_get() -> httpx.Response:
            response = httpx.get(f"{server.url}/slow?seconds=1.0", timeout=10)
            times["http done"] = time.monotonic()
            return response

        async def scenario() -> tuple[int, httpx.Response]:
            async with connect(f"ws://127.0.0.1:{server.port}/echo") as ws:
                await ws.send("before")
                assert await ws.recv() == "before"
                slow = asyncio.get_running_loop().run_in_executor(None, slow_get)
                await asyncio.sleep(0.3)  # the slow request is now in flight
                server.proc.send_signal(signal.SIGTERM)
                with pytest.raises(ConnectionClosed) as info:
                    await ws.recv()
                times["ws closed"] = time.monotonic()
                assert info.value.rcvd is not None
                return info.value.rcvd.code, await slow

        code, response = asyncio.run(asyncio.wait_for(scenario(), 20))
        exit_code = server.proc.wait(timeout=10)
        log = server.stderr_text()
    assert code == 1012, log
    assert response.status_code == 200 and response.text == "slow done"
    # The socket stayed open until the HTTP request in flight had its answer.
    assert times["ws closed"] >= times["http done"] - 0.05, (times, log)
    assert exit_code == 0, log
    assert re.search(r'"WebSocket /echo" 101 close 1012 ', log), log


# --- The browser ---------------------------------------------------------------------------

# Resolves with the page's result once the echo (or an error) replaced "waiting".
_WAIT_FOR_ECHO = """
new Promise((resolve) => {
  const watch = () => {
    const out = document.getElementById("out");
    const check = () => { if (out.textContent !== "waiting") resolve(out.textContent); };
    new MutationObserver(check).observe(out, {childList: true, characterData: true, subtree: true});
    check();
  };
  if (document.readyState === "complete") watch(); else addEventListener("load", watch);
})
"""


class DevTools:
    """Just enough of the Chrome DevTools protocol: numbered calls, replies matched by id."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.ids = itertools.count(1)

    async def call(self, method: str, session: str | None = None, **params: Any) -> Any:
        message_id = next(self.ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        await self.connection.send(json.dumps(message))
        while True:
            reply = json.loads(await self.connection.recv())
            if reply.get("id") == message_id:  # events (no id) are not needed here
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]


async def _echo_in_browser(page_url: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        browser = await asyncio.create_subprocess_exec(
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", "--remote-debugging-port=0",
            "about:blank",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert browser.stderr is not None
        try:
            endpoint = None
            while endpoint is None:
                line = await browser.stderr.readline()
                assert line, "chromium exited before opening the DevTools endpoint"
                match = re.search(rb"DevTools listening on (ws://\S+)", line)
                endpoint = match.group(1).decode() if match else None
            # Keep draining chromium's chatter so a full pipe never blocks it.
            drain = asyncio.ensure_future(browser.stderr.read())
            async with connect(endpoint, max_size=None) as connection:
                tools = DevTools(connection)
                target = await tools.call("Target.createTarget", url="about:blank")
                attached = await tools.call(
                    "Target.attachToTarget", targetId=target["targetId"], flatten=True
                )
                session = attached["sessionId"]
                await tools.call("Page.navigate", session, url=page_url)
                result = await tools.call(
                    "Runtime.evaluate", session, expression=_WAIT_FOR_ECHO,
                    awaitPromise=True, returnByValue=True,
                )  # fmt: skip
            drain.cancel()
            return str(result["result"]["value"])
        finally:
            if browser.returncode is None:
                browser.kill()
            await browser.wait()


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_browser_echoes_over_a_websocket() -> None:
    with ServerThread(app) as server:
        text = asyncio.run(asyncio.wait_for(_echo_in_browser(f"{server.url}/"), 30))
    assert text == "echoed: hello from the browser"
