"""One frozen, validated :class:`Config` for the whole server.

A Config is plain data: building one imports nothing, binds nothing and configures no logging
(uvicorn's Config sets up logging as a side effect of construction; dualcorn does that in
:mod:`dualcorn.logs` when the server starts).  Every default carries the precedent it follows.
Unknown or conflicting options fail at construction with a message naming the option.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from dualcorn.errors import ConfigError
from dualcorn.mountspec import Mount, StaticDir, parse_mounts, parse_statics

__all__ = ["Config", "HTTPName", "Interface", "LifespanMode", "LoopName", "WSName"]

Interface = Literal["auto", "asgi3", "asgi2", "wsgi"]
LifespanMode = Literal["auto", "on", "off"]
LoopName = Literal["auto", "asyncio", "uvloop"]
HTTPName = Literal["auto", "h11", "httptools", "zttp"]
WSName = Literal["auto", "websockets", "wsproto", "none"]
LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]
LogFormat = Literal["text", "json"]

_CHOICES: dict[str, tuple[str, ...]] = {
    "interface": ("auto", "asgi3", "asgi2", "wsgi"),
    "lifespan": ("auto", "on", "off"),
    "loop": ("auto", "asyncio", "uvloop"),
    "http": ("auto", "h11", "httptools", "zttp"),
    "ws": ("auto", "websockets", "wsproto", "none"),
    "log_level": ("critical", "error", "warning", "info", "debug", "trace"),
    "log_format": ("text", "json"),
    "header_map": ("drop", "refuse", "dangerous"),
    "http2_engine": ("auto", "h2", "zttp"),
}

# ssl.PROTOCOL_* numbers that --ssl-version accepts (uvicorn passes the number to
# ssl.SSLContext).  The numbers are spelled out so that a Config does not import ssl.
SSL_PROTOCOL_TLS_SERVER = 17
SSL_VERSIONS = (17, 2, 5)  # PROTOCOL_TLS_SERVER, PROTOCOL_TLS, PROTOCOL_TLSv1_2

KIB = 1024
_NOT_TOKEN = ' \t\r\n\0:"(),/;<=>?@[\\]{}'
MIB = 1024 * KIB
_INT_MAX = 2**31 - 1  # the largest value a C int option (listen backlog) takes
# gunicorn's "--timeout 0" (Cloud Run's documented command line) means no worker timeout.
_NO_LIMIT_AT_0 = "timeout_worker_healthcheck"


def _default_threads() -> int:
    # concurrent.futures.ThreadPoolExecutor's own default: enough threads for I/O-bound WSGI
    # views on a small machine, capped so a big machine does not start hundreds.
    return min(32, (os.cpu_count() or 1) + 4)


def _web_concurrency() -> int:
    # gunicorn and uvicorn both read WEB_CONCURRENCY (a Heroku convention) for --workers.
    value = os.environ.get("WEB_CONCURRENCY", "1")
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"WEB_CONCURRENCY must be a whole number, not {value!r}") from None


def _forwarded_allow_ips() -> str:
    return os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")


@dataclass(frozen=True, kw_only=True)
class Config:
    """Everything the server needs to know, checked once, before anything starts."""

    # The application: an import string ("module:attr") or the callable itself.
    app: Any

    # --- Application loading -------------------------------------------------------------
    interface: Interface = "auto"
    factory: bool = False
    app_dir: str | None = "."  # uvicorn: the current directory is on sys.path by default
    env_file: str | None = None

    # --- Binding -------------------------------------------------------------------------
    host: str = "127.0.0.1"  # uvicorn and gunicorn: loopback unless asked otherwise
    port: int = 8000  # uvicorn's default port
    uds: str | None = None
    fd: int | None = None
    backlog: int = 2048  # uvicorn and gunicorn: 2048 pending connections
    reuse_port: bool = False

    # --- Implementations -----------------------------------------------------------------
    loop: LoopName = "auto"
    http: HTTPName = "auto"
    ws: WSName = "auto"
    lifespan: LifespanMode = "auto"

    # --- HTTP behaviour ------------------------------------------------------------------
    root_path: str = ""
    server_header: bool = True
    date_header: bool = True
    headers: tuple[tuple[str, str], ...] = ()

    # --- Limits --------------------------------------------------------------------------
    limit_concurrency: int | None = None  # uvicorn: unlimited unless set; 503 past it
    limit_keepalive_requests: int | None = 1000  # nginx keepalive_requests default
    limit_max_requests: int | None = None  # gunicorn max_requests: off by default
    limit_max_requests_jitter: int = 0  # gunicorn max_requests_jitter
    # The whole request head: request line plus header fields.  waitress allows 256 KiB,
    # nginx 4 x 8 KiB buffers, Node.js 16 KiB; 64 KiB admits large cookies and JWTs.
    limit_request_head: int = 64 * KIB
    limit_request_fields: int = 100  # gunicorn limit_request_fields
    # The whole request line.  gunicorn's limit_request_line is 4094; nginx's 8 KiB
    # large_client_header_buffers admit 8190, which long query strings need.
    limit_request_line: int = 8190
    # Bodies stream, so an unlimited body costs no memory; uvicorn and gunicorn set no limit.
    limit_request_body: int | None = None
    # Unread request body held per connection before reading pauses (uvicorn: 64 KiB).
    read_high_water: int = 64 * KIB
    # Unsent response bytes in the transport before the app's send() waits (asyncio's default).
    write_high_water: int = 64 * KIB

    # --- Timeouts (seconds) --------------------------------------------------------------
    timeout_keep_alive: float = 5.0  # uvicorn --timeout-keep-alive default
    # Apache mod_reqtimeout "header=20-40,MinRate=500" and "body=20,MinRate=500": the time a
    # client gets before it must keep sending (see "Slow clients" below for the extension).
    timeout_request_head: float = 20.0
    timeout_body_read: float = 20.0
    timeout_graceful_shutdown: float | None = 30.0  # gunicorn graceful_timeout
    timeout_worker_healthcheck: float = 30.0  # gunicorn --timeout; 0 disables it, as there
    timeout_worker_startup: float = 60.0

    # --- WSGI ----------------------------------------------------------------------------
    threads: int = field(default_factory=_default_threads)

    # --- WebSockets ----------------------------------------------------------------------
    ws_max_size: int = 16 * MIB  # uvicorn and websockets: 16 MiB
    ws_max_queue: int = 32  # uvicorn: 32 unread messages
    ws_ping_interval: float | None = 20.0  # uvicorn and websockets: 20 s
    ws_ping_timeout: float | None = 20.0
    ws_per_message_deflate: bool = True
    ws_close_timeout: float = 10.0  # websockets' close_timeout

    # --- Supervision ---------------------------------------------------------------------
    workers: int = field(default_factory=_web_concurrency)
    reload: bool = False
    reload_dirs: tuple[str, ...] = ()
    reload_includes: tuple[str, ...] = ()
    reload_excludes: tuple[str, ...] = ()
    reload_delay: float = 0.25  # uvicorn --reload-delay

    # --- TLS ---------------------------------------------------------------------------
    # uvicorn's option names and meanings (its config.py); TLS is on when ssl_certfile is set.
    # The files are read when a server process starts (dualcorn.tls), not here: a Config stays
    # plain data, and every new worker or reloaded process reads renewed certificates afresh.
    ssl_keyfile: str | None = None  # None: the private key is in ssl_certfile (ssl module rule)
    ssl_certfile: str | None = None
    ssl_keyfile_password: str | None = field(default=None, repr=False)  # never logged
    ssl_version: int = SSL_PROTOCOL_TLS_SERVER  # uvicorn: ssl.PROTOCOL_TLS_SERVER (17)
    ssl_cert_reqs: int = 0  # uvicorn: ssl.CERT_NONE, no client certificate asked for
    ssl_ca_certs: str | None = None
    ssl_ciphers: str | None = None  # uvicorn 0.54: None, OpenSSL's (and Python's) defaults

    # --- Migration: gunicorn's and uvicorn's habits ---------------------------------------
    # gunicorn --bind, repeatable: HOST:PORT, [::1]:PORT, unix:PATH, fd://N.  When given, the
    # server listens on every one of them, and host/port/uds/fd are not used.
    bind: tuple[str, ...] = ()
    # uvicorn creates its Unix socket 0666: nginx runs as another user and must connect; the
    # directory's permissions are the access control.
    uds_mode: int = 0o666
    # gunicorn --access-logfile / --error-logfile: "-" is stdout (access) or stderr (error).
    access_logfile: str | None = None
    error_logfile: str | None = None

    # --- Proxies -------------------------------------------------------------------------
    # uvicorn --proxy-headers: on by default, believed only from --forwarded-allow-ips.
    proxy_headers: bool = True
    # uvicorn and gunicorn: $FORWARDED_ALLOW_IPS, else loopback only.  A comma list (or a
    # sequence) of addresses, CIDR networks, "*" and "unix"; kept as a tuple of its items.
    forwarded_allow_ips: str | Sequence[str] = field(default_factory=_forwarded_allow_ips)
    # X-Forwarded-Prefix sets root_path: off unless asked (werkzeug ProxyFix x_prefix=0).
    forwarded_prefix: bool = False
    # gunicorn --proxy-protocol: off; the preamble is accepted from --forwarded-allow-ips only.
    proxy_protocol: bool = False

    # --- Slow clients, connection counts ---------------------------------------------------
    # Apache mod_reqtimeout MinRate=500: each 500 bytes received buys one more second, so a
    # slow honest client keeps its connection and one trickling bytes does not; 0 turns the
    # extension off (a fixed head timeout, a body timeout between two reads, as in nginx).
    timeout_min_rate: int = 500
    # Apache "header=20-40": no request head takes longer than this, whatever the rate (and
    # never less than timeout_request_head, so raising that one alone keeps working).
    timeout_request_head_max: float = 40.0
    # nginx worker_connections, gunicorn worker_connections: open connections per process
    # past which a new one is closed at once.  Unset by default, as in uvicorn: the
    # descriptor limit (ulimit -n) bounds them, and running out of descriptors pauses
    # accepting instead of failing (dualcorn.listener).
    limit_connections: int | None = None
    # hypercorn startup_timeout and shutdown_timeout (60 s): a lifespan startup or shutdown
    # that hangs stops the server (exit status 3) instead of holding it forever.
    timeout_lifespan: float | None = 60.0

    # --- Bounds under attack (what a client can make the server hold) --------------------
    # Unread WebSocket message bytes (decompressed) before reading pauses: uvicorn's bound is
    # 128 MiB; 4 MiB keeps a deflate bomb small.
    ws_max_queue_bytes: int = 4 * MIB
    # Fragments of one WebSocket message before 1008: 16 MiB in 4 KiB frames; browsers send one.
    ws_max_fragments: int = 4096
    # nginx send_timeout (60 s): the longest a response waits for a client that reads nothing.
    timeout_send: float = 60.0
    # waitress outbuf_overflow (1 MiB): WSGI response bytes held in memory before spilling to a
    # temporary file; outbuf_high_watermark (16 MiB): in all, before the app thread waits.
    wsgi_outbuf_overflow: int = 1 * MIB
    wsgi_outbuf_high_watermark: int = 16 * MIB
    # WSGI requests waiting for a thread before 503s; gunicorn's gthread worker_connections.
    wsgi_queue: int = 1000

    # --- Config file and log formats (issue #14) -------------------------------------------
    # The file the CLI read options from (dualcorn.toml, pyproject.toml, --config); only for
    # the start-up log: a Config built in Python reads no file.
    config_file: str | None = None
    # gunicorn --access-log-format: its atoms (%(h)s %(r)s %(s)s %({name}i)s...); None keeps
    # dualcorn's own line (uvicorn's fields: client - "request line" status bytes time).
    access_log_format: str | None = None
    # "json": one JSON object per line for every error and access record (Loki, Elasticsearch,
    # CloudWatch); "text" is the default, as in uvicorn and gunicorn.
    log_format: LogFormat = "text"
    # Heroku router, nginx $request_id: the response header echoing the request id (e.g.
    # X-Request-ID).  The same request header from a --forwarded-allow-ips peer is kept.
    request_id_header: str | None = None

    # --- Metrics -------------------------------------------------------------------------
    # Prometheus exporters (node_exporter, nginx's stub_status) listen apart from what they
    # measure: off unless a port is given, on a listener of its own, loopback unless asked
    # (uvicorn's and gunicorn's --host default).  Needs the dualcorn[metrics] extra.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"

    # --- Process and platform (systemd, Kubernetes) ---------------------------------------
    # After SIGTERM, keep accepting and serving this long (each response "Connection: close")
    # before the graceful shutdown: Traefik's requestAcceptGraceTimeout, ingress-nginx's
    # --shutdown-grace-period.  0, as both: stop accepting at once.
    shutdown_delay: float = 0.0

    # --- Mounts and static files ----------------------------------------------------------
    # More apps behind one listener, as NGINX Unit's routes and Werkzeug's DispatcherMiddleware
    # did; "PATH=APP[@INTERFACE[:THREADS]]" strings or Mount values (dualcorn.mountspec).
    mounts: tuple[Mount, ...] = ()
    # Directories served by the server itself, as nginx "location /static/ { alias DIR; }".
    static: tuple[StaticDir, ...] = ()
    static_max_age: int | None = None  # nginx sends no Cache-Control unless "expires" is set
    static_index: bool = False  # index.html for a directory, only when asked (nginx "index")
    static_dotfiles: bool = False  # off: a stray .env or .git/ is never published (nginx would)
    static_follow_symlinks: bool = False  # nginx "disable_symlinks": links leaving DIR refused
    static_fallthrough: bool = False  # a missing file goes to the app (try_files $uri /index)

    # --- Request policy (docs/request-policy.md) -----------------------------------------
    # One header field line: gunicorn limit_request_field_size and nginx's 8 KiB buffer; 431.
    limit_request_field_size: int = 8190
    # Field names with "_": gunicorn 22+ header_map ("drop" by default, as nginx's
    # underscores_in_headers off), "refuse" answers 400, "dangerous" passes them on.
    header_map: Literal["drop", "refuse", "dangerous"] = "drop"

    # --- HTTP/2 (RFC 9113) -----------------------------------------------------------------
    # uvicorn 0.54 --http2/--no-http2: on by default when the h2 package is installed (the
    # "standard" extra installs it); h2c with prior knowledge on plain TCP, ALPN "h2" on TLS.
    http2: bool = True
    # SETTINGS_MAX_CONCURRENT_STREAMS: nginx http2_max_concurrent_streams, h2 and hypercorn
    # default to 100, the floor RFC 9113 6.5.2 recommends; past it a stream is refused.
    http2_max_concurrent_streams: int = 100
    # The HTTP/2 frame layer, as uvicorn's --http picks HTTP/1.1's parser: "h2" (the
    # reference), "zttp" (the fast path uvicorn 0.54 uses; pip install dualcorn[zttp]), or
    # "auto": zttp when installed and within its ceilings, else h2 (http2/engines.py).
    http2_engine: Literal["auto", "h2", "zttp"] = "auto"
    # Streams one connection may carry before a graceful GOAWAY.  None by default, as Go,
    # Envoy and Apache mod_http2: an HTTP/2 client holds one connection for all it does, and
    # nginx's 1000 (keepalive_requests) cuts benchmark connections short (h2load counts the
    # streams after the GOAWAY as failed).
    http2_max_requests: int | None = None

    # --- Garbage collector (dualcorn.gc_tuning) ------------------------------------------
    # gc.freeze() once the app is loaded and started: gunicorn's docs suggest it with
    # preload_app, and the gc module's docs for pre-fork servers; the collector then skips
    # the app's long-lived objects.  On by default: it changes what the collector visits,
    # not what the app sees.
    gc_freeze: bool = True
    # The young generation's threshold (gc.set_threshold's first value; CPython's: 700, 2000
    # from 3.13): fewer collections for more cyclic garbage held in between, the trade Go's
    # GOGC makes.  None leaves the interpreter's; bounded by GC_THRESHOLD_MIN/MAX.
    gc_threshold: int | None = None

    # --- Logging -------------------------------------------------------------------------
    log_level: LogLevel | None = None  # None: leave logging as the host program set it
    log_config: str | dict[str, Any] | None = None
    access_log: bool = True
    use_colors: bool | None = None  # None: colours when stderr is a terminal

    def __post_init__(self) -> None:
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if value is None and name == "log_level":
                continue
            if value not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
        self._check_ranges()
        self._check_slow_clients()
        self._check_log_formats()
        self._check_metrics()
        self._check_conflicts()
        self._check_tls()
        self._check_gc()
        # Normalise sequences so a frozen Config is hashable and safe to share.
        for name in ("reload_dirs", "reload_includes", "reload_excludes", "bind"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "headers", _check_headers(self.headers))
        object.__setattr__(self, "forwarded_allow_ips", _check_allow_ips(self.forwarded_allow_ips))
        object.__setattr__(self, "mounts", parse_mounts(self.mounts))
        object.__setattr__(self, "static", parse_statics(self.static))
        if self.static_max_age is not None and self.static_max_age < 0:
            raise ConfigError("static_max_age must not be negative")
        if (self.reload or self.workers > 1) and any(
            not isinstance(m.app, str) for m in self.mounts
        ):
            raise ConfigError("reload and workers need every mounted app as an import string")

    def _check_gc(self) -> None:
        from dualcorn.gc_tuning import GC_THRESHOLD_MAX, GC_THRESHOLD_MIN

        value = self.gc_threshold
        if value is not None and not GC_THRESHOLD_MIN <= value <= GC_THRESHOLD_MAX:
            raise ConfigError(
                f"gc_threshold must be between {GC_THRESHOLD_MIN} and {GC_THRESHOLD_MAX} "
                f"(or unset); got {value!r}"
            )

    def _check_zttp(self) -> None:
        import importlib.util

        if importlib.util.find_spec("zttp") is None:
            raise ConfigError("http2_engine 'zttp' needs zttp: pip install 'dualcorn[zttp]'")
        # zttp 0.0.35 enforces these itself (dualcorn.protocols.http2.engine_zttp).
        if self.http2_max_concurrent_streams > 128:
            raise ConfigError("http2_engine 'zttp' serves at most 128 concurrent streams")
        if self.limit_request_head > 65536:
            raise ConfigError("http2_engine 'zttp' reads header lists of at most 64 KiB")

    def _check_ranges(self) -> None:
        positive = (
            "backlog", "limit_request_head", "limit_request_fields", "limit_request_line",
            "limit_request_field_size", "read_high_water", "write_high_water", "threads",
            "ws_max_size", "ws_max_queue", "workers", "ws_max_queue_bytes", "ws_max_fragments",
            "wsgi_outbuf_overflow", "wsgi_outbuf_high_watermark", "wsgi_queue",
            "http2_max_concurrent_streams",
        )  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1; got {getattr(self, name)!r}")
        optional_positive = (
            "limit_concurrency", "limit_keepalive_requests", "limit_max_requests",
            "limit_request_body", "http2_max_requests",
        )  # fmt: skip
        for name in optional_positive:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1 (or unset); got {value!r}")
        if self.limit_max_requests_jitter < 0:
            raise ConfigError("limit_max_requests_jitter must not be negative")
        timeouts = (
            "timeout_keep_alive", "timeout_request_head", "timeout_body_read",
            "timeout_worker_healthcheck", "timeout_worker_startup", "ws_close_timeout",
            "reload_delay", "timeout_send",
        )  # fmt: skip
        for name in timeouts:
            if getattr(self, name) <= 0 and name not in ("reload_delay", _NO_LIMIT_AT_0):
                raise ConfigError(f"{name} must be more than 0 seconds")
        for name in ("reload_delay", _NO_LIMIT_AT_0):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative")
        # listen(2) takes a C int; the kernel caps it at net.core.somaxconn anyway.
        if self.backlog > _INT_MAX:
            raise ConfigError(f"backlog must be at most {_INT_MAX}; got {self.backlog}")
        if self.fd is not None and self.fd < 0:
            raise ConfigError(f"fd must be a descriptor number (0 or more); got {self.fd}")
        if self.uds is not None and not self.uds:
            raise ConfigError("uds needs a path, as in /run/app.sock")
        for name in ("timeout_graceful_shutdown", "ws_ping_interval", "ws_ping_timeout"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name} must not be negative")
        if self.shutdown_delay < 0:
            raise ConfigError(f"shutdown_delay must not be negative; got {self.shutdown_delay!r}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be between 0 and 65535; got {self.port}")
        if self.root_path and not self.root_path.startswith("/"):
            raise ConfigError(f"root_path must start with '/'; got {self.root_path!r}")

    def _check_migration(self) -> None:
        from dualcorn.addresses import parse_bind

        if isinstance(self.bind, str):
            raise ConfigError("bind must be a list of addresses, not a single string")
        for item in self.bind:
            parse_bind(item)
        if self.bind and (self.uds is not None or self.fd is not None):
            raise ConfigError("bind replaces uds and fd: give the addresses in bind only")
        if not 0 <= self.uds_mode <= 0o777:
            raise ConfigError(
                f"uds_mode must be a permission mode such as 0o660; got {oct(self.uds_mode)}"
            )

    def _check_slow_clients(self) -> None:
        if self.timeout_min_rate < 0:
            raise ConfigError("timeout_min_rate must not be negative (0 turns it off)")
        if self.timeout_request_head_max <= 0:
            raise ConfigError("timeout_request_head_max must be more than 0 seconds")
        if self.limit_connections is not None and self.limit_connections < 1:
            raise ConfigError("limit_connections must be at least 1 (or unset)")
        if self.timeout_lifespan is not None and self.timeout_lifespan <= 0:
            raise ConfigError("timeout_lifespan must be more than 0 seconds (or unset)")

    def _check_log_formats(self) -> None:
        if self.access_log_format is not None:
            from dualcorn.access_format import compile_format

            compile_format(self.access_log_format)  # a malformed format fails here, once
        if self.log_format == "json" and self.log_config is not None:
            raise ConfigError(
                "log_format json and log_config cannot be combined: use the formatter "
                "dualcorn.json_logs.JSONFormatter in the log config instead"
            )
        name = self.request_id_header
        # RFC 9110 5.1: a field name is a token.
        if name is not None and (not name or any(c in name for c in _NOT_TOKEN)):
            raise ConfigError(f"request_id_header: {name!r} is not a valid header name")

    def _check_metrics(self) -> None:
        port = self.metrics_port
        if port is None:
            return
        if not 0 <= port <= 65535:
            raise ConfigError(f"metrics_port must be between 0 and 65535; got {port}")
        if not self.metrics_host:
            raise ConfigError("metrics_host must not be empty")
        serves_tcp_port = not self.bind and self.uds is None and self.fd is None
        if port != 0 and serves_tcp_port and port == self.port:
            # Its own listener, never the app's: metrics must not be public by accident.
            raise ConfigError(f"metrics_port must differ from port (both are {port})")

    def _check_conflicts(self) -> None:
        if self.http2_engine == "zttp":
            self._check_zttp()
        if self.wsgi_outbuf_overflow > self.wsgi_outbuf_high_watermark:
            raise ConfigError("wsgi_outbuf_overflow must not exceed wsgi_outbuf_high_watermark")
        self._check_migration()
        if self.uds is not None and self.fd is not None:
            raise ConfigError("uds and fd cannot both be given: choose one socket to serve on")
        if self.reload and self.workers > 1:
            raise ConfigError("reload and workers > 1 cannot be combined: reload runs one server")
        if (self.reload or self.workers > 1) and not isinstance(self.app, str):
            option = "reload" if self.reload else "workers"
            raise ConfigError(
                f"{option} needs the app as an import string such as 'main:app', "
                "because each server process imports it afresh"
            )
        if self.factory and self.interface != "auto" and not isinstance(self.app, str):
            raise ConfigError("factory needs the app as an import string")

    def _check_tls(self) -> None:
        if self.ssl_certfile is None:
            for name in ("ssl_keyfile", "ssl_keyfile_password", "ssl_ca_certs", "ssl_ciphers"):
                if getattr(self, name) is not None:
                    raise ConfigError(
                        f"{name} needs ssl_certfile: TLS is on only with a certificate"
                    )
        if self.ssl_version not in SSL_VERSIONS:
            raise ConfigError(
                f"ssl_version {self.ssl_version} is not supported: use 17 "
                "(ssl.PROTOCOL_TLS_SERVER, TLS 1.2 and 1.3), 2 (ssl.PROTOCOL_TLS, the same) or 5 "
                "(TLS 1.2 only); TLS 1.0 and 1.1 are deprecated by RFC 8996"
            )
        if self.ssl_cert_reqs not in (0, 1, 2):
            raise ConfigError(
                f"ssl_cert_reqs must be 0 (none), 1 (optional) or 2 (required); "
                f"got {self.ssl_cert_reqs!r}"
            )
        if self.ssl_cert_reqs and self.ssl_ca_certs is None:
            raise ConfigError(
                "ssl_cert_reqs 1 or 2 asks for client certificates, which are checked against "
                "ssl_ca_certs: give the CA file"
            )

    @property
    def tls(self) -> bool:
        """Whether the server speaks TLS (https and wss)."""
        return self.ssl_certfile is not None

    def replace(self, **changes: Any) -> Config:
        """A copy with some options changed, validated again."""
        return dataclasses.replace(self, **changes)

    @property
    def bind_description(self) -> str:
        """How the log names the addresses before the sockets exist."""
        from dualcorn.addresses import listen_addresses

        return ", ".join(str(address) for address in listen_addresses(self))


def _check_allow_ips(spec: str | Sequence[str]) -> tuple[str, ...]:
    from dualcorn.proxies import TrustedProxies

    items = spec.split(",") if isinstance(spec, str) else list(spec)
    items = [item.strip() for item in items if item.strip()]
    try:
        TrustedProxies(items)
    except ValueError as exc:
        raise ConfigError(f"forwarded_allow_ips: {exc}") from None
    return tuple(items)


def _check_headers(headers: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    checked = []
    for item in headers:
        if len(item) != 2:
            raise ConfigError(f"headers entries must be (name, value) pairs; got {item!r}")
        name, value = item
        # RFC 9110 5.1: a field name is a token; 5.5: values exclude CR, LF and NUL.
        if not name or any(c in name for c in ' \t\r\n\0:"(),/;<=>?@[\\]{}'):
            raise ConfigError(f"headers: {name!r} is not a valid header name")
        if any(c in value for c in "\r\n\0"):
            raise ConfigError(f"headers: the value of {name!r} contains CR, LF or NUL")
        checked.append((name, value))
    return tuple(checked)
