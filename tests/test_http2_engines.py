"""What the two HTTP/2 engines (``--http2-engine h2|zttp``) must do alike, frame by frame.

Every test here runs on each installed engine (tests/conftest.py parametrizes the
tests/test_http2*.py modules): the ``zttp`` engine takes back from zttp what a server must
decide (dualcorn.protocols.http2.engine_zttp), and these tests prove it answers as ``h2`` does:
the SETTINGS the server advertises, the per-stream upload window, a window overrun, padding,
the malformed requests zttp refuses on its own, and the graceful end before zttp's stream cap.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

pytest.importorskip("h2")

from hyperframe.frame import DataFrame

from dualcorn.protocols.http2.engine_zttp import GRACEFUL_STREAMS
from dualcorn.protocols.http2.events import NO_ERROR, PROTOCOL_ERROR
from tests.h2client import H2Client
from tests.support import ServerThread

FLOW_CONTROL_ERROR = 3


async def echo_length(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body and answers its length; /idle reads nothing for 10 seconds."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/idle":
        await asyncio.sleep(10)
    total = 0
    while True:
        message = await receive()
        total += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(total).encode()})


def test_the_server_settings(h2_engine: str) -> None:
    with ServerThread(echo_length) as server, H2Client(server.port) as client:
        assert client.get("/").status == 200
        settings = client.remote_settings
        assert settings[3] == 100  # SETTINGS_MAX_CONCURRENT_STREAMS
        assert settings[4] == 65536  # the stream window: --read-high-water
        assert settings[6] == 65536  # the header list: --limit-request-head
        assert settings[8] == 1  # RFC 8441 extended CONNECT: WebSockets over HTTP/2
    with ServerThread(echo_length, ws="none") as server, H2Client(server.port) as client:
        assert client.get("/").status == 200
        assert client.remote_settings.get(8, 0) == 0  # no WebSockets, no extended CONNECT


def test_an_unread_upload_holds_back_its_stream_only(h2_engine: str) -> None:
    """The window dualcorn grants is per stream: a stream whose app does not read gets no
    credit, while another stream on the same connection uploads and is answered."""
    release = asyncio.Event()
    started = threading.Event()
    loop: list[asyncio.AbstractEventLoop] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/wait":
            loop.append(asyncio.get_running_loop())
            started.set()
            async with asyncio.timeout(10):
                await release.wait()
        await echo_length(scope, receive, send)

    with ServerThread(app) as server, H2Client(server.port) as client:
        client.receive_once()
        slow = client.request("/wait", method="POST", end=False)
        assert started.wait(10)
        window = client.conn.local_flow_control_window(slow)
        assert window == 65536
        while client.conn.local_flow_control_window(slow):
            size = min(client.conn.local_flow_control_window(slow), 16384)
            client.conn.send_data(slow, b"s" * size)
        client.flush()
        with pytest.raises(TimeoutError):
            client.receive_once(timeout=0.5)
        assert client.conn.local_flow_control_window(slow) == 0  # no credit: not read
        # Another stream of the same connection is not held back.
        other = client.request("/", method="POST", body=b"o" * 100_000)
        [result] = client.wait(other)
        assert result.status == 200 and bytes(result.data) == b"100000"
        assert client.conn.local_flow_control_window(slow) == 0
        loop[0].call_soon_threadsafe(release.set)
        client.send_body(slow, b"s" * 50_000)  # credit returns as the app reads
        [result] = client.wait(slow)
        assert result.status == 200 and int(result.data) == window + 50_000


def test_data_past_the_window_is_a_flow_control_error(h2_engine: str) -> None:
    """RFC 9113 6.9.1: DATA past the window granted ends the connection."""
    with ServerThread(echo_length) as server, H2Client(server.port) as client:
        client.receive_once()
        sid = client.request("/idle", method="POST", end=False)
        frame = DataFrame(sid)
        frame.data = b"x" * 16384
        client.send_raw(frame.serialize() * 6)  # 96 KiB into a 64 KiB window
        assert client.wait_goaway().error_code == FLOW_CONTROL_ERROR
        client.wait_closed()
    with ServerThread(echo_length) as server, H2Client(server.port) as client:
        assert client.get("/").status == 200


def test_padded_uploads_give_their_window_back(h2_engine: str) -> None:
    """Padding counts against the windows (RFC 9113 6.1) and reaches no app: the server
    grants it back, so padded uploads far past the connection window complete."""
    with ServerThread(echo_length) as server, H2Client(server.port) as client:
        client.receive_once()
        sent = 0
        for _ in range(3):
            sid = client.request("/", method="POST", end=False)
            for _ in range(40):
                while min(client.conn.local_flow_control_window(sid), 16384) < 8192:
                    client.receive_once()
                client.conn.send_data(sid, b"p" * 7000, pad_length=200)
                client.flush()
                sent += 7000
            client.conn.end_stream(sid)
            client.flush()
            [result] = client.wait(sid)
            assert result.status == 200 and int(result.data) == 280_000
        assert sent == 840_000  # more than three times the connection window


@pytest.mark.parametrize(
    "fields",
    [
        [(b"X-Upper", b"v")],
        [(b"connection", b"keep-alive")],
        [(b"te", b"gzip")],
        [(b":protocol", b"websocket")],
        [(b"host", b"other.example")],
    ],
    ids=["upper-case-name", "connection", "te-gzip", "protocol-without-connect", "host-differs"],
)
@pytest.mark.parametrize("end", [True, False], ids=["whole", "body-follows"])
def test_malformed_requests_get_400_on_their_stream(
    h2_engine: str, fields: list[tuple[bytes, bytes]], end: bool
) -> None:
    """RFC 9113 8.1.1 and 8.2.2: 400 on that stream, RST_STREAM PROTOCOL_ERROR after it if
    the client was still sending, and the connection goes on."""
    base = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
            (b":authority", b"example.com")]  # fmt: skip
    with ServerThread(echo_length) as server, H2Client(server.port) as client:
        sid = client.raw_headers(base + fields, end=end)
        [result] = client.wait(sid)
        assert result.status == 400
        if not end:
            while result.reset is None and client.receive_once(timeout=5):
                pass
            assert result.reset == PROTOCOL_ERROR
        assert client.goaway is None
        assert client.get("/after").status == 200


def test_a_stream_refused_by_policy_is_reset_with_no_error(h2_engine: str) -> None:
    """A request the shared policy refuses (a body over --limit-request-body) is answered
    and the upload stopped with NO_ERROR (RFC 9113 8.1)."""
    with ServerThread(echo_length, limit_request_body=10) as server, H2Client(server.port) as c:
        sid = c.request("/", method="POST", headers=[("content-length", "11")], end=False)
        [result] = c.wait(sid)
        assert result.status == 413
        while result.reset is None and c.receive_once(timeout=5):
            pass
        assert result.reset == NO_ERROR
        assert c.get("/after").status == 200


def test_a_long_connection_ends_gracefully(h2_engine: str) -> None:
    """Without a keep-alive cap, the zttp engine ends a connection with a graceful GOAWAY
    before zttp's own limit (its 4,097th stream would be a connection error); h2 goes on."""
    count = GRACEFUL_STREAMS + 100
    with (
        ServerThread(echo_length, limit_keepalive_requests=None) as server,
        H2Client(server.port, timeout=30) as client,
    ):
        served = 0
        while served < count and client.goaway is None:
            sids = [client.request("/") for _ in range(50)]
            results = client.wait(sids)
            answered = [r for r in results if r.headers]
            assert all(r.status == 200 for r in answered)
            served += len(answered)
        if h2_engine == "zttp":
            goaway = client.wait_goaway()
            assert goaway.error_code == NO_ERROR  # graceful, not zttp's ENHANCE_YOUR_CALM
            assert GRACEFUL_STREAMS <= served <= GRACEFUL_STREAMS + 50
            client.wait_closed()
            assert all(g.error_code == NO_ERROR for g in client.goaways)
            assert client.goaways[-1].last_stream_id < 2 * 4096
        else:
            assert client.goaway is None and served >= count
