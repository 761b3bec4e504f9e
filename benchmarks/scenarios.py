"""What is measured: one app, one request shape, one interface per scenario.

A throughput scenario hammers one URL with a fixed number of keep-alive connections and
reports requests per second and latency.  An idle scenario opens many keep-alive connections
that each send one request and then sit idle, and reports what they cost the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from benchmarks.servers import Interface

__all__ = ["SCENARIOS", "UPLOAD_SIZE", "Scenario"]

UPLOAD_SIZE = 1024 * 1024
Kind = Literal["throughput", "idle"]


@dataclass(frozen=True)
class Scenario:
    """One row group of the report."""

    name: str
    target: str  # "module:attr" under benchmarks.apps
    interface: Interface
    description: str
    kind: Kind = "throughput"
    method: str = "GET"
    body_size: int = 0
    expect_body_size: int | None = None  # checked once before measuring, when set

    @property
    def app(self) -> str:
        return f"benchmarks.apps.{self.target}"


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("asgi_hello", "asgi_hello:app", "asgi",
                 "raw ASGI 3 app, 13-byte text body", expect_body_size=13),
        Scenario("wsgi_hello", "wsgi_hello:app", "wsgi",
                 "raw WSGI app, 13-byte text body", expect_body_size=13),
        Scenario("fastapi_json", "fastapi_json:app", "asgi",
                 "FastAPI route returning a small JSON dict"),
        Scenario("flask_json", "flask_json:app", "wsgi",
                 "Flask route returning a small JSON dict"),
        Scenario("stream_1mib_asgi", "stream_1mib:asgi_app", "asgi",
                 "ASGI app streaming 1 MiB in 64 KiB chunks (chunked coding)",
                 expect_body_size=UPLOAD_SIZE),
        Scenario("stream_1mib_wsgi", "stream_1mib:wsgi_app", "wsgi",
                 "WSGI generator yielding 1 MiB in 64 KiB chunks",
                 expect_body_size=UPLOAD_SIZE),
        Scenario("upload_1mib_asgi", "upload_1mib:asgi_app", "asgi",
                 "POST 1 MiB, ASGI app reads it all and replies its length",
                 method="POST", body_size=UPLOAD_SIZE),
        Scenario("upload_1mib_wsgi", "upload_1mib:wsgi_app", "wsgi",
                 "POST 1 MiB, WSGI app reads wsgi.input in 64 KiB blocks, replies its length",
                 method="POST", body_size=UPLOAD_SIZE),
        Scenario("idle_keepalive", "asgi_hello:app", "asgi",
                 "10,000 keep-alive connections, one request each, then idle",
                 kind="idle"),
        Scenario("idle_keepalive_wsgi", "wsgi_hello:app", "wsgi",
                 "10,000 keep-alive connections to a WSGI app, one request each, then idle",
                 kind="idle"),
    )
}
