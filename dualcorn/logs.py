"""Logging set-up, done when a server starts (never when a Config is built).

Two loggers: ``dualcorn.error`` for the server's own messages and ``dualcorn.access`` for one
line per response.  By default both print to stderr as ``LEVEL:    message``, in colour when
stderr is a terminal.  ``--access-logfile``/``--error-logfile`` (gunicorn's) send them to a file
or, with ``-``, to stdout/stderr.  ``--log-config`` takes a JSON or YAML dictConfig, or an ini
fileConfig, uvicorn's included (:mod:`dualcorn.log_config`).
"""

from __future__ import annotations

import http
import io
import logging
import os
import sys
from typing import IO, Literal, cast

from dualcorn.access_format import WEBSOCKET, AccessEntry, client_address, printable
from dualcorn.config import Config
from dualcorn.errors import ConfigError

__all__ = [
    "TRACE",
    "AccessFormatter",
    "ColourFormatter",
    "DefaultFormatter",
    "configure_logging",
    "reopen_log_files",
]

TRACE = 5  # below DEBUG: every event on the wire, for `--log-level trace`
logging.addLevelName(TRACE, "TRACE")

_LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}
_COLOURS = {
    TRACE: "\x1b[34m",
    logging.DEBUG: "\x1b[36m",
    logging.INFO: "\x1b[32m",
    logging.WARNING: "\x1b[33m",
    logging.ERROR: "\x1b[31m",
    logging.CRITICAL: "\x1b[1;31m",
}
_RESET = "\x1b[0m"


class ColourFormatter(logging.Formatter):
    """``INFO:     message``, the level coloured when ``use_colors`` is true; worker pids shown."""

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Literal["%", "{", "$"] = "%",
        use_colors: bool | None = None,
        stream: IO[str] | None = None,
    ) -> None:
        super().__init__(fmt or "%(levelprefix)s %(message)s", datefmt, style)
        if use_colors is None:
            stream = stream or sys.stderr
            use_colors = stream.isatty() and os.environ.get("NO_COLOR") is None
        self.use_colors = use_colors
        self.show_pid = False

    def formatMessage(self, record: logging.LogRecord) -> str:
        name = record.levelname
        pad = " " * max(1, 9 - len(name) - 1)
        if self.use_colors:
            name = f"{_COLOURS.get(record.levelno, '')}{name}{_RESET}"
        prefix = f"{name}:{pad}"
        if self.show_pid:
            prefix = f"{prefix}[{record.process}]"
        record.__dict__["levelprefix"] = prefix
        return super().formatMessage(record)


class DefaultFormatter(ColourFormatter):
    """What a uvicorn log config's ``uvicorn.logging.DefaultFormatter`` becomes."""


