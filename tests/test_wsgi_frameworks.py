"""Real WSGI applications through the adapter: wsgiref's validator, Flask and Django."""

from __future__ import annotations

import gc
import json
import os
import sys
import warnings
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.validate import validator

import pytest

from dualcorn.adapters.wsgi import ZEROCOPY_EXTENSION, WSGIAdapter
from tests.asgi_driver import Exchange, drive, make_scope

Environ = dict[str, Any]
CHUNKED_UPLOAD = [b"first chunk|", b"", b"second chunk|", b"x" * 70_000, b"|last"]
UPLOAD_LENGTH = sum(map(len, CHUNKED_UPLOAD))


async def serve(app: Any, *args: Any, **options: Any) -> Exchange:
    adapter = WSGIAdapter(app, threads=2)
    try:
        return await drive(adapter, *args, **options)
    finally:
        await adapter.shutdown()


# --- wsgiref.validate ------------------------------------------------------------------------


def validated_app(environ: Environ, start_response: Any) -> Iterable[bytes]:
    """Touches every part of the contract the validator checks."""
    stream = environ["wsgi.input"]
    head = stream.readline()
    more = stream.readline(5)
    rest = b"".join(stream.readlines())
    environ["wsgi.errors"].write("validated\n")
    environ["wsgi.errors"].flush()
    if environ["PATH_INFO"] == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written|")
        return [head, more, rest]
    if environ["PATH_INFO"] == "/empty":
        start_response("204 No Content", [])
        return []

    def generate() -> Iterator[bytes]:
        yield head
        yield more
        yield rest

    start_response("200 OK", [("Content-Type", "text/plain")])
    return generate()


