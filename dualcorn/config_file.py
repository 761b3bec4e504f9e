"""The config file: ``dualcorn.toml``, ``[tool.dualcorn]`` in ``pyproject.toml``, or ``--config``.

Theory of operation
-------------------
The file holds the same names as the command line's options (``port = 8080``,
``timeout-keep-alive = 10``; dashes or underscores, gunicorn's aliases too), lists for the
repeatable ones (``bind = ["unix:/run/app.sock"]``), and ``app = "main:app"`` so the command
needs no APP.  :func:`find_config_file` picks the file: ``--config FILE`` (or
``$DUALCORN_CONFIG``), else ``dualcorn.toml`` in the working directory, else the
``[tool.dualcorn]`` table of ``pyproject.toml`` there.  :func:`read_config_file` turns its table
into Config keyword arguments; the command line and ``DUALCORN_*`` variables override them and
Config's defaults fill the rest (precedence: command line, environment, file, defaults).

Values are checked against :class:`~dualcorn.config.Config`'s field types, read from the
dataclass itself, so a new field needs no code here: ``int``, ``float``, ``str``, ``bool``,
``Literal`` choices, ``X | None``, tuples and sequences (TOML arrays), ``dict`` (TOML tables),
and dataclasses (a TOML table, or an array of tables ``[[mount]]``, built field by field with
the same checks; or the text the command line takes, through the dataclass's ``parse``).  A
string given for an option whose command-line form converts text (sizes such as ``"10M"``,
``"none"`` for no limit, ``"name: value"`` headers) goes through that same conversion; a
string where a plain number is wanted (``port = "8000"``) is an error.  An unknown key or a
wrong type is a :class:`ConfigFileError` naming the key and the file; the CLI prints it on one
line and exits 2.

gunicorn's ``gunicorn.conf.py`` is Python, which dualcorn does not execute (its hooks would be
silently ignored): given one, :func:`gunicorn_equivalent` reads its literal module-level
assignments with :mod:`ast` and the error shows the TOML that says the same.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import logging
import os
import tomllib
import types
import typing
from collections.abc import Sequence
from typing import Any, Literal, Union

from dualcorn.errors import ConfigError

__all__ = [
    "ConfigFileError",
    "announce_config_file",
    "find_config_file",
    "gunicorn_equivalent",
    "read_config_file",
]

FILE_NAME = "dualcorn.toml"
PYPROJECT = "pyproject.toml"


# Options whose value lands in a field of another name (see cli.config_from_args).
_RENAMED = {"h11_max_incomplete_event_size": "limit_request_head"}


class ConfigFileError(ConfigError):
    """The config file cannot be used; the message names the file (and the key)."""


def find_config_file(
    explicit: str | None, directory: str = "."
) -> tuple[str, dict[str, Any]] | None:
    """The file to read and its table of options, or None when there is none."""
    if explicit is not None:
        if not os.path.isfile(explicit):
            raise ConfigFileError(f"--config {explicit}: no such file")
        if explicit.endswith(".py"):
            raise ConfigFileError(gunicorn_equivalent(explicit))
        return explicit, _table(explicit, pyproject=os.path.basename(explicit) == PYPROJECT)
    own = os.path.join(directory, FILE_NAME)
    if os.path.isfile(own):
        return FILE_NAME, _table(own, pyproject=False)
    pyproject = os.path.join(directory, PYPROJECT)
    if os.path.isfile(pyproject):
        table = _table(pyproject, pyproject=True)
        if table:
            return f"{PYPROJECT} [tool.dualcorn]", table
    return None


def _table(path: str, *, pyproject: bool) -> dict[str, Any]:
    path = os.path.normpath(path)  # "dualcorn.toml", not "./dualcorn.toml", in messages
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if not pyproject:
        return data
    tool = data.get("tool", {})
    table = tool.get("dualcorn", {}) if isinstance(tool, dict) else {}
    if not isinstance(table, dict):
        raise ConfigFileError(f"{path}: [tool.dualcorn] must be a table")
    return table


def read_config_file(
    name: str, table: dict[str, Any], parser: argparse.ArgumentParser
) -> dict[str, Any]:
    """Config keyword arguments from a file's table, each checked against its field's type."""
    from dualcorn.config import Config

    hints = typing.get_type_hints(Config)
    fields = {f.name for f in dataclasses.fields(Config) if f.init} - {"config_file"}
    actions = _actions_by_key(parser)
    result: dict[str, Any] = {}
    for key, value in table.items():
        action = actions.get(key) or actions.get(key.replace("-", "_"))
        dest = action.dest if action is not None else key.replace("-", "_")
        dest = _RENAMED.get(dest, dest)
        if dest not in fields:
            raise ConfigFileError(f"{name}: unknown key {key!r}")
        if dest in result:
            raise ConfigFileError(f"{name}: {key!r} sets {dest!r}, which another key sets too")
        where = f"{name}: {key}"
        if dest == "app":
            if not isinstance(value, str):
                raise ConfigFileError(f"{where} must be an import string such as 'main:app'")
            result[dest] = value
            continue
        value = _from_text(value, action, where)
        result[dest] = convert(value, hints[dest], where)
        if action is not None and action.choices is not None and result[dest] not in action.choices:
            choices = ", ".join(map(str, action.choices))
            raise ConfigFileError(f"{where} must be one of {choices}; got {value!r}")
    return result


def _actions_by_key(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every name a key may have: each long option (dashes and underscores) and its dest."""
    keys: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if action.dest.startswith("_") or action.dest in ("help", "version", "app"):
            continue
        keys[action.dest] = action
        for option in action.option_strings:
            if option.startswith("--"):
                keys[option[2:]] = keys[option[2:].replace("-", "_")] = action
    return keys


