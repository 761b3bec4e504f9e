"""What h2's own header validation and normalisation did, now that the h2 engine turns them
off (``engine.py``: their per-byte Python loops cost a quarter of a request): every check is
made by dualcorn itself, on both engines.  The full list, with the test for each, is in
docs/http2.md ("h2's checks, and who makes them now")."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

pytest.importorskip("h2")

from dualcorn.protocols.http2.request import Malformed, h2_request_head
from tests.support import ServerThread

OK = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"), (b":authority", b"a")]
CONNECT = [(b":method", b"CONNECT"), (b":authority", b"a:443")]


def request_head(fields: list[tuple[bytes, bytes]]) -> Any:
    return h2_request_head(
        fields, line_limit=8190, list_limit=65536, max_fields=100, underscores="drop"
    )


# h2's _reject_illegal_characters on names (RFC 9113 8.2.1: 0x00-0x20, 0x41-0x5a,
# 0x7f-0xff), beyond the cases of tests/test_http2_units.py::test_malformed_by_rfc9113;
# and _check_pseudo_header_field_acceptability on CONNECT (RFC 9113 8.5, RFC 8441 4).
@pytest.mark.parametrize(
    "fields",
    [
        [*OK, (b"x y", b"v")],
        [*OK, (b"x\x01", b"v")],
        [*OK, (b"x\x7f", b"v")],
        [*OK, (b"caf\xc3\xa9", b"v")],
        [*CONNECT, (b":path", b"/")],
        [*CONNECT, (b":scheme", b"https")],
        [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":authority", b"a")],
        [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"https"),
         (b":authority", b"a")],
        [(b":method", b"GET"), (b":protocol", b"websocket"), *OK[1:]],
    ],
)  # fmt: skip
def test_checks_h2_made_are_made_here(fields: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(Malformed):
        request_head(fields)


def test_te_trailers_in_any_case_is_accepted() -> None:
    # RFC 9113 8.2.2 allows TE only with "trailers", a case-insensitive token (RFC 9110
    # 10.1.4, RFC 5234 2.3), as h2 compared it.
    head, _ = request_head([*OK, (b"te", b"Trailers")])
    assert (b"te", b"Trailers") in head.headers


async def padded(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/pseudo":  # a pseudo-header is the server's (RFC 9113 8.3)
        headers = [(b":status", b"204")]
    else:
        # h2's outbound normalisation lower-cased names, stripped edge whitespace and dropped
        # the connection-specific fields (RFC 9113 8.2.1, 8.2.2).
        headers = [(b"x-pad", b" v\t"), (b"X-Case", b"v"), (b"content-type", b"text/plain"),
                   (b"connection", b"keep-alive"), (b"keep-alive", b"timeout=5"),
                   (b"proxy-connection", b"x"), (b"upgrade", b"h2c"),
                   (b"transfer-encoding", b"chunked")]  # fmt: skip
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


def test_response_values_lose_edge_whitespace_for_nghttp() -> None:
    """RFC 9113 8.2.1: an HTTP/2 field value has no whitespace at either end; nghttp2 resets
    a stream whose response has one (h2's outbound normalisation used to strip it)."""
    nghttp = shutil.which("nghttp")
    if nghttp is None:
        pytest.skip("nghttp (Debian nghttp2-client) is not installed")
    with ServerThread(padded) as server:
        done = subprocess.run(
            [nghttp, "-v", f"http://127.0.0.1:{server.port}/"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 0, done.stdout[-2000:]
    assert "RST_STREAM" not in done.stdout
    assert "x-pad: v\n" in done.stdout and "x-case: v\n" in done.stdout
    for name in ("connection", "keep-alive", "proxy-connection", "upgrade", "transfer-enc"):
        assert f"{name}:" not in done.stdout
    assert "recv DATA frame <length=2, flags=0x01" in done.stdout  # "ok", END_STREAM


def test_a_pseudo_header_from_the_app_is_refused() -> None:
    httpx = pytest.importorskip("httpx")
    with ServerThread(padded) as server, httpx.Client(http1=False, http2=True) as client:
        response = client.get(f"http://127.0.0.1:{server.port}/pseudo")
    assert response.http_version == "HTTP/2"
    assert response.status_code == 500  # the app broke the contract; not a 204


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


# Every field fault RFC 9113 calls malformed (8.1.1), as HEADERS on the wire.  On the h2
# engine request.py finds each; on zttp, zttp does and request.py no longer looks
# (checked_request_head): whoever makes the check, the answer must be the same.
WIRE_FAULTS = {
    "upper-case name": [*OK, (b"X-Upper", b"v")],
    "colon in name": [*OK, (b"x:colon", b"v")],
    "empty name": [*OK, (b"", b"v")],
    "space in name": [*OK, (b"x y", b"v")],
    "control byte in name": [*OK, (b"x\x01", b"v")],
    "DEL in name": [*OK, (b"x\x7f", b"v")],
    "non-ASCII name": [*OK, (b"caf\xc3\xa9", b"v")],
    "Connection": [*OK, (b"connection", b"close")],
    "Keep-Alive": [*OK, (b"keep-alive", b"5")],
    "Proxy-Connection": [*OK, (b"proxy-connection", b"x")],
    "Upgrade": [*OK, (b"upgrade", b"websocket")],
    "Transfer-Encoding": [*OK, (b"transfer-encoding", b"chunked")],
    "TE gzip": [*OK, (b"te", b"gzip")],
    "leading space": [*OK, (b"x", b" edge")],
    "trailing tab": [*OK, (b"x", b"edge\t")],
    "NUL in value": [*OK, (b"x", b"a\x00b")],
    "CR in value": [*OK, (b"x", b"a\rb")],
    "LF in value": [*OK, (b"x", b"a\nb")],
    "pseudo-header after a field": [OK[0], (b"x", b"1"), *OK[1:]],
    ":status in a request": [*OK, (b":status", b"200")],
    "unknown pseudo-header": [*OK, (b":foo", b"1")],
    "repeated :path": [*OK, (b":path", b"/again")],
    ":protocol on a GET": [*OK, (b":protocol", b"websocket")],
    "no :scheme": [OK[0], OK[2], OK[3]],
    "empty :path": [OK[0], OK[1], (b":path", b""), OK[3]],
    "no :method": OK[1:],
    "no :authority or Host": OK[:3],
    "Host differs from :authority": [*OK, (b"host", b"b")],
    "two different Hosts": [*OK[:3], (b"host", b"a"), (b"host", b"b")],
    "Content-Length not digits": [*OK, (b"content-length", b"x")],
}


def test_field_faults_are_refused_on_either_engine(h2_engine: str) -> None:
    from dualcorn.protocols.http2.events import PROTOCOL_ERROR
    from tests.h2client import H2Client

    with ServerThread(hello) as server:
        for case, fields in WIRE_FAULTS.items():
            with H2Client(server.port) as client:
                sid = client.raw_headers(fields, end=False)  # a body would follow
                [result] = client.wait(sid)
                # RFC 9113 8.1.1: the status the HTTP/1.1 table gives, then a stream error.
                assert (result.status, result.reset) == (400, PROTOCOL_ERROR), case
                assert client.goaway is None, case
                assert client.get("/").status == 200, case
