"""--static answers like a file server: validators, 304, 206/416, HEAD, types, precompressed.

``@over_both`` runs each served case over HTTP/1.1 on each parser and over HTTP/2 (h2c, httpx
``http2=True``, curl ``--http2-prior-knowledge``): the file server answers through the same
ResponseWriter interface either way, its zero-copy bodies as DATA frames over HTTP/2.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import over_both
from tests.static_tree import HELLO, JS, CountingApp, make_tree
from tests.support import ServerThread, http_client

pytestmark = pytest.mark.timeout(60)
BIG = bytes(range(256)) * 4096


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path)


@pytest.fixture
def files(
    serve: Callable[..., ServerThread], tree: Path, protocol: str
) -> Iterator[tuple[ServerThread, CountingApp, httpx.Client]]:
    app = CountingApp()
    server = serve(app, static=(f"/static={tree}",), static_max_age=3600)
    server.__enter__()
    # Closed before the server: an idle HTTP/2 client that reads nothing would hold the
    # server's graceful GOAWAY for its PING's grace (RFC 9113 6.8).
    with http_client(protocol, base_url=server.url) as client:
        version = client.get("/static/hello.txt").http_version
        assert version == ("HTTP/2" if protocol == "2" else "HTTP/1.1")
        yield server, app, client


Files = tuple[ServerThread, CountingApp, httpx.Client]


@over_both
def test_validators_and_304(files: Files, tree: Path) -> None:
    _, app, client = files
    first = client.get("/static/hello.txt")
    assert first.status_code == 200 and first.content == HELLO
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert etag.startswith('"') and modified.endswith("GMT")
    assert first.headers["content-type"] == "text/plain; charset=utf-8"
    assert first.headers["cache-control"] == "public, max-age=3600"
    assert first.headers["accept-ranges"] == "bytes"
    for headers in (
        {"if-none-match": etag},
        {"if-none-match": f'"other", W/{etag}'},  # weak comparison (RFC 9110 13.1.2)
        {"if-none-match": "*"},
        {"if-modified-since": modified},
        {"if-modified-since": "Fri, 01 Jan 2100 00:00:00 GMT"},
    ):
        again = client.get("/static/hello.txt", headers=headers)
        assert again.status_code == 304, headers
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert again.headers["cache-control"] == "public, max-age=3600"
    for headers in (
        {"if-none-match": '"other"'},
        {"if-modified-since": "Sat, 01 Jan 2000 00:00:00 GMT"},
        {"if-modified-since": "not a date"},
        # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
        {"if-none-match": '"other"', "if-modified-since": modified},
    ):
        assert client.get("/static/hello.txt", headers=headers).status_code == 200, headers
    # Changing the file changes the validator.
    os.utime(tree / "hello.txt", (1_000_000_000, 1_000_000_000))
    changed = client.get("/static/hello.txt", headers={"if-none-match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert app.calls == []


@over_both
def test_preconditions_412(files: Files) -> None:
    _, _, client = files
    first = client.get("/static/hello.txt")
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    for headers, status in (
        ({"if-match": etag}, 200),
        ({"if-match": f'"x", {etag}'}, 200),
        ({"if-match": "*"}, 200),
        ({"if-match": '"x"'}, 412),
        ({"if-match": "W/" + etag}, 412),  # If-Match compares strongly (RFC 9110 13.1.1)
        ({"if-unmodified-since": modified}, 200),
        ({"if-unmodified-since": "Sat, 01 Jan 2000 00:00:00 GMT"}, 412),
        ({"if-unmodified-since": "garbage"}, 200),
        ({"if-match": etag, "if-unmodified-since": "Sat, 01 Jan 2000 00:00:00 GMT"}, 200),
    ):
        response = client.get("/static/hello.txt", headers=headers)
        assert response.status_code == status, headers
        if status == 412:
            assert response.headers["etag"] == etag


@over_both
def test_ranges(files: Files) -> None:
    _, _, client = files
    cases = {
        "bytes=0-4": (206, b"hello", "bytes 0-4/12"),
        "bytes=6-": (206, b"world\n", "bytes 6-11/12"),
        "bytes=-3": (206, b"ld\n", "bytes 9-11/12"),
        "bytes=6-100": (206, b"world\n", "bytes 6-11/12"),
        "bytes=-100": (206, HELLO, "bytes 0-11/12"),
        "bytes=0-0,5-6": (200, HELLO, None),  # several ranges: the whole file instead
        "lines=1-2": (200, HELLO, None),  # an unknown unit is ignored
        "bytes=5-2": (200, HELLO, None),  # invalid: ignored
    }
    for header, (status, body, content_range) in cases.items():
        response = client.get("/static/hello.txt", headers={"range": header})
        assert response.status_code == status, header
        assert response.content == body, header
        assert response.headers.get("content-range") == content_range, header
        assert response.headers["content-length"] == str(len(body))
    for header in ("bytes=12-", "bytes=100-200", "bytes=-0"):
        response = client.get("/static/hello.txt", headers={"range": header})
        assert response.status_code == 416, header
        assert response.headers["content-range"] == "bytes */12"
        assert response.headers.get_list("content-type") == ["text/plain; charset=utf-8"]
    empty = client.get("/static/empty.txt", headers={"range": "bytes=0-"})
    assert empty.status_code == 416
    # A range on HEAD is ignored (RFC 9110 14.2: only GET).
    head = client.head("/static/hello.txt", headers={"range": "bytes=0-4"})
    assert head.status_code == 200 and head.headers["content-length"] == "12"


@over_both
def test_if_range(files: Files) -> None:
    _, _, client = files
    first = client.get("/static/hello.txt")
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    for validator, status in ((etag, 206), (modified, 206), ('"stale"', 200), ("W/" + etag, 200)):
        response = client.get(
            "/static/hello.txt", headers={"range": "bytes=0-4", "if-range": validator}
        )
        assert response.status_code == status, validator


@over_both
def test_big_file_and_a_range_inside_it(files: Files) -> None:
    _, _, client = files
    whole = client.get("/static/big.bin")
    assert whole.status_code == 200 and whole.content == BIG
    assert whole.headers["content-type"] == "application/octet-stream"
    part = client.get("/static/big.bin", headers={"range": "bytes=500000-600000"})
    assert part.status_code == 206 and part.content == BIG[500000:600001]


@over_both
def test_head(files: Files) -> None:
    _, _, client = files
    response = client.head("/static/big.bin")
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(BIG))
    assert response.content == b""
    assert client.get("/static/hello.txt").status_code == 200  # the connection is still good


@over_both
def test_content_types(files: Files) -> None:
    _, _, client = files
    expected = {
        "/static/style.css": "text/css; charset=utf-8",
        "/static/data.json": "application/json; charset=utf-8",
        "/static/image.png": "image/png",
        "/static/noext": "application/octet-stream",
        "/static/sub/index.html": "text/html; charset=utf-8",
        "/static/app.js.gz": "application/gzip",  # asked for by name: the gzip file itself
    }
    for path, kind in expected.items():
        response = client.get(path, headers={"accept-encoding": "identity"})
        assert response.headers["content-type"] == kind, path
        assert "content-encoding" not in response.headers, path
    assert client.get("/static/app.js").headers["content-type"].endswith("charset=utf-8")


@over_both
def test_precompressed_siblings(files: Files) -> None:
    _, _, client = files
    url = "/static/app.js"
    plain = client.get(url, headers={"accept-encoding": "identity"})
    assert plain.content == JS and "content-encoding" not in plain.headers
    assert plain.headers["vary"] == "Accept-Encoding"
    gz = client.get(url, headers={"accept-encoding": "gzip"})
    assert gz.headers["content-encoding"] == "gzip" and gz.content == JS  # httpx decodes gzip
    assert gz.headers["vary"] == "Accept-Encoding"
    assert gz.headers["etag"] != plain.headers["etag"]  # another representation, another tag
    with client.stream("GET", url, headers={"accept-encoding": "br, gzip"}) as br:
        assert br.headers["content-encoding"] == "br"
        assert b"".join(br.iter_raw()).startswith(b"not really brotli")
    refused = client.get(url, headers={"accept-encoding": "br;q=0, gzip;q=0"})
    assert "content-encoding" not in refused.headers and refused.content == JS
    star = client.get(url, headers={"accept-encoding": "*;q=0.5, br;q=0"})
    assert star.headers["content-encoding"] == "gzip"
    # 304 for the compressed representation keeps its own validator and Vary.
    again = client.get(
        url, headers={"accept-encoding": "gzip", "if-none-match": gz.headers["etag"]}
    )
    assert again.status_code == 304 and again.headers["vary"] == "Accept-Encoding"
    # A file with no siblings does not vary.
    assert "vary" not in client.get("/static/hello.txt").headers


@over_both
def test_methods_other_than_get_and_head(files: Files) -> None:
    _, app, client = files
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        response = client.request(method, "/static/hello.txt")
        assert response.status_code == 405, method
        assert response.headers["allow"] == "GET, HEAD"
    assert client.get("/static/missing").status_code == 404
    assert app.calls == []


@over_both
def test_index_and_directory_redirect(
    serve: Callable[..., ServerThread], protocol: str, tree: Path
) -> None:
    options = {"static": (f"/static={tree}",), "static_index": True}
    with (
        serve(CountingApp(), **options) as server,
        http_client(protocol, base_url=server.url) as client,
    ):
        assert client.get("/static/sub/").content == b"<p>index</p>\n"
        moved = client.get("/static/sub?x=1")
        assert moved.status_code == 301 and moved.headers["location"] == "sub/?x=1"
        assert client.get("/static/sub", follow_redirects=True).content == b"<p>index</p>\n"
        root = client.get("/static", follow_redirects=True)
        assert root.status_code == 404 and str(root.url).endswith("/static/")  # no index.html


@over_both
def test_fallthrough_for_a_single_page_app(
    serve: Callable[..., ServerThread], protocol: str, tree: Path
) -> None:
    app = CountingApp()
    options = {"static": (f"/={tree}",), "static_fallthrough": True}
    with serve(app, **options) as server, http_client(protocol, base_url=server.url) as client:
        assert client.get("/hello.txt").content == HELLO
        assert client.get("/users/42").text == "app:GET:/users/42"
        assert client.post("/hello.txt").text == "app:POST:/hello.txt"
        assert client.get("/.env").text == "app:GET:/.env"  # refused as a file, the app's now
        assert app.calls == ["/users/42", "/hello.txt", "/.env"]


@over_both
def test_curl(files: Files, protocol: str) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    server, _, client = files
    url = f"{server.url}/static/big.bin"
    version = ["--http2-prior-knowledge"] if protocol == "2" else []
    status = "HTTP/2 " if protocol == "2" else "HTTP/1.1 "

    def run(*args: str) -> bytes:
        return subprocess.run(
            [curl, "-s", "--max-time", "20", *version, *args], check=True, capture_output=True
        ).stdout

    assert run(url) == BIG
    assert run("-r", "1000-1999", url) == BIG[1000:2000]
    head = run("-I", url).decode()
    assert f"{status}200" in head and f"content-length: {len(BIG)}" in head
    etag = client.get("/static/big.bin").headers["etag"]
    not_modified = run("-i", "-H", f"If-None-Match: {etag}", url).decode()
    assert not_modified.startswith(f"{status}304")
    unsatisfiable = run("-i", "-r", "9999999-", url).decode()
    assert unsatisfiable.startswith(f"{status}416")
    assert "content-range: bytes */" in unsatisfiable
    compressed = run("-i", "-H", "Accept-Encoding: gzip", f"{server.url}/static/only-gz.txt")
    head_text, _, body = compressed.partition(b"\r\n\r\n")
    assert b"content-encoding: gzip" in head_text and gzip.decompress(body) == HELLO


async def test_without_the_zerocopy_extension_blocks_are_sent(tree: Path) -> None:
    """A transport without ``http.response.zerocopysend`` gets the file as body messages."""
    from dualcorn import Config
    from dualcorn.static import StaticFiles

    files = StaticFiles(str(tree), Config(app="m:app"))
    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def receive() -> dict[str, object]:
        raise AssertionError("a GET is answered without reading a body")

    scope = {
        "type": "http", "method": "GET", "headers": [(b"range", b"bytes=1000-599999")],
        "raw_path": b"/static/big.bin", "query_string": b"", "extensions": {},
    }  # fmt: skip
    assert await files(scope, receive, send, [b"big.bin"])
    assert sent[0]["status"] == 206
    body = b"".join(m["body"] for m in sent[1:])  # type: ignore[misc]
    assert body == BIG[1000:600000]
    assert len(sent) > 2 and sent[-1]["more_body"] is False


@over_both
def test_blocks_not_in_the_page_cache_are_read_in_a_thread(
    files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the loop has no sendfile (uvloop), a block RWF_NOWAIT cannot read comes from a
    thread; here every block is made to miss the cache."""
    import dualcorn.protocols.writer as writer

    monkeypatch.setattr(writer, "_read_cached", lambda fd, size, offset: None)
    _, _, client = files
    assert client.get("/static/big.bin").content == BIG
    part = client.get("/static/big.bin", headers={"range": "bytes=300000-"})
    assert part.status_code == 206 and part.content == BIG[300000:]
