"""The ``dualcorn`` command: options -> :class:`Config`; the only place that exits the process.

Option names are uvicorn's, so ``uvicorn main:app --port 8080`` becomes
``dualcorn main:app --port 8080``.  Every option can also come from the environment as
``DUALCORN_<OPTION>`` (``--timeout-keep-alive`` is ``DUALCORN_TIMEOUT_KEEP_ALIVE``); the command
line wins.  Options left unset take :class:`Config`'s defaults, so the defaults live in one place.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

from dualcorn import __version__
from dualcorn.cli_options import build_parser, env_name, parse_bool
from dualcorn.config import Config
from dualcorn.config_file import ConfigFileError, find_config_file, read_config_file
from dualcorn.errors import ConfigError, LoadError, StartupError

__all__ = ["build_parser", "config_from_args", "main"]

STARTUP_FAILED = 3  # gunicorn's and uvicorn's exit status when the app cannot start
_LIST_OPTIONS = {
    "reload_dirs", "reload_includes", "reload_excludes", "headers", "bind", "mounts", "static",
}  # fmt: skip


def _from_environment(parser: argparse.ArgumentParser, given: dict[str, Any]) -> None:
    """Fill options the command line left out from DUALCORN_<OPTION> variables."""
    for action in parser._actions:
        dest = action.dest
        if dest in given or dest in ("help", "app", "version") or dest.startswith("_"):
            continue
        variable = env_name(action)
        raw = os.environ.get(variable)
        if raw is None:
            continue
        try:
            if isinstance(action, argparse.BooleanOptionalAction):
                value: Any = parse_bool(raw)
            elif dest in _LIST_OPTIONS:
                convert = action.type or str
                value = [convert(part) for part in raw.split(",") if part.strip()]  # type: ignore[operator]
            elif action.type is not None:
                value = action.type(raw)  # type: ignore[operator]
            else:
                value = raw
        except argparse.ArgumentTypeError as exc:
            parser.error(f"{variable}={raw!r}: {exc}")
        except ValueError:
            # int() says "invalid literal for int() with base 10"; say it as argparse would.
            parser.error(f"{variable}={raw!r}: expected a whole number")
        if action.choices is not None and value not in action.choices:
            parser.error(f"{variable} must be one of {', '.join(map(str, action.choices))}")
        given[dest] = value


def config_from_args(argv: Sequence[str] | None = None) -> Config:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    _from_environment(parser, args)
    args.pop("version", None)
    # Precedence: command line, DUALCORN_*, then the file, then Config's defaults.
    found = find_config_file(args.pop("_config", None) or os.environ.get("DUALCORN_CONFIG"))
    from_file: set[str] = set()
    if found is not None:
        file_name, table = found
        for name, value in read_config_file(file_name, table, parser).items():
            if name not in args:
                args[name] = value
                from_file.add(name)
        args["config_file"] = file_name
    if "app" not in args or args["app"] is None:
        parser.error(
            'the following arguments are required: APP (or app = "module:attr" in dualcorn.toml)'
        )
    if args.get("ws") == "websockets-sansio":
        args["ws"] = "websockets"  # uvicorn 0.54's name for what dualcorn always uses
    if "h11_max_incomplete_event_size" in args:
        args.setdefault("limit_request_head", args.pop("h11_max_incomplete_event_size"))
    for name in _LIST_OPTIONS & args.keys():
        args[name] = tuple(args[name])
    if "log_level" not in args:
        args["log_level"] = "info"
    try:
        return Config(**args)
    except ConfigError as exc:
        # A value the file gave but Config refuses (port = 70000): name the file too.
        field = str(exc).split(" ", 1)[0].rstrip(":")
        if found is not None and field in from_file:
            raise ConfigFileError(f"{found[0]}: {exc}") from None
        raise


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
    except ConfigFileError as exc:
        print(f"dualcorn: error: {exc}", file=sys.stderr)  # the file and key say it all
        sys.exit(2)
    except ConfigError as exc:
        print(f"dualcorn: error: {exc}\nrun 'dualcorn --help' for the options", file=sys.stderr)
        sys.exit(2)
    from dualcorn.main import serve_config

    try:
        serve_config(config)
    except LoadError as exc:
        cause = exc.__cause__ if exc.show_traceback else None
        _startup_failed(config, exc, cause)
    except (StartupError, ConfigError) as exc:
        _startup_failed(config, exc, None)
    except KeyboardInterrupt:
        pass
    sys.exit(0)


def _startup_failed(config: Config, exc: Exception, cause: BaseException | None) -> NoReturn:
    if config.log_format == "json":
        # Still one JSON object per line, traceback included (see dualcorn.json_logs).
        from dualcorn.json_logs import JSONFormatter

        record = logging.LogRecord(
            "dualcorn.error", logging.ERROR, __file__, 0, "%s", (str(exc),),
            (type(cause), cause, cause.__traceback__) if cause is not None else None,
        )  # fmt: skip
        print(JSONFormatter().format(record), file=sys.stderr)
    else:
        if cause is not None:
            traceback.print_exception(cause, file=sys.stderr)
        print(f"dualcorn: error: {exc}", file=sys.stderr)
    sys.exit(STARTUP_FAILED)
