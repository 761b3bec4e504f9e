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
HTTPName = Literal["auto", "h11", "httptools"]
WSName = Literal["auto", "websockets", "wsproto", "none"]
LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]

_CHOICES: dict[str, tuple[str, ...]] = {
    "interface": ("auto", "asgi3", "asgi2", "wsgi"),
    "lifespan": ("auto", "on", "off"),
    "loop": ("auto", "asyncio", "uvloop"),
    "http": ("auto", "h11", "httptools"),
    "ws": ("auto", "websockets", "wsproto", "none"),
    "log_level": ("critical", "error", "warning", "info", "debug", "trace"),
    "header_map": ("drop", "refuse", "dangerous"),
}

KIB = 1024
MIB = 1024 * KIB


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
    timeout_worker_healthcheck: float = 30.0  # gunicorn --timeout
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
        self._check_conflicts()
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

    def _check_ranges(self) -> None:
        positive = (
            "backlog", "limit_request_head", "limit_request_fields", "limit_request_line",
            "limit_request_field_size", "read_high_water", "write_high_water", "threads",
            "ws_max_size", "ws_max_queue", "workers",
        )  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1; got {getattr(self, name)!r}")
        optional_positive = (
            "limit_concurrency", "limit_keepalive_requests", "limit_max_requests",
            "limit_request_body",
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
            "reload_delay",
        )  # fmt: skip
        for name in timeouts:
            if getattr(self, name) <= 0 and name != "reload_delay":
                raise ConfigError(f"{name} must be more than 0 seconds")
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
                f"uds_mode must be a permission mode such as 0o660; got {self.uds_mode!r}"
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

    def _check_conflicts(self) -> None:
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