def _from_text(value: Any, action: argparse.Action | None, where: str) -> Any:
    """Strings go through the option's own converter, as on the command line.

    A repeatable option also takes a single string for a one-item list.
    """
    if action is None:
        return value
    appends = isinstance(action, argparse._AppendAction)
    if appends and isinstance(value, str):
        value = [value]
    kind = action.type
    # Plain int and str: TOML has the type itself, so "8000" for a port is a mistake to report.
    if kind in (None, int, float, str) or isinstance(action, argparse.BooleanOptionalAction):
        return value
    try:
        if appends and isinstance(value, list):
            return [kind(v) if isinstance(v, str) else v for v in value]  # type: ignore[operator]
        if isinstance(value, str):
            return kind(value)  # type: ignore[operator]
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise ConfigFileError(f"{where}: {exc}") from None
    return value


def convert(value: Any, hint: Any, where: str) -> Any:
    """``value`` as ``hint`` asks (lists become tuples), or ConfigFileError saying what it wants."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin is Literal:
        if value in args:
            return value
        raise ConfigFileError(f"{where} must be one of {', '.join(map(str, args))}; got {value!r}")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None  # "none" given as text and converted by the option's own parser
        for arm in args:
            if arm is type(None):
                continue
            try:
                return convert(value, arm, where)
            except ConfigFileError:
                pass
        raise _wrong(value, hint, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        return _tuple(value, hint, args, where)
    elif origin in (list, Sequence) or hint is Sequence:
        item = args[0] if args else Any
        if isinstance(value, list | tuple) and not isinstance(value, str):
            return tuple(convert(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    elif origin is dict or hint is dict:
        if isinstance(value, dict):
            return value
    elif dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, dict):
            return _dataclass(value, hint, where)
        parse = getattr(hint, "parse", None)
        if isinstance(value, str) and parse is not None:
            # The command line's text form (Mount.parse: "PATH=APP@wsgi"), as the option takes.
            try:
                return parse(value)
            except ConfigError as exc:
                raise ConfigFileError(f"{where}: {exc}") from None
    raise _wrong(value, hint, where)


def _tuple(value: Any, hint: Any, args: tuple[Any, ...], where: str) -> Any:
    pairs = len(args) == 2 and args[1] is Ellipsis and typing.get_origin(args[0]) is tuple
    if isinstance(value, dict) and pairs and len(typing.get_args(args[0])) == 2:
        # A table for a tuple of pairs: [headers] x-frame-options = "DENY".
        value = [list(pair) for pair in value.items()]
    if not isinstance(value, list | tuple):
        raise _wrong(value, hint, where)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise _wrong(value, hint, where)
    return tuple(
        convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
    )


def _dataclass(value: dict[str, Any], cls: type, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, item in value.items():
        name = key.replace("-", "_")
        if name not in names:
            raise ConfigFileError(f"{where}: unknown key {key!r}")
        kwargs[name] = convert(item, hints[name], f"{where}.{key}")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigFileError(f"{where}: {exc}") from None
    except TypeError as exc:  # a required field left out
        raise ConfigFileError(f"{where}: {exc}") from None


def _wrong(value: Any, hint: Any, where: str) -> ConfigFileError:
    return ConfigFileError(f"{where} must be {describe(hint)}; got {_toml(value)}")


def describe(hint: Any) -> str:
    """What a type hint asks for, in the words of a TOML file."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    simple = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
    if hint in simple:
        return simple[hint]
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args if a is not type(None))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return f"a list of {_plural(describe(args[0]))}"
    if origin is tuple:
        return f"a list of {len(args)} values"
    if origin in (list, Sequence):
        return f"a list of {_plural(describe(args[0]))}" if args else "a list"
    if dataclasses.is_dataclass(hint) and hasattr(hint, "parse"):
        return "a table or its command-line text"
    if origin is dict or hint is dict or dataclasses.is_dataclass(hint):
        return "a table"
    return str(hint)


