"""What is run: the servers under test, how each starts, and the scenarios they run.

Every server runs one process (one worker) with its access log off (on, at level info, in the
scenarios marked ``access_log``: written to the file the harness keeps of that server's output),
bound to 127.0.0.1 on a port picked by the harness.  Names are stable: they are the
``--server`` choices and the table rows.  WSGI servers with a thread pool get the thread count
dualcorn uses by default (``min(32, cpus + 4)``, concurrent.futures' own default) so that no
peer is starved by a default of one thread (gunicorn's gthread) or favoured by a bigger pool.

A throughput scenario hammers one URL with a fixed number of keep-alive connections and
reports requests per second and latency.  An idle scenario opens many keep-alive connections
that each send one request and then sit idle, and reports what they cost the server.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "SCENARIOS",
    "SERVERS",
    "UPLOAD_SIZE",
    "Interface",
    "Scenario",
    "ServerSpec",
    "wsgi_threads",
]

# "static": files served by the server itself (dualcorn --static, granian's static route,
# nginx), with a hello ASGI app behind them that the requests never reach.
Interface = Literal["asgi", "wsgi", "static"]
STATIC_FILES = {"1kib.bin": 1024, "1mib.bin": 1024 * 1024}


def wsgi_threads() -> int:
    """The WSGI thread pool size every threaded peer gets (dualcorn's default)."""
    return min(32, (os.cpu_count() or 1) + 4)


# (target, interface, port, access log on) -> argv.
CommandBuilder = Callable[[str, Interface, int, bool], list[str]]
# (certificate file, key file) -> the server's own flags for TLS.
TLSFlags = Callable[[str, str], list[str]]
# (over TLS?) -> the server's own flags that turn HTTP/2 on (h2c prior knowledge / ALPN h2).
H2Flags = Callable[[bool], list[str]]
Protocol = Literal["http/1.1", "h2"]


def static_root() -> str:
    """The directory the static scenarios serve, created (deterministic bytes) on first use."""
    root = Path(tempfile.gettempdir(), "dualcorn-bench-static")
    root.mkdir(exist_ok=True)
    for name, size in STATIC_FILES.items():
        path = root / name
        if not path.is_file() or path.stat().st_size != size:
            path.write_bytes(bytes(range(256)) * (size // 256))
    return str(root)


# granian sends "Cache-Control: max-age=86400" by default; dualcorn gets the same header.
STATIC_MAX_AGE = 86400


@dataclass(frozen=True)
class ServerSpec:
    """One peer: its name, which interfaces it serves and how to start it."""

    name: str
    interfaces: tuple[Interface, ...]
    build: CommandBuilder
    package: str  # the distribution whose version the report prints
    note: str
    tls_flags: TLSFlags | None = None  # None: the server cannot terminate TLS itself
    h2_flags: H2Flags | None = None  # None: the server (as configured here) has no HTTP/2
    h2_caps: str = ""  # its per-connection HTTP/2 limits, printed under the h2 tables

    def command(
        self,
        target: str,
        interface: Interface,
        port: int,
        access_log: bool = False,
        tls: tuple[str, str] | None = None,
        h2: bool = False,
    ) -> list[str]:
        """The argv that serves ``target`` ("module:attr") on 127.0.0.1:port.

        ``access_log`` turns the server's access log on; ``tls`` is (certificate file, key
        file) for https; ``h2`` turns HTTP/2 on."""
        argv = self.build(target, interface, port, access_log)
        if tls is not None:
            if self.tls_flags is None:
                raise ValueError(f"{self.name} does not serve TLS")
            argv += self.tls_flags(*tls)
        if h2:
            if self.h2_flags is None:
                raise ValueError(f"{self.name} does not serve HTTP/2")
            argv += self.h2_flags(tls is not None)
        return argv

    def serves(self, scenario: Scenario) -> bool:
        """Whether this server takes part in ``scenario`` (its interface; TLS, HTTP/2 if
        needed)."""
        return (
            scenario.interface in self.interfaces
            and (not scenario.tls or self.tls_flags is not None)
            and (scenario.protocol != "h2" or self.h2_flags is not None)
        )


def _logging(access_log: bool, off: str, on: str = "") -> list[str]:
    """Quiet logging, or the access log on at level info (uvicorn-style options).

    The level matters: uvicorn's, granian's and dualcorn's access records are INFO records, so
    "--log-level warning" would silence them even with the access log "on".
    """
    if access_log:
        return [*([on] if on else []), "--log-level", "info"]
    return [off, "--log-level", "warning"]


def _ssl_flags(certfile: str, keyfile: str) -> list[str]:
    # uvicorn's names, which dualcorn shares.
    return ["--ssl-certfile", certfile, "--ssl-keyfile", keyfile]


def _certfile_flags(certfile: str, keyfile: str) -> list[str]:
    # hypercorn's and gunicorn's names.
    return ["--certfile", certfile, "--keyfile", keyfile]


def _granian_tls(certfile: str, keyfile: str) -> list[str]:
    return ["--ssl-certificate", certfile, "--ssl-keyfile", keyfile]


def _dualcorn(http: str) -> CommandBuilder:
    def build(target: str, interface: Interface, port: int, access_log: bool) -> list[str]:
        # --interface is left at "auto": detecting WSGI vs ASGI is part of what is measured.
        argv = [sys.executable, "-m", "dualcorn", target, "--host", "127.0.0.1"]
        argv += ["--port", str(port), *_logging(access_log, "--no-access-log")]
        if http != "auto":
            argv += ["--http", http]
        if interface == "static":
            argv += ["--static", f"/static={static_root()}"]
            argv += ["--static-max-age", str(STATIC_MAX_AGE)]
        return argv

    return build


def _uvicorn(http: str) -> CommandBuilder:
    def build(target: str, interface: Interface, port: int, access_log: bool) -> list[str]:
        argv = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1"]
        argv += ["--port", str(port), *_logging(access_log, "--no-access-log")]
        argv += ["--http", http, "--loop", "auto" if http == "h11" else "uvloop"]
        if interface == "wsgi":
            argv += ["--interface", "wsgi"]
        return argv

    return build


def _hypercorn(target: str, interface: Interface, port: int, access_log: bool) -> list[str]:
    # Hypercorn detects a WSGI callable by itself; "--workers 1" keeps one serving process.
    # Its access log is off unless --access-logfile is given ("-": stdout).
    return [
        sys.executable,
        "-m",
        "hypercorn",
        target,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        *(["--access-logfile", "-", "--log-level", "info"] if access_log else []),
        *([] if access_log else ["--log-level", "warning"]),
    ]


def _granian(target: str, interface: Interface, port: int, access_log: bool) -> list[str]:
    static: list[str] = []
    if interface == "static":
        interface = "asgi"
        static = ["--static-path-route", "/static", "--static-path-mount", static_root()]
    return [
        sys.executable,
        "-m",
        "granian",
        target,
        *static,
        "--interface",
        interface,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-ws",
        *_logging(access_log, "--no-access-log", on="--access-log"),
    ]


def _waitress(target: str, interface: Interface, port: int, access_log: bool) -> list[str]:
    # waitress has no access log of its own (it takes paste's TransLogger middleware), so it
    # runs no access_log scenario: those are ASGI only.
    return [
        sys.executable,
        "-m",
        "waitress",
        f"--listen=127.0.0.1:{port}",
        f"--threads={wsgi_threads()}",
        target,
    ]


def _gunicorn(target: str, interface: Interface, port: int, access_log: bool) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        target,
        "--bind",
        f"127.0.0.1:{port}",
        "--worker-class",
        "gthread",
        "--workers",
        "1",
        "--threads",
        str(wsgi_threads()),
        *(["--access-logfile", "-", "--log-level", "info"] if access_log else []),
        *([] if access_log else ["--log-level", "warning"]),
    ]


_NGINX_CONF = """
worker_processes 1;
pid {home}/nginx.pid;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {home}/body;
    proxy_temp_path {home}/proxy;
    fastcgi_temp_path {home}/fastcgi;
    uwsgi_temp_path {home}/uwsgi;
    scgi_temp_path {home}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location /static/ {{ alias {root}/; expires {max_age}s; }}
    }}
}}
"""


def _nginx(target: str, interface: Interface, port: int, access_log: bool) -> list[str]:
    """nginx (Debian package) serving the same files: one worker process, sendfile on."""
    home = Path(tempfile.gettempdir(), f"dualcorn-bench-nginx-{port}")
    home.mkdir(exist_ok=True)
    conf = home / "nginx.conf"
    conf.write_text(
        _NGINX_CONF.format(home=home, port=port, root=static_root(), max_age=STATIC_MAX_AGE)
    )
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return [nginx, "-e", "stderr", "-p", str(home), "-c", str(conf), "-g", "daemon off;"]


def _flag(*flags: str) -> H2Flags:
    return lambda tls: list(flags)


# h2load counts the streams of a connection the server ends (a per-connection cap) as failed,
# and does not reconnect: these caps explain the errors column of the h2 scenarios.
DUALCORN_H2_CAPS = (
    "its defaults: SETTINGS_MAX_CONCURRENT_STREAMS and --http2-max-requests as "
    "feat/h2 sets them (see the dualcorn README's option table)"
)

BOTH: tuple[Interface, ...] = ("asgi", "wsgi")
WITH_STATIC: tuple[Interface, ...] = ("asgi", "wsgi", "static")

SERVERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in (
        ServerSpec(
            "dualcorn",
            WITH_STATIC,
            _dualcorn("auto"),
            "dualcorn",
            "default: httptools when installed, uvloop, --interface auto; h2 scenarios: "
            "--http2-engine auto (zttp with the bench extra, else h2)",
            _ssl_flags,
            _flag("--http2"),
            DUALCORN_H2_CAPS + "; on zttp (auto with the bench extra) a graceful GOAWAY after "
            "3,840 streams, below zttp's own 4,096",
        ),
        ServerSpec(
            "dualcorn-h11", WITH_STATIC, _dualcorn("h11"), "dualcorn", "--http h11", _ssl_flags
        ),
        # The two HTTP/2 engines named (the plain "dualcorn" row takes --http2-engine auto,
        # which is zttp when the bench extra installed it): dualcorn-h2 keeps the h2 row.
        ServerSpec(
            "dualcorn-h2",
            BOTH,
            _dualcorn("auto"),
            "dualcorn",
            "h2 scenarios: --http2-engine h2 (the h2 library, the reference engine)",
            _ssl_flags,
            _flag("--http2", "--http2-engine", "h2"),
            DUALCORN_H2_CAPS,
        ),
        # zttp both ways, as the uvicorn-zttp row: the HTTP/1.1 tokenizer (--http zttp) and,
        # in the h2 scenarios, the HTTP/2 engine (--http2-engine zttp).
        ServerSpec(
            "dualcorn-zttp",
            WITH_STATIC,
            _dualcorn("zttp"),
            "dualcorn",
            "--http zttp: zttp tokenizes the header fields (pip package zttp); h2 scenarios: "
            "--http2-engine zttp (zttp.H2Connection behind dualcorn's engine)",
            _ssl_flags,
            _flag("--http2", "--http2-engine", "zttp"),
            DUALCORN_H2_CAPS + "; on zttp a graceful GOAWAY after 3,840 streams, below "
            "zttp's own 4,096",
        ),
        ServerSpec(
            "uvicorn",
            BOTH,
            _uvicorn("httptools"),
            "uvicorn",
            "uvicorn[standard]: httptools + uvloop; --interface wsgi for WSGI apps",
            _ssl_flags,
        ),
        ServerSpec(
            "uvicorn-zttp",
            BOTH,
            _uvicorn("zttp"),
            "uvicorn",
            "--http zttp --loop uvloop: uvicorn 0.54's Zig HTTP/1.1 parser (pip package zttp); "
            "h2 scenarios: --http2 (zttp.H2Connection)",
            _ssl_flags,
            _flag("--http2"),
            "zttp 0.0.35: 128 concurrent streams (fixed); its 4,097th stream on a connection "
            "is answered with GOAWAY ENHANCE_YOUR_CALM ('flood detected') and uvicorn closes "
            "the connection: no flag changes it",
        ),
        ServerSpec("uvicorn-h11", BOTH, _uvicorn("h11"), "uvicorn", "--http h11", _ssl_flags),
        ServerSpec(
            "hypercorn",
            BOTH,
            _hypercorn,
            "hypercorn",
            "asyncio worker, 1 worker; HTTP/2 (h2c prior knowledge, ALPN h2) on by default",
            _certfile_flags,
            _flag(),
            "h2_max_concurrent_streams 100; keep_alive_max_requests 1,000 streams per "
            "connection, then GOAWAY (config file only, not a command-line flag)",
        ),
        ServerSpec(
            "granian",
            WITH_STATIC,
            _granian,
            "granian",
            "--interface asgi|wsgi, 1 worker; static: --static-path-route/--static-path-mount; "
            "--http auto (the default) serves h2c prior knowledge and ALPN h2",
            _granian_tls,
            _flag(),
            "--http2-max-concurrent-streams 200 (default); no per-connection stream cap",
        ),
        ServerSpec(
            "waitress",
            ("wsgi",),
            _waitress,
            "waitress",
            f"waitress-serve, {wsgi_threads()} threads",
        ),
        ServerSpec(
            "gunicorn",
            ("wsgi",),
            _gunicorn,
            "gunicorn",
            f"gthread, 1 worker, {wsgi_threads()} threads",
            _certfile_flags,
        ),
        ServerSpec(
            "nginx",
            ("static",),
            _nginx,
            "nginx",
            "static files only: worker_processes 1, sendfile on, location /static/ alias",
        ),
    )
}


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
    tls: bool = False  # served over TLS with benchmarks/certs.py's certificate (https)
    path: str = "/"
    access_log: bool = False  # every server with its access log on (level info)
    protocol: Protocol = "http/1.1"  # "h2": HTTP/2 (h2c prior knowledge, or ALPN h2 with tls)

    @property
    def app(self) -> str:
        return f"benchmarks.apps.{self.target}"


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "asgi_hello",
            "asgi_hello:app",
            "asgi",
            "raw ASGI 3 app, 13-byte text body",
            expect_body_size=13,
        ),
        Scenario(
            "wsgi_hello",
            "wsgi_hello:app",
            "wsgi",
            "raw WSGI app, 13-byte text body",
            expect_body_size=13,
        ),
        Scenario(
            "tls_hello_asgi",
            "asgi_hello:app",
            "asgi",
            "asgi_hello over TLS (keep-alive connections: one handshake each, then requests)",
            expect_body_size=13,
            tls=True,
        ),
        Scenario(
            "tls_hello_wsgi",
            "wsgi_hello:app",
            "wsgi",
            "wsgi_hello over TLS (keep-alive connections: one handshake each, then requests)",
            expect_body_size=13,
            tls=True,
        ),
        Scenario(
            "h2c_hello_asgi",
            "asgi_hello:app",
            "asgi",
            "asgi_hello over HTTP/2 cleartext (h2c, prior knowledge), h2load: many streams on "
            "few connections",
            expect_body_size=13,
            protocol="h2",
        ),
        Scenario(
            "h2_tls_hello_asgi",
            "asgi_hello:app",
            "asgi",
            "asgi_hello over HTTP/2 on TLS (ALPN h2), h2load: many streams on few connections",
            expect_body_size=13,
            tls=True,
            protocol="h2",
        ),
        Scenario(
            "h2c_hello_wsgi",
            "wsgi_hello:app",
            "wsgi",
            "wsgi_hello over h2c (prior knowledge), h2load: many streams on few connections",
            expect_body_size=13,
            protocol="h2",
        ),
        Scenario(
            "fastapi_json", "fastapi_json:app", "asgi", "FastAPI route returning a small JSON dict"
        ),
        Scenario("flask_json", "flask_json:app", "wsgi", "Flask route returning a small JSON dict"),
        Scenario(
            "django_view",
            "django_view:app",
            "wsgi",
            "Django view returning a small JSON dict through Django's WSGI handler "
            "(minimal settings, DEBUG off, no middleware)",
        ),
        Scenario(
            "starlette_json",
            "starlette_json:app",
            "asgi",
            "Starlette route returning a small JSON dict",
        ),
        Scenario(
            "litestar_json",
            "litestar_json:app",
            "asgi",
            "Litestar route returning a small JSON dict",
        ),
        Scenario(
            "asgi_hello_log",
            "asgi_hello:app",
            "asgi",
            "asgi_hello with every server's access log on (level info, one line per request, "
            "written to the file the harness keeps of the server's output)",
            expect_body_size=13,
            access_log=True,
        ),
        Scenario(
            "stream_1mib_asgi",
            "stream_1mib:asgi_app",
            "asgi",
            "ASGI app streaming 1 MiB in 64 KiB chunks (chunked coding)",
            expect_body_size=UPLOAD_SIZE,
        ),
        Scenario(
            "stream_1mib_wsgi",
            "stream_1mib:wsgi_app",
            "wsgi",
            "WSGI generator yielding 1 MiB in 64 KiB chunks",
            expect_body_size=UPLOAD_SIZE,
        ),
        Scenario(
            "upload_1mib_asgi",
            "upload_1mib:asgi_app",
            "asgi",
            "POST 1 MiB, ASGI app reads it all and replies its length",
            method="POST",
            body_size=UPLOAD_SIZE,
        ),
        Scenario(
            "upload_1mib_wsgi",
            "upload_1mib:wsgi_app",
            "wsgi",
            "POST 1 MiB, WSGI app reads wsgi.input in 64 KiB blocks, replies its length",
            method="POST",
            body_size=UPLOAD_SIZE,
        ),
        Scenario(
            "static_1kib",
            "asgi_hello:app",
            "static",
            "a 1 KiB file from /static, served by the server (never the app)",
            expect_body_size=1024,
            path="/static/1kib.bin",
        ),
        Scenario(
            "static_1mib",
            "asgi_hello:app",
            "static",
            "a 1 MiB file from /static (sendfile where the server uses it)",
            expect_body_size=1024 * 1024,
            path="/static/1mib.bin",
        ),
        Scenario(
            "idle_keepalive",
            "asgi_hello:app",
            "asgi",
            "keep-alive connections (10,000 by default), one request each, then idle",
            kind="idle",
        ),
        Scenario(
            "idle_keepalive_wsgi",
            "wsgi_hello:app",
            "wsgi",
            "the same with a WSGI app",
            kind="idle",
        ),
    )
}
