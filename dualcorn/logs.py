"""Logging set-up, done when a server starts (never when a Config is built).

Two loggers: ``dualcorn.error`` for the server's own messages and ``dualcorn.access`` for one
line per response.  By default both print to stderr as ``LEVEL:    message``, in colour when
stderr is a terminal.  ``--log-config`` takes a JSON or YAML dictConfig, or an ini fileConfig.
"""

from __future__ import annotations

import io
import json
import logging
import logging.config
import os
import sys
from typing import Any, cast

from dualcorn.config import Config
from dualcorn.errors import ConfigError

__all__ = ["TRACE", "ColourFormatter", "configure_logging", "reopen_log_files"]

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

    def __init__(self, fmt: str | None = None, use_colors: bool | None = None) -> None:
        super().__init__(fmt or "%(levelprefix)s %(message)s")
        if use_colors is None:
            use_colors = sys.stderr.isatty() and os.environ.get("NO_COLOR") is None
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


def level_number(name: str | None) -> int:
    return _LEVELS[name or "info"]


def configure_logging(config: Config, *, show_pid: bool = False) -> None:
    """Install dualcorn's handlers (or the user's ``--log-config``) and levels."""
    if config.log_config is not None:
        _apply_log_config(config.log_config)
    else:
        formatter = ColourFormatter(use_colors=config.use_colors)
        formatter.show_pid = show_pid
        for name in ("dualcorn.error", "dualcorn.access"):
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                if getattr(handler, "_dualcorn", False):
                    logger.removeHandler(handler)
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(formatter)
            handler._dualcorn = True  # type: ignore[attr-defined]
            logger.addHandler(handler)
            logger.propagate = False
    if config.log_level is not None or config.log_config is None:
        level = level_number(config.log_level)
        logging.getLogger("dualcorn.error").setLevel(level)
        logging.getLogger("dualcorn.access").setLevel(level)
    if not config.access_log:
        logging.getLogger("dualcorn.access").setLevel(logging.CRITICAL + 1)


def _apply_log_config(source: str | dict[str, Any]) -> None:
    if isinstance(source, dict):
        logging.config.dictConfig(source)
        return
    if not os.path.exists(source):
        raise ConfigError(f"log_config: no such file {source!r}")
    if source.endswith(".json"):
        with open(source, encoding="utf-8") as file:
            logging.config.dictConfig(json.load(file))
    elif source.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise ConfigError(
                "log_config: a YAML file needs PyYAML (pip install 'dualcorn[standard]')"
            ) from None
        with open(source, encoding="utf-8") as file:
            logging.config.dictConfig(yaml.safe_load(file))
    else:
        logging.config.fileConfig(source, disable_existing_loggers=False)


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
