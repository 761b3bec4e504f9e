"""``--log-config``: JSON or YAML (dictConfig) or ini (fileConfig), uvicorn's files included.

A log config written for uvicorn works unchanged: its formatter classes
``uvicorn.logging.DefaultFormatter``, ``AccessFormatter`` and ``ColourizedFormatter`` are
resolved by name to dualcorn's (uvicorn need not be installed), and its logger names
``uvicorn``, ``uvicorn.error`` and ``uvicorn.access`` configure ``dualcorn``,
``dualcorn.error`` and ``dualcorn.access``.  Whatever goes wrong while reading or applying the
file (bad JSON, an unknown handler class, a missing formatter) becomes one
:class:`~dualcorn.errors.ConfigError` sentence naming the file, never a traceback.
"""

from __future__ import annotations

import configparser
import json
import logging.config
import os
from typing import Any

from dualcorn.errors import ConfigError

__all__ = ["apply_log_config"]

_FORMATTERS = {
    "uvicorn.logging.DefaultFormatter": "dualcorn.logs.DefaultFormatter",
    "uvicorn.logging.AccessFormatter": "dualcorn.logs.AccessFormatter",
    "uvicorn.logging.ColourizedFormatter": "dualcorn.logs.ColourFormatter",
}


def logger_name(name: str) -> str:
    """uvicorn's logger names as dualcorn's: ``uvicorn.access`` is ``dualcorn.access``."""
    if name == "uvicorn" or name.startswith("uvicorn."):
        return "dualcorn" + name[len("uvicorn") :]
    return name


def apply_log_config(source: str | dict[str, Any]) -> None:
    where = source if isinstance(source, str) else "the log_config dict"
    try:
        if isinstance(source, dict):
            logging.config.dictConfig(translate_dict(source))
        else:
            _apply_file(source)
    except ConfigError:
        raise
    except Exception as exc:  # every failure of a user's file is theirs to fix, in one line
        raise ConfigError(f"log_config {where}: {_one_line(exc)}") from None


def _apply_file(path: str) -> None:
    if not os.path.exists(path):
        raise ConfigError(f"log_config: no such file {path!r}")
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as file:
            logging.config.dictConfig(translate_dict(json.load(file)))
    elif path.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise ConfigError(
                "log_config: a YAML file needs PyYAML (pip install 'dualcorn[standard]')"
            ) from None
        with open(path, encoding="utf-8") as file:
            logging.config.dictConfig(translate_dict(yaml.safe_load(file)))
    else:
        parser = configparser.ConfigParser(interpolation=None)
        with open(path, encoding="utf-8") as file:
            parser.read_file(file)
        translate_ini(parser)
        try:
            logging.config.fileConfig(parser, disable_existing_loggers=False)
        except KeyError as exc:  # fileConfig indexes sections and keys: str(exc) is "'name'"
            raise ConfigError(
                f"log_config {path}: no section or key {exc.args[0]!r} "
                "(an ini log config needs [loggers], [handlers] and [formatters] with keys=)"
            ) from None


def translate_dict(config: Any) -> dict[str, Any]:
    """A copy of a dictConfig with uvicorn's names replaced by dualcorn's."""
    if not isinstance(config, dict):
        raise ConfigError("log_config: the file must hold a mapping (a dictConfig)")
    result = dict(config)
    formatters = result.get("formatters")
    if isinstance(formatters, dict):
        result["formatters"] = {
            name: _translate_formatter(spec) for name, spec in formatters.items()
        }
    loggers = result.get("loggers")
    if isinstance(loggers, dict):
        result["loggers"] = {logger_name(str(name)): spec for name, spec in loggers.items()}
    return result


def _translate_formatter(spec: Any) -> Any:
    if not isinstance(spec, dict):
        return spec
    spec = dict(spec)
    for key in ("()", "class"):
        if spec.get(key) in _FORMATTERS:
            spec[key] = _FORMATTERS[spec[key]]
    return spec


def translate_ini(parser: configparser.ConfigParser) -> None:
    """The same for a fileConfig: formatter ``class`` and logger ``qualname`` values."""
    for section in parser.sections():
        items = parser[section]
        if section.startswith("formatter_") and items.get("class") in _FORMATTERS:
            items["class"] = _FORMATTERS[items["class"]]
        if section.startswith("logger_") and "qualname" in items:
            items["qualname"] = logger_name(items["qualname"])


def _one_line(exc: BaseException) -> str:
    # dictConfig wraps the real problem ("Unable to configure handler 'x'") around its cause.
    parts = [str(exc) or type(exc).__name__]
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in parts[0]:
        parts.append(str(cause))
    return ": ".join(" ".join(part.split()) for part in parts)
