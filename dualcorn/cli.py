"""The ``dualcorn`` command: options -> :class:`Config`; the only place that exits the process.

Option names are uvicorn's, so ``uvicorn main:app --port 8080`` becomes
``dualcorn main:app --port 8080``.  Every option can also come from the environment as
``DUALCORN_<OPTION>`` (``--timeout-keep-alive`` is ``DUALCORN_TIMEOUT_KEEP_ALIVE``); the command
line wins.  Options left unset take :class:`Config`'s defaults, so the defaults live in one place.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

from dualcorn import __version__
from dualcorn.config import _CHOICES, Config
from dualcorn.errors import ConfigError, LoadError, StartupError

__all__ = ["build_parser", "config_from_args", "main"]

STARTUP_FAILED = 3  # gunicorn's and uvicorn's exit status when the app cannot start
_LIST_OPTIONS = {"reload_dirs", "reload_includes", "reload_excludes", "headers"}


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def _optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "") else int(text)


def _optional_float(text: str) -> float | None:
    return None if text.lower() in ("none", "") else float(text)


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"--header takes name:value, not {text!r}")
    return name.strip(), value.strip()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dualcorn",
        description="Serve an ASGI or WSGI application: dualcorn module:app [options]",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument(
        "app", metavar="APP", help="import string such as 'main:app' or 'pkg.mod:make()'"
    )
    p.add_argument("--version", action="store_true", help="print versions and exit")
    g = p.add_argument_group("binding")
    g.add_argument("--host", help="address to bind (default 127.0.0.1; IPv6 works too)")
    g.add_argument("--port", type=int, help="port to bind (default 8000; 0 picks a free one)")
    g.add_argument("--uds", help="bind a Unix domain socket at this path instead")
    g.add_argument("--fd", type=int, help="serve on an already-bound socket descriptor")
    g.add_argument("--backlog", type=int, help="pending connections the kernel queues (2048)")
    g.add_argument("--reuse-port", action=argparse.BooleanOptionalAction, help="SO_REUSEPORT")
    g = p.add_argument_group("application")
    g.add_argument("--interface", choices=_CHOICES["interface"], help="auto, asgi3, asgi2 or wsgi")
    g.add_argument(
        "--factory",
        action=argparse.BooleanOptionalAction,
        help="APP is a factory: call it with no arguments to get the app",
    )
    g.add_argument("--app-dir", help="directory put first on sys.path (default '.')")
    g.add_argument("--env-file", help="load environment variables from this file first")
    g.add_argument("--lifespan", choices=_CHOICES["lifespan"], help="ASGI lifespan: auto, on, off")
    g.add_argument("--root-path", help="the path prefix this app is mounted at (behind a proxy)")
    g.add_argument("--threads", type=int, help="WSGI thread pool size (default min(32, cpus+4))")
    g = p.add_argument_group("implementation")
    g.add_argument("--loop", choices=_CHOICES["loop"], help="auto, asyncio or uvloop")
    g.add_argument("--http", choices=_CHOICES["http"], help="auto, h11 or httptools")
    g.add_argument("--ws", choices=_CHOICES["ws"], help="WebSocket implementation, or none")
    g = p.add_argument_group("HTTP")
    g.add_argument("--server-header", action=argparse.BooleanOptionalAction)
    g.add_argument("--date-header", action=argparse.BooleanOptionalAction)
    g.add_argument(
        "--header",
        dest="headers",
        action="append",
        type=_header,
        help="default response header name:value (repeatable)",
    )
    g = p.add_argument_group("limits")
    options: tuple[tuple[str, Any, str], ...] = (
        ("--limit-concurrency", _optional_int, "requests in flight before 503s"),
        ("--limit-keepalive-requests", _optional_int, "requests per connection (1000)"),
        ("--limit-max-requests", _optional_int, "requests before a worker retires"),
        ("--limit-max-requests-jitter", int, "random extra requests (0)"),
        ("--limit-request-body", _optional_int, "body bytes before 413 (unlimited)"),
        ("--limit-request-head", int, "request head bytes before 431 (65536)"),
        ("--limit-request-fields", int, "header fields before 431 (100)"),
        ("--limit-request-line", int, "request line bytes before 414 (8190)"),
        ("--h11-max-incomplete-event-size", int, "uvicorn's name for --limit-request-head"),
    )
    for flag, kind, text in options:
        g.add_argument(flag, type=kind, help=text)
    g = p.add_argument_group("timeouts (seconds)")
    options = (
        ("--timeout-keep-alive", float, "idle time between requests (5)"),
        ("--timeout-request-head", float, "time to receive a request head (60)"),
        ("--timeout-body-read", float, "longest gap while reading a body (60)"),
        ("--timeout-graceful-shutdown", _optional_float, "wait for requests in flight (30)"),
        ("--timeout-worker-healthcheck", float, "a silent worker is restarted after (30)"),
    )
    for flag, kind, text in options:
        g.add_argument(flag, type=kind, help=text)
    g = p.add_argument_group("WebSockets")
    g.add_argument("--ws-max-size", type=int, help="largest message in bytes (16 MiB)")
    g.add_argument("--ws-max-queue", type=int, help="unread messages before reading pauses")
    g.add_argument("--ws-ping-interval", type=_optional_float, help="seconds between pings")
    g.add_argument("--ws-ping-timeout", type=_optional_float, help="seconds to wait for a pong")
    g.add_argument(
        "--ws-per-message-deflate",
        type=_bool,
        nargs="?",
        const=True,
        help="permessage-deflate compression (true)",
    )
    g = p.add_argument_group("supervision")
    g.add_argument("--workers", type=int, help="server processes (default $WEB_CONCURRENCY or 1)")
    g.add_argument("--reload", action=argparse.BooleanOptionalAction, help="restart on edits")
    g.add_argument("--reload-dir", dest="reload_dirs", action="append")
    g.add_argument("--reload-include", dest="reload_includes", action="append")
    g.add_argument("--reload-exclude", dest="reload_excludes", action="append")
    g.add_argument("--reload-delay", type=float, help="seconds to gather a burst of saves")
    g = p.add_argument_group("request policy")
    g.add_argument(
        "--limit-request-field-size",
        "--limit-request-field_size",  # gunicorn's spelling
        dest="limit_request_field_size",
        type=int,
        help="bytes in one header field line before 431 (8190)",
    )
    g.add_argument(
        "--header-map",
        choices=_CHOICES["header_map"],
        help="header names with '_': drop, refuse (400) or dangerous (keep) (drop)",
    )
    g = p.add_argument_group("logging")
    g.add_argument("--log-level", choices=_CHOICES["log_level"], help="default info")
    g.add_argument("--log-config", help="logging config file: .json, .yaml or .ini")
    g.add_argument("--access-log", action=argparse.BooleanOptionalAction)
    g.add_argument("--use-colors", action=argparse.BooleanOptionalAction)
    return p


def _from_environment(parser: argparse.ArgumentParser, given: dict[str, Any]) -> None:
    """Fill options the command line left out from DUALCORN_<OPTION> variables."""
    for action in parser._actions:
        dest = action.dest
        if dest in given or dest in ("help", "app", "version"):
            continue
        option = action.option_strings[0][2:] if action.option_strings else dest
        env_name = "DUALCORN_" + option.replace("-", "_").upper()
        raw = os.environ.get(env_name)
        if raw is None:
            continue
        try:
            if isinstance(action, argparse.BooleanOptionalAction):
                value: Any = _bool(raw)
            elif dest in _LIST_OPTIONS:
                convert = action.type or str
                value = [convert(part) for part in raw.split(",") if part.strip()]  # type: ignore[operator]
            elif action.type is not None:
                value = action.type(raw)  # type: ignore[operator]
            else:
                value = raw
        except (ValueError, argparse.ArgumentTypeError) as exc:
            parser.error(f"{env_name}={raw!r}: {exc}")
        if action.choices is not None and value not in action.choices:
            parser.error(f"{env_name} must be one of {', '.join(map(str, action.choices))}")
        given[dest] = value


def config_from_args(argv: Sequence[str] | None = None) -> Config:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    _from_environment(parser, args)
    args.pop("version", None)
    if "h11_max_incomplete_event_size" in args:
        args.setdefault("limit_request_head", args.pop("h11_max_incomplete_event_size"))
    for name in _LIST_OPTIONS & args.keys():
        args[name] = tuple(args[name])
    if "log_level" not in args:
        args["log_level"] = "info"
    return Config(**args)


def version_text() -> str:
    return (
        f"Running dualcorn {__version__} with {platform.python_implementation()} "
        f"{platform.python_version()} on {platform.system()}"
    )


def main(argv: Sequence[str] | None = None) -> NoReturn:
    if argv is None:
        argv = sys.argv[1:]
    if "--version" in argv:
        print(version_text())
        sys.exit(0)
    try:
        config = config_from_args(argv)
    except ConfigError as exc:
        print(f"dualcorn: error: {exc}", file=sys.stderr)
        sys.exit(2)
    from dualcorn.main import serve_config

    try:
        serve_config(config)
    except LoadError as exc:
        if exc.show_traceback and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        print(f"dualcorn: error: {exc}", file=sys.stderr)
        sys.exit(STARTUP_FAILED)
    except (StartupError, ConfigError) as exc:
        print(f"dualcorn: error: {exc}", file=sys.stderr)
        sys.exit(STARTUP_FAILED)
    except KeyboardInterrupt:
        pass
    sys.exit(0)
