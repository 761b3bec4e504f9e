"""Helpers for the WSGI adapter tests: run one request, inspect logs, instrumented bodies."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from dualcorn.adapters.wsgi import WSGIAdapter
from tests.asgi_driver import Exchange, drive

__all__ = ["ClosingBody", "Environ", "StartResponse", "app_returning", "error_records", "serve"]

StartResponse = Any
Environ = dict[str, Any]


async def serve(app: Callable[[Environ, StartResponse], Any], **options: Any) -> Exchange:
    adapter = WSGIAdapter(app, threads=2)
    try:
        return await drive(adapter, **options)
    finally:
        await adapter.shutdown()


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "dualcorn.error" and r.levelno >= 40]


class ClosingBody:
    """A response iterable that counts close() calls and can fail or pause mid-way."""

    def __init__(self, chunks: Iterable[bytes | Exception]) -> None:
        self.chunks = list(chunks)
        self.closed = 0
        self.produced = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            if isinstance(chunk, Exception):
                raise chunk
            self.produced += 1
            yield chunk

    def close(self) -> None:
        self.closed += 1


def app_returning(
    body: Any, status: str = "200 OK", headers: list[tuple[str, str]] | None = None
) -> Callable[[Environ, StartResponse], Any]:
    def app(environ: Environ, start_response: StartResponse) -> Any:
        start_response(status, headers if headers is not None else [("Content-Type", "text/plain")])
        return body

    return app