class AccessFormatter(ColourFormatter):
    """What ``uvicorn.logging.AccessFormatter`` becomes: uvicorn's access fields, filled in.

    Its format strings use ``%(client_addr)s``, ``%(request_line)s`` and ``%(status_code)s``;
    they are taken from dualcorn's access record (:class:`~dualcorn.access_format.AccessEntry`)
    so a uvicorn format prints the same line it does under uvicorn.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        args = record.args
        entry = args[0] if isinstance(args, tuple) and len(args) == 1 else None
        fields: dict[str, object] = {
            "client_addr": "-",
            "request_line": record.getMessage(),
            "status_code": "",
        }
        if isinstance(entry, AccessEntry):
            status = entry.status
            if entry.kind == WEBSOCKET:
                request_line = f"WebSocket {printable(entry.target)}"
            else:
                version = printable(entry.scope["http_version"])
                request_line = f"{printable(entry.method)} {printable(entry.target)} HTTP/{version}"
            fields.update(
                client_addr=client_address(entry.scope),
                request_line=request_line,
                status_code=f"{status} {_phrase(status)}".rstrip(),
            )
        record.__dict__.update(fields)
        return super().formatMessage(record)


def _phrase(status: object) -> str:
    try:
        return http.HTTPStatus(int(status)).phrase  # type: ignore[call-overload]
    except (ValueError, TypeError):
        return ""


def level_number(name: str | None) -> int:
    return _LEVELS[name or "info"]


def configure_logging(config: Config, *, show_pid: bool = False) -> None:
    """Install dualcorn's handlers (or the user's ``--log-config``) and levels."""
    if config.log_config is not None:
        from dualcorn.log_config import apply_log_config

        apply_log_config(config.log_config)
    else:
        from dualcorn.protocols.logline import AccessLinesFirst

        targets = {"dualcorn.error": config.error_logfile, "dualcorn.access": config.access_logfile}
        for name, target in targets.items():
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                if getattr(handler, "_dualcorn", False):
                    logger.removeHandler(handler)
                    handler.close()
            handler = _handler(name, target)
            handler.setFormatter(_formatter(config, handler, name, target, show_pid))
            handler._dualcorn = True  # type: ignore[attr-defined]
            if name != "dualcorn.access":  # the access lines held for the loop go first
                handler.addFilter(AccessLinesFirst())
            logger.addHandler(handler)
            logger.propagate = False
        if config.log_format == "json":
            _json_elsewhere(config)
    if config.log_level is not None or config.log_config is None:
        level = level_number(config.log_level)
        logging.getLogger("dualcorn.error").setLevel(level)
        logging.getLogger("dualcorn.access").setLevel(level)
    if not config.access_log:
        logging.getLogger("dualcorn.access").setLevel(logging.CRITICAL + 1)


def _formatter(
    config: Config, handler: logging.Handler, name: str, target: str | None, show_pid: bool
) -> logging.Formatter:
    if config.log_format == "json":
        from dualcorn.json_logs import JSONFormatter

        return JSONFormatter()
    if name == "dualcorn.access" and config.access_log_format is not None:
        # gunicorn prints its access format bare: no level prefix, so the line is the same.
        return logging.Formatter("%(message)s")
    stream = getattr(handler, "stream", None) if target is None or target == "-" else None
    formatter = ColourFormatter(
        use_colors=config.use_colors if stream is not None else False, stream=stream
    )
    formatter.show_pid = show_pid
    return formatter


def _json_elsewhere(config: Config) -> None:
    """With --log-format json, what other code logs is JSON too, so every line parses.

    asyncio's own messages ("Task exception was never retrieved"), warnings, and an app's
    loggers that reach the root logger with no handler (Python's last resort prints plain
    text) go to one JSON handler on the root logger, at the root's own level.
    """
    from dualcorn.json_logs import JSONFormatter
    from dualcorn.protocols.logline import AccessLinesFirst

    root = logging.getLogger()
    if any(getattr(handler, "_dualcorn", False) for handler in root.handlers):
        return
    if not root.handlers:
        handler = _handler("dualcorn.error", config.error_logfile)
        handler.setFormatter(JSONFormatter())
        handler._dualcorn = True  # type: ignore[attr-defined]
        handler.addFilter(AccessLinesFirst())
        root.addHandler(handler)
    logging.captureWarnings(True)


def _handler(name: str, target: str | None) -> logging.Handler:
    """stderr by default; gunicorn's ``-``: stdout for the access log, stderr for errors."""
    if target is None:
        return logging.StreamHandler(sys.stderr)
    if target == "-":
        return logging.StreamHandler(sys.stdout if name == "dualcorn.access" else sys.stderr)
    option = "access_logfile" if name == "dualcorn.access" else "error_logfile"
    try:
        # Appended to, as gunicorn does; several workers append whole lines to one file.
        return logging.FileHandler(target, mode="a", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{option}: cannot open {target!r}: {exc.strerror or exc}") from None


def reopen_log_files() -> None:
    """Close and reopen every log file dualcorn's loggers and the root logger write to.

    gunicorn's SIGUSR1: logrotate renames the file, then signals; lines go to a new file of the
    old name from then on.  A file opened for writing ("w") is reopened for appending, so a
    reopen without a rotation never truncates the log.  Safe from any thread: each handler's
    own lock is held while its stream is swapped.
    """
    loggers = [logging.getLogger(), logging.getLogger("dualcorn")]
    for name, item in list(logging.Logger.manager.loggerDict.items()):
        if name.startswith("dualcorn.") and isinstance(item, logging.Logger):
            loggers.append(item)
    seen: set[int] = set()
    reopened = 0
    for logger in loggers:
        for handler in logger.handlers:
            if not isinstance(handler, logging.FileHandler) or id(handler) in seen:
                continue
            seen.add(id(handler))
            mode = "a" if handler.mode == "w" else handler.mode
            try:
                stream = open(  # noqa: SIM115 - the handler owns and closes it
                    handler.baseFilename, mode, encoding=handler.encoding, errors=handler.errors
                )
            except OSError as exc:
                logging.getLogger("dualcorn.error").error(
                    "Cannot reopen log file %r: %s", handler.baseFilename, exc
                )
                continue
            handler.acquire()
            try:
                # The mode is the handler's own, a text mode, so this is a TextIOWrapper.
                old = handler.setStream(cast(io.TextIOWrapper, stream))  # flushes the old one
            finally:
                handler.release()
            if old is not None:
                old.close()
            reopened += 1
    logging.getLogger("dualcorn.error").info("Reopened %d log file(s).", reopened)
