"""The ``dualcorn`` command's options: one argparse parser, its help, its error messages.

Names are uvicorn's; gunicorn's habits (``-w``, ``-b``, ``-t``, ``--graceful-timeout``...) are
aliases of the same options.  Parsing is strict where a guess would surprise (no prefix
matching: ``--time`` is an error, not one of five timeouts) and forgiving where people
expect it (sizes as ``512K``/``10M``/``1G``, see :mod:`dualcorn.units`).  Each help line ends
with the default, taken from :class:`~dualcorn.config.Config` so it is written once.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from dualcorn.config import _CHOICES, Config
from dualcorn.units import (
    parse_duration,
    parse_optional_duration,
    parse_optional_size,
    parse_size,
)

__all__ = ["EPILOG", "build_parser", "env_name", "format_size", "parse_bool"]

# uvicorn 0.54's --ws websockets-sansio is dualcorn's one implementation: websockets' sans-IO.
WS_CHOICES = (*_CHOICES["ws"], "websockets-sansio")

EPILOG = """\
examples:
  dualcorn main:app --reload                      # development: restart on every save
  dualcorn main:app --workers 4 --host 0.0.0.0    # uvicorn's options, as they are
  dualcorn -w 4 -b unix:/run/app.sock --access-logfile - wsgi:app   # gunicorn's habits