def _plural(text: str) -> str:
    return text.removeprefix("a ").removeprefix("an ") + "s" if text.startswith("a ") else text


def _toml(value: Any) -> str:
    """A value as TOML spells it, for messages and for gunicorn_equivalent."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + "}"
    return repr(value)


# gunicorn settings (https://docs.gunicorn.org/en/stable/settings.html) -> dualcorn keys.
_GUNICORN = {
    "bind": "bind", "workers": "workers", "threads": "threads", "backlog": "backlog",
    "timeout": "timeout-worker-healthcheck", "graceful_timeout": "timeout-graceful-shutdown",
    "keepalive": "timeout-keep-alive", "max_requests": "limit-max-requests",
    "max_requests_jitter": "limit-max-requests-jitter",
    "limit_request_line": "limit-request-line", "limit_request_fields": "limit-request-fields",
    "accesslog": "access-logfile", "errorlog": "error-logfile", "loglevel": "log-level",
    "access_log_format": "access-log-format", "reload": "reload", "reuse_port": "reuse-port",
    "forwarded_allow_ips": "forwarded-allow-ips", "proxy_protocol": "proxy-protocol",
    "wsgi_app": "app", "logconfig": "log-config",
}  # fmt: skip


def gunicorn_equivalent(path: str) -> str:
    """The error for a ``gunicorn.conf.py``: dualcorn reads TOML, and here is that TOML."""
    lines, skipped = [], []
    try:
        with open(path, encoding="utf-8") as file:
            tree = ast.parse(file.read(), path)
    except (OSError, SyntaxError, ValueError) as exc:
        tree, skipped = ast.Module(body=[], type_ignores=[]), [f"(unreadable: {exc})"]
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            skipped.append(node.name)
            continue
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target = node.targets[0]
        if not isinstance(target, ast.Name):
            continue
        name = target.id
        key = _GUNICORN.get(name)
        try:
            value = ast.literal_eval(node.value)
        except ValueError:
            key = None  # computed (workers = cpu_count() * 2 + 1): the user decides
        if key is None:
            skipped.append(name)
            continue
        if key == "bind" and isinstance(value, str):
            value = [value]
        lines.append(f"{key} = {_toml(value)}")
    text = (
        f"{path} is Python; dualcorn reads TOML ({FILE_NAME}, [tool.dualcorn] in {PYPROJECT}, "
        "or --config FILE.toml), and does not run gunicorn's hooks"
    )
    if lines:
        text += f". The same settings in {FILE_NAME}:\n" + "\n".join(lines)
    if skipped:
        text += "\n# not translated: " + ", ".join(skipped)
    return text


def announce_config_file(config: Any) -> None:
    """The start-up log line naming the file the options came from, if any."""
    if getattr(config, "config_file", None):
        logging.getLogger("dualcorn.error").info("Options read from %s", config.config_file)