@pytest.fixture
def unraisable(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Errors raised in __del__: the validator asserts close() there."""
    found: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", found.append)
    yield found


@pytest.mark.parametrize(
    ("path", "status", "expected"),
    [
        ("/stream", 200, b"line one\nline two\nand the rest"),
        ("/write", 200, b"written|line one\nline two\nand the rest"),
        ("/empty", 204, b""),
    ],
)
async def test_wsgiref_validator_finds_nothing(
    path: str, status: int, expected: bytes, unraisable: list[Any]
) -> None:
    body = [b"line one\nli", b"ne two\nand ", b"the rest"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exchange = await serve(validator(validated_app), method="POST", path=path, body=body)
        gc.collect()
    assert [str(w.message) for w in caught] == []
    assert unraisable == []
    assert exchange.status == status
    assert exchange.body == expected
    assert exchange.complete


# --- Flask -----------------------------------------------------------------------------------


@pytest.fixture
def flask_app(tmp_path: Path) -> Any:
    flask = pytest.importorskip("flask")
    app = flask.Flask(__name__)
    download = tmp_path / "download.bin"
    download.write_bytes(os.urandom(200_000))
    app.config["DOWNLOAD"] = download

    @app.post("/upload")
    def upload() -> Any:
        data = flask.request.get_data()
        return {"length": len(data), "head": data[:12].decode(), "tail": data[-5:].decode()}

    @app.get("/stream")
    def stream() -> Any:
        def generate() -> Iterator[str]:
            for number in range(5):
                yield f"event {number}\n"

        return flask.Response(generate(), mimetype="text/plain")

    @app.get("/file")
    def file() -> Any:
        return flask.send_file(download, mimetype="application/octet-stream")

    return app


async def test_flask_reads_a_chunked_upload(flask_app: Any) -> None:
    exchange = await serve(
        flask_app,
        method="POST",
        path="/upload",
        headers=[(b"transfer-encoding", b"chunked"), (b"content-type", b"text/plain")],
        body=CHUNKED_UPLOAD,
    )
    assert exchange.status == 200
    expected = {"length": UPLOAD_LENGTH, "head": "first chunk|", "tail": "|last"}
    assert json.loads(exchange.body) == expected


async def test_flask_reads_a_multi_chunk_body_with_content_length(flask_app: Any) -> None:
    exchange = await serve(flask_app, method="POST", path="/upload", body=CHUNKED_UPLOAD)
    assert exchange.status == 200
    assert json.loads(exchange.body)["length"] == UPLOAD_LENGTH


async def test_flask_streams_a_generator(flask_app: Any) -> None:
    exchange = await serve(flask_app, path="/stream")
    assert exchange.status == 200
    assert exchange.header("content-type") == "text/plain; charset=utf-8"
    bodies = [m["body"] for m in exchange.body_messages]
    assert bodies == [f"event {n}\n".encode() for n in range(5)] + [b""]


async def test_flask_send_file_uses_zero_copy(flask_app: Any) -> None:
    exchange = await serve(flask_app, make_scope(path="/file", extensions={ZEROCOPY_EXTENSION: {}}))
    size = flask_app.config["DOWNLOAD"].stat().st_size
    assert exchange.status == 200
    assert exchange.header("content-length") == str(size)
    message = exchange.sent[1]
    assert message["type"] == ZEROCOPY_EXTENSION
    assert (message["offset"], message["count"], message["more_body"]) == (0, size, False)
    assert message["file"].closed


async def test_flask_send_file_without_zero_copy(flask_app: Any) -> None:
    exchange = await serve(flask_app, path="/file")
    assert exchange.status == 200
    assert exchange.body == flask_app.config["DOWNLOAD"].read_bytes()


# --- Django ----------------------------------------------------------------------------------


def django_views() -> list[Any]:
    from django.http import FileResponse, HttpResponse, JsonResponse, StreamingHttpResponse
    from django.urls import path

    def echo(request: Any) -> Any:
        return JsonResponse(
            {
                "length": len(request.body),
                "method": request.method,
                "path": request.path,
                "query": request.GET.get("q"),
                "cookie": request.COOKIES.get("b"),
            }
        )

    def stream(request: Any) -> Any:
        return StreamingHttpResponse(f"part {n}\n" for n in range(3))

    def download(request: Any) -> Any:
        return FileResponse(open(request.GET["path"], "rb"))

    def missing(request: Any) -> Any:
        return HttpResponse(status=404)

    return [
        path("echo/", echo),
        path("stream/", stream),
        path("download/", download),
        path("missing/", missing),
    ]


urlpatterns: list[Any] = []


@pytest.fixture(scope="module")
def django_app() -> Iterator[Any]:
    pytest.importorskip("django")
    from django.conf import settings
    from django.test.utils import override_settings

    if not settings.configured:  # other test modules may have configured Django already
        settings.configure(SECRET_KEY="test-only", INSTALLED_APPS=[], USE_TZ=True)
    urlpatterns[:] = django_views()
    from django.core.wsgi import get_wsgi_application

    with override_settings(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"], MIDDLEWARE=[]):
        yield get_wsgi_application()


@pytest.fixture
async def django_adapter(django_app: Any) -> AsyncIterator[WSGIAdapter]:
    adapter = WSGIAdapter(django_app, threads=2)
    yield adapter
    await adapter.shutdown()


async def test_django_reads_the_body_and_the_request_line(django_adapter: WSGIAdapter) -> None:
    exchange = await drive(
        django_adapter,
        method="PUT",
        path="/app/echo/",
        raw_path=b"/app/echo/",
        root_path="/app",
        query_string=b"q=caf%C3%A9",
        headers=[(b"cookie", b"a=1"), (b"cookie", b"b=2")],
        body=CHUNKED_UPLOAD,
    )
    assert exchange.status == 200
    assert json.loads(exchange.body) == {
        "length": UPLOAD_LENGTH,
        "method": "PUT",
        "path": "/app/echo/",
        "query": "café",
        "cookie": "2",
    }


async def test_django_streaming_response(django_adapter: WSGIAdapter) -> None:
    exchange = await drive(django_adapter, path="/stream/")
    assert exchange.status == 200
    assert [m["body"] for m in exchange.body_messages] == [
        b"part 0\n",
        b"part 1\n",
        b"part 2\n",
        b"",
    ]


async def test_django_file_response_uses_zero_copy(
    django_adapter: WSGIAdapter, tmp_path: Path
) -> None:
    data = tmp_path / "report.csv"
    data.write_bytes(b"a,b\n" * 10_000)
    scope = make_scope(
        path="/download/",
        query_string=b"path=" + str(data).encode(),
        extensions={ZEROCOPY_EXTENSION: {}},
    )
    exchange = await drive(django_adapter, scope)
    assert exchange.status == 200
    assert exchange.header("content-length") == "40000"
    assert exchange.sent[1]["type"] == ZEROCOPY_EXTENSION
    assert exchange.sent[1]["file"].closed


async def test_django_status_without_body(django_adapter: WSGIAdapter) -> None:
    exchange = await drive(django_adapter, path="/missing/")
    assert exchange.status == 404
    assert exchange.complete