Every option can also be set in the environment as DUALCORN_<OPTION>: --timeout-keep-alive 10
is DUALCORN_TIMEOUT_KEEP_ALIVE=10 (lists comma-separated), or in dualcorn.toml as
timeout-keep-alive = 10; the command line wins, then the environment, then the file.  Sizes take
binary units (512K, 10M, 1G) or plain bytes; durations are seconds (0.5 is fine).
"""

_SIZES = {"limit_request_body", "limit_request_head", "limit_request_line", "ws_max_size",
          "ws_max_queue_bytes", "wsgi_outbuf_overflow", "wsgi_outbuf_high_watermark"}  # fmt: skip
_SPECIAL_DEFAULTS = {
    "threads": "min(32, CPUs + 4)",
    "workers": "$WEB_CONCURRENCY or 1",
    "log_level": "info",
    "uds_mode": "0666",
    "use_colors": "on when a terminal",
    "app_dir": "the current directory",
    "access_logfile": "stderr",
    "error_logfile": "stderr",
    "root_path": "none",
    "reload_dirs": "the current directory",
    "forwarded_allow_ips": "127.0.0.1,::1 or $FORWARDED_ALLOW_IPS",
    "access_log_format": "dualcorn's own line",
    "metrics_port": "off",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line and a hint, not the 40-line usage block above it.
        self.exit(2, f"{self.prog}: error: {message}\nrun '{self.prog} --help' for the options\n")


class _Ignored(argparse.Action):
    """A gunicorn option that means nothing for dualcorn: one warning line, then go on."""

    def __init__(self, *args: Any, reason: str, **kwargs: Any) -> None:
        kwargs["help"] = f"gunicorn's; ignored: {reason}"
        super().__init__(*args, **kwargs)
        self.reason = reason

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(f"dualcorn: warning: {'/'.join(self.option_strings)} is ignored: {self.reason}",
              file=sys.stderr)  # fmt: skip


class _AlreadySo(argparse.Action):
    """A uvicorn flag asking for what dualcorn always does: accepted, nothing to change."""

    def __init__(self, *args: Any, reason: str, **kwargs: Any) -> None:
        kwargs.update(help=f"uvicorn's; always so in dualcorn: {reason}", nargs=0)
        super().__init__(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        pass


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def _optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "") else int(text)


def _octal(text: str) -> int:
    try:
        return int(text.strip().removeprefix("0o"), 8)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an octal mode such as 660, not {text!r}"
        ) from None


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"--header takes name:value, not {text!r}")
    return name.strip(), value.strip()


_METAVARS: dict[Any, str] = {
    int: "N",
    _optional_int: "N",
    parse_size: "SIZE",
    parse_optional_size: "SIZE",
    parse_duration: "SECONDS",
    parse_optional_duration: "SECONDS",
    parse_bool: "BOOL",
    _octal: "MODE",
    _header: "NAME:VALUE",
}
_DEST_METAVARS = {"host": "HOST", "port": "PORT", "uds": "PATH", "fd": "N", "app_dir": "DIR",
                  "env_file": "FILE", "root_path": "PATH", "bind": "ADDRESS",
                  "reload_dirs": "DIR", "reload_includes": "GLOB", "reload_excludes": "GLOB",
                  "log_config": "FILE"}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="dualcorn",
        usage="dualcorn APP [options]",
        description="Serve an ASGI or WSGI application: dualcorn module:app [options]",
        epilog=EPILOG,
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "app",
        metavar="APP",
        nargs="?",
        help="import string such as 'main:app' or 'pkg.mod:make()' (or app in the config file)",
    )
    p.add_argument("--version", action="store_true", help="print versions and exit")
    g = p.add_argument_group("binding")
    g.add_argument("--host", help="address to bind; IPv6 works too")
    g.add_argument("--port", type=int, help="port to bind; 0 picks a free one")
    g.add_argument("--uds", help="bind a Unix domain socket at this path instead")
    g.add_argument("--fd", type=int, help="serve on an already-bound socket descriptor")
    g.add_argument("--backlog", type=int, help="pending connections the kernel queues")
    g.add_argument("--reuse-port", action=argparse.BooleanOptionalAction, help="SO_REUSEPORT")
    g = p.add_argument_group("application")
    g.add_argument("--interface", choices=_CHOICES["interface"], help="auto, asgi3, asgi2 or wsgi")
    g.add_argument(
        "--factory",
        action=argparse.BooleanOptionalAction,
        help="APP is a factory: call it with no arguments to get the app",
    )
    g.add_argument("--app-dir", help="directory put first on sys.path")
    g.add_argument("--env-file", help="load environment variables from this file first")
    g.add_argument("--lifespan", choices=_CHOICES["lifespan"], help="ASGI lifespan: auto, on, off")
    g.add_argument("--root-path", help="the path prefix this app is mounted at (behind a proxy)")
    g.add_argument("--threads", type=int, help="WSGI thread pool size")
    g = p.add_argument_group("implementation")
    g.add_argument("--loop", choices=_CHOICES["loop"], help="auto, asyncio or uvloop")
    g.add_argument("--http", choices=_CHOICES["http"], help="auto, h11, httptools or zttp")
    g.add_argument("--ws", choices=WS_CHOICES, help="WebSocket implementation, or none")
    g = p.add_argument_group("HTTP")
    g.add_argument("--server-header", action=argparse.BooleanOptionalAction,
                   help="send 'server: dualcorn'")  # fmt: skip
    g.add_argument("--date-header", action=argparse.BooleanOptionalAction,
                   help="send a Date header")  # fmt: skip
    g.add_argument("--header", dest="headers", action="append", type=_header,
                   help="default response header name:value (repeatable)")  # fmt: skip
    g = p.add_argument_group("limits (sizes take 512K, 10M, 1G or bytes)")
    options: tuple[tuple[tuple[str, ...], Any, str], ...] = (
        (("--limit-concurrency",), _optional_int, "requests in flight before 503s"),
        (("--limit-keepalive-requests",), _optional_int, "requests per connection"),
        (("--limit-max-requests", "--max-requests"), _optional_int,
         "requests before a worker retires"),
        (("--limit-max-requests-jitter", "--max-requests-jitter"), int,
         "random extra requests per worker"),
        (("--limit-request-body",), parse_optional_size, "body bytes before 413"),
        (("--limit-request-head",), parse_size, "request head bytes before 431"),
        (("--limit-request-fields",), int, "header fields before 431"),
        (("--limit-request-line",), parse_size, "request line bytes before 414"),
        (("--h11-max-incomplete-event-size",), parse_size,
         "uvicorn's name for --limit-request-head (default: 64K)"),
    )  # fmt: skip
    for flags, kind, text in options:
        g.add_argument(*flags, type=kind, help=text)
    g = p.add_argument_group("timeouts (seconds)")
    options = (
        (("--timeout-keep-alive", "--keep-alive"), parse_duration,
         "idle time between requests"),
        (("--timeout-request-head",), parse_duration, "time to receive a request head"),
        (("--timeout-body-read",), parse_duration,
         "time to receive a body at --timeout-min-rate"),
        (("--timeout-graceful-shutdown", "--graceful-timeout"), parse_optional_duration,
         "wait for requests in flight"),
        (("--timeout-worker-healthcheck", "-t", "--timeout"), parse_duration,
         "a silent worker is restarted after; 0 never"),
    )  # fmt: skip
    for flags, kind, text in options:
        g.add_argument(*flags, type=kind, help=text)
    g = p.add_argument_group("WebSockets")
    g.add_argument("--ws-max-size", type=parse_size, help="largest message")
    g.add_argument("--ws-max-queue", type=int, help="unread messages before reading pauses")
    g.add_argument("--ws-ping-interval", type=parse_optional_duration,
                   help="seconds between pings")  # fmt: skip
    g.add_argument("--ws-ping-timeout", type=parse_optional_duration,
                   help="seconds to wait for a pong")  # fmt: skip
    g.add_argument("--ws-per-message-deflate", type=parse_bool, nargs="?", const=True,
                   help="permessage-deflate compression")  # fmt: skip
    g = p.add_argument_group("supervision")
    g.add_argument("-w", "--workers", type=int, help="server processes")
    g.add_argument("--reload", action=argparse.BooleanOptionalAction, help="restart on edits")
    g.add_argument("--reload-dir", dest="reload_dirs", action="append",
                   help="directory to watch (repeatable)")  # fmt: skip
    g.add_argument("--reload-include", dest="reload_includes", action="append",
                   help="glob of files to watch (repeatable)")  # fmt: skip
    g.add_argument("--reload-exclude", dest="reload_excludes", action="append",
                   help="glob of files to ignore (repeatable)")  # fmt: skip
    g.add_argument("--reload-delay", type=parse_duration, help="seconds to gather a burst of saves")
    _add_migration_group(p)
    g = p.add_argument_group("slow clients, connection counts")
    g.add_argument("--timeout-min-rate", type=parse_size,
                   help="bytes/s extending head and body timeouts (0: fixed)")  # fmt: skip
    g.add_argument("--timeout-request-head-max", type=parse_duration,
                   help="longest a request head may take, whatever its rate")  # fmt: skip
    g.add_argument("--limit-connections", "--worker-connections", type=_optional_int,
                   help="open connections per process; past it new ones close at once")  # fmt: skip
    g.add_argument("--timeout-lifespan", type=parse_optional_duration,
                   help="lifespan startup or shutdown that hangs: exit 3")  # fmt: skip
    g = p.add_argument_group("proxies")
    g.add_argument("--proxy-headers", action=argparse.BooleanOptionalAction,
                   help="use X-Forwarded-* and Forwarded from trusted peers")  # fmt: skip
    g.add_argument("--forwarded-allow-ips", metavar="LIST",
                   help="trusted proxies: IPs, CIDRs, * or unix, comma-separated")  # fmt: skip
    g.add_argument("--forwarded-prefix", action=argparse.BooleanOptionalAction,
                   help="X-Forwarded-Prefix from a trusted proxy sets root_path")  # fmt: skip
    g.add_argument("--proxy-protocol", action=argparse.BooleanOptionalAction,
                   help="expect a PROXY protocol v1/v2 preamble from trusted peers")  # fmt: skip
    g = p.add_argument_group("bounds under attack")
    g.add_argument("--ws-max-queue-bytes", type=parse_size,
                   help="unread WebSocket bytes (decompressed) before reading pauses")  # fmt: skip
    g.add_argument("--ws-max-fragments", type=int,
                   help="fragments of one WebSocket message before closing with 1008")  # fmt: skip
    g.add_argument("--timeout-send", type=parse_duration,
                   help="seconds a response waits for a client that reads nothing")  # fmt: skip
    g.add_argument("--wsgi-outbuf-overflow", type=parse_size,
                   help="WSGI response bytes kept in memory, then in a temporary file")  # fmt: skip
    g.add_argument("--wsgi-outbuf-high-watermark", type=parse_size,
                   help="WSGI response bytes buffered before the app thread waits")  # fmt: skip
    g.add_argument("--wsgi-queue", type=int,
                   help="WSGI requests waiting for a thread before 503s")  # fmt: skip
    g = p.add_argument_group("config file and log formats")
    g.add_argument("-c", "--config", dest="_config", metavar="FILE",
                   help="read options from this TOML file, as gunicorn's -c does from "
                        "Python (default: ./dualcorn.toml, else [tool.dualcorn] in "
                        "./pyproject.toml)")  # fmt: skip
    g.add_argument("--access-log-format", "--access-logformat", metavar="FORMAT",
                   help="the access line in gunicorn's atoms: "
                        "'%%(h)s \"%%(r)s\" %%(s)s'...")  # fmt: skip
    g.add_argument("--log-format", choices=_CHOICES["log_format"],
                   help="text, or json: one JSON object per line")  # fmt: skip
    g.add_argument("--request-id-header", metavar="NAME",
                   help="echo the request id in this response header "
                        "(e.g. X-Request-ID)")  # fmt: skip
    g = p.add_argument_group("metrics (pip install 'dualcorn[metrics]')")
    g.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve Prometheus /metrics on this port, never the app's")  # fmt: skip
    g.add_argument("--metrics-host", metavar="HOST",
                   help="address of the /metrics listener")  # fmt: skip
    g = p.add_argument_group("process and platform")
    g.add_argument("--shutdown-delay", type=parse_duration,
                   help="after SIGTERM, keep serving this long with Connection: close")  # fmt: skip
    _add_tls_group(p)

    _add_mount_group(p)
    g = p.add_argument_group("request policy")
    g.add_argument("--limit-request-field-size", "--limit-request-field_size",  # gunicorn's
                   dest="limit_request_field_size", type=parse_size,
                   help="bytes in one header field line before 431")  # fmt: skip
    g.add_argument("--header-map", choices=_CHOICES["header_map"],
                   help="names with '_': drop, refuse (400) or dangerous (keep)")  # fmt: skip
    g = p.add_argument_group("HTTP/2 (pip install h2, or dualcorn[standard])")
    g.add_argument("--http2", action=argparse.BooleanOptionalAction,
                   help="h2c and ALPN h2 (default: on when h2 is installed)")  # fmt: skip
    g.add_argument("--http2-max-concurrent-streams", type=int,
                   help="streams per connection at once (default: 100)")  # fmt: skip
    g.add_argument("--http2-engine", choices=_CHOICES["http2_engine"],
                   help="HTTP/2 frame layer: h2 or zttp (default: auto, zttp when "
                   "installed and within its 128 streams and 64 KiB head, else h2)")  # fmt: skip
    g.add_argument("--http2-max-requests", type=int,
                   help="streams per connection, then GOAWAY (default: no limit)")  # fmt: skip
    g = p.add_argument_group("garbage collector")
    g.add_argument("--gc-freeze", action=argparse.BooleanOptionalAction,
                   help="gc.freeze() once the app is loaded, so collections skip it")  # fmt: skip
    g.add_argument("--gc-threshold", type=_optional_int, metavar="N",
                   help="young-generation GC threshold, 100-100000 "
                   "(default: Python's)")  # fmt: skip
    g = p.add_argument_group("logging")
    g.add_argument("--log-level", choices=_CHOICES["log_level"], type=str.lower,
                   help="the error log's level")  # fmt: skip
    g.add_argument("--log-config", help="logging config file: .json, .yaml or .ini (uvicorn's too)")
    g.add_argument("--access-log", action=argparse.BooleanOptionalAction,
                   help="one line per response")  # fmt: skip
    g.add_argument("--use-colors", action=argparse.BooleanOptionalAction,
                   help="colour the level names")  # fmt: skip
    _add_defaults(p)
    return p


def _add_tls_group(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("TLS (uvicorn's option names)")
    g.add_argument("--ssl-certfile", metavar="FILE",
                   help="certificate chain (PEM); turns on TLS")  # fmt: skip
    g.add_argument("--ssl-keyfile", metavar="FILE",
                   help="private key (PEM); none: the key is in the certfile")  # fmt: skip
    g.add_argument("--ssl-keyfile-password", metavar="TEXT",
                   help="password of an encrypted key (better: the environment)")  # fmt: skip
    g.add_argument("--ssl-version", type=int,
                   help="17: TLS 1.2 and 1.3; 5: TLS 1.2 only")  # fmt: skip
    g.add_argument("--ssl-cert-reqs", type=int,
                   help="client certificates: 0 none, 1 optional, 2 required")  # fmt: skip
    g.add_argument("--ssl-ca-certs", metavar="FILE",
                   help="CA file that client certificates must chain to")  # fmt: skip
    g.add_argument("--ssl-ciphers", metavar="LIST",
                   help="OpenSSL cipher list for TLS 1.2; none: Python's")  # fmt: skip


def _add_mount_group(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("mounts and static files")
    g.add_argument("--mount", dest="mounts", action="append",
                   metavar="PATH=APP[@INTERFACE[:THREADS]]",
                   help="serve another app below PATH, e.g. /legacy=old:app@wsgi:8 "
                        "(repeatable)")  # fmt: skip
    g.add_argument("--static", action="append", metavar="PATH=DIR",
                   help="serve the files of DIR below PATH, never through the app "
                        "(repeatable)")  # fmt: skip
    g.add_argument("--static-max-age", type=_optional_int,
                   help="Cache-Control max-age of static files, in seconds")  # fmt: skip
    flags = (
        ("--static-index", "index.html for a directory URL"),
        ("--static-dotfiles", "serve file names starting with a dot"),
        ("--static-follow-symlinks", "serve symlinks that lead out of DIR"),
        ("--static-fallthrough", "a missing static file goes to the app (single-page apps)"),
    )
    for flag, text in flags:
        g.add_argument(flag, action=argparse.BooleanOptionalAction, help=text)


def _add_migration_group(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("gunicorn's and uvicorn's habits")
    g.add_argument("-b", "--bind", dest="bind", action="append",
                   help="listen on HOST:PORT, [::1]:PORT, unix:PATH or fd://N (repeatable; "
                        "replaces --host/--port)")  # fmt: skip
    g.add_argument("--uds-mode", type=_octal, help="permissions of the --uds socket file (octal)")
    g.add_argument("--access-logfile", metavar="FILE",
                   help="write access lines to FILE; '-' is stdout")  # fmt: skip
    g.add_argument("--error-logfile", "--log-file", metavar="FILE",
                   help="write the error log to FILE; '-' is stderr")  # fmt: skip
    g.add_argument("--reset-contextvars", action=_AlreadySo, dest="_already_reset_contextvars",
                   reason="each request runs in its own copy of the server's context, "
                          "which holds nothing lifespan set")  # fmt: skip
    ignored: tuple[tuple[tuple[str, ...], int, str], ...] = (
        (("-k", "--worker-class"), 1, "dualcorn serves ASGI and WSGI apps itself"),
        (("--worker-tmp-dir",), 1, "workers report their heartbeat over a pipe"),
        (("--preload",), 0, "each worker imports the app itself"),
        (("-n", "--name"), 1, "process names are left as they are"),
        (("--no-sendfile",), 0, "sendfile is used only where the loop and socket allow it"),
    )  # fmt: skip
    for flags, nargs, why in ignored:
        dest = "_ignored_" + flags[-1].lstrip("-").replace("-", "_")
        g.add_argument(*flags, action=_Ignored, nargs=nargs, dest=dest, reason=why,
                       metavar="VALUE" if nargs else None)  # fmt: skip


def _add_defaults(parser: argparse.ArgumentParser) -> None:
    """End each help line with its default, from Config, unless the line states it already."""
    fields = {f.name: f for f in dataclasses.fields(Config)}
    for action in parser._actions:
        if not action.option_strings or action.help is None:
            continue
        if isinstance(action, _Ignored | _AlreadySo):
            continue
        if action.metavar is None and action.nargs != 0 and action.choices is None:
            metavar = _DEST_METAVARS.get(action.dest) or _METAVARS.get(action.type, "TEXT")
            action.metavar = metavar
        if "(default:" in action.help:
            continue
        field = fields.get(action.dest)
        if field is None:
            continue
        action.help += f" (default: {_default_text(field)})"


def _default_text(field: dataclasses.Field[Any]) -> str:
    if field.name in _SPECIAL_DEFAULTS:
        return _SPECIAL_DEFAULTS[field.name]
    value = field.default
    if value is None or value == ():
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if field.name in _SIZES and isinstance(value, int):
        return format_size(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def format_size(size: int) -> str:
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)


def env_name(action: argparse.Action) -> str:
    """``--timeout-keep-alive`` -> ``DUALCORN_TIMEOUT_KEEP_ALIVE`` (the first long name)."""
    long_names: Sequence[str] = [o for o in action.option_strings if o.startswith("--")]
    option = long_names[0][2:] if long_names else action.dest
    return "DUALCORN_" + option.replace("-", "_").upper()
