"""Turn ``"module:attribute"`` into the application object, with errors a person can act on.

Accepted import strings::

    main:app                  an attribute of a module
    pkg.main:api.app          nested attributes, resolved one getattr at a time
    main:create_app()         a factory, called with no arguments

Only the empty call ``()`` is accepted.  Arguments would need a small expression language (what
is ``create_app(debug)``?) and a second place to put configuration; a factory reads its
settings from the environment instead, which ``--env-file`` can fill.  ``--factory`` calls the
resolved attribute the same way; with both, the factory is called once.

Who is to blame decides how an error is shown.  A mistake in the import string or the
directory gets a one-line :class:`LoadError` naming the fix.  An exception raised by the
application's own code (while its module is imported or its factory runs) is chained as the
``__cause__`` of the LoadError, which has ``show_traceback = True`` so the CLI prints the
application's traceback, not dualcorn's.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
import sys
from typing import Any

from dualcorn.errors import LoadError

__all__ = ["AppCodeError", "load_app", "load_env_file", "parse_import_string"]

_EXPECTED = "expected 'module:attribute', e.g. 'main:app'"
_DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")
_MAX_SUGGESTIONS = 3
_MAX_LISTED_NAMES = 8
_REPR_LIMIT = 60


class AppCodeError(LoadError):
    """The application's own code raised while being imported or built; see ``__cause__``.

    ``show_traceback`` tells the CLI to print the cause's traceback: the fix is in the
    application, at a line only that traceback shows.  (Plain LoadErrors have no traceback
    worth showing.)
    """

    show_traceback = True


def load_app(
    app: Any, *, factory: bool = False, app_dir: str | None = ".", env_file: str | None = None
) -> Any:
    """Import (if ``app`` is a string) and return the application object.

    ``env_file`` is loaded first, even when ``app`` is already an object, so a factory sees
    the variables.  ``app_dir`` is put at the front of ``sys.path`` (as an absolute path,
    once) so the import string is resolved from the project directory, as uvicorn does.
    """
    if env_file is not None:
        load_env_file(env_file)
    if not isinstance(app, str):
        return _call_factory(app, "the application object") if factory else app
    module_name, attribute, call = parse_import_string(app)
    if app_dir is not None:
        _add_app_dir(app_dir)
    module = _import_module(module_name, app_dir, _hint(app))
    target = _resolve_attribute(module, module_name, attribute)
    label = f"'{module_name}:{attribute}'"
    if call or factory:
        target = _call_factory(target, label)
        label = f"the object {label} returned"
    else:
        _reject_uncalled_factory(target, module_name, attribute)
    if not callable(target):
        raise LoadError(f"{label} is not callable: found {_describe_object(target)}")
    return target


def parse_import_string(import_string: str) -> tuple[str, str, bool]:
    """Split ``"pkg.mod:obj.attr()"`` into ``("pkg.mod", "obj.attr", True)``; check the syntax."""
    module_name, colon, attribute = import_string.strip().partition(":")
    call = attribute.endswith("()")
    if call:
        attribute = attribute[:-2]
    if colon and _DOTTED_NAME.match(module_name) and _DOTTED_NAME.match(attribute):
        return module_name, attribute, call
    raise LoadError(f"{import_string!r} is not an import string: {_EXPECTED}{_hint(import_string)}")


def _hint(import_string: str) -> str:
    """Guess what the person meant, for the commonest slips."""
    module_name, colon, attribute = import_string.strip().partition(":")
    if re.search(r"\w\(.+\)\Z", attribute):
        return (
            "; a factory is called with no arguments, as 'module:create_app()' "
            "(read settings from the environment, e.g. with --env-file)"
        )
    # "main.py:app" parses (module "py" in package "main") but fails to import; say why.
    if module_name.endswith(".py") or "/" in module_name or "\\" in module_name:
        path = re.sub(r"\.py\Z", "", module_name).replace("\\", "/").strip("/")
        dotted = path.replace("/", ".")
        return f" (a module name, not a file path: did you mean '{dotted}:{attribute or 'app'}'?)"
    if not colon and _DOTTED_NAME.match(module_name):
        # "main.app" or "main": gunicorn reads a bare module as 'module:application'
        # (Django's documented 'gunicorn myproject.wsgi').
        head, dot, tail = module_name.rpartition(".")
        gunicorn = f"gunicorn's bare '{module_name}' means '{module_name}:application'"
        return f" (did you mean '{head}:{tail}'? {gunicorn})" if dot else f" ({gunicorn})"
    return ""


def load_env_file(path: str) -> None:
    """Load ``KEY=VALUE`` lines from ``path`` into ``os.environ``.

    Variables already set win over the file: an operator's explicit ``FOO=1 dualcorn ...`` or
    a container's environment must not be overridden by a file checked into the project (the
    same default as python-dotenv and docker compose).  A relative path is relative to the
    current directory, not ``app_dir``.  python-dotenv is used when installed (it knows
    multi-line values and ``${VAR}`` expansion); otherwise a small parser reads plain lines.
    """
    if not os.path.isfile(path):
        raise LoadError(f"env file {path!r} not found (looked in {os.path.abspath(path)})")
    try:
        import dotenv
    except ImportError:
        _load_env_lines(path)
    else:
        dotenv.load_dotenv(path, override=False)


def _load_env_lines(path: str) -> None:
    with open(path, encoding="utf-8") as lines:
        for number, raw in enumerate(lines, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            line = line.removeprefix("export ").lstrip()
            key, equals, value = line.partition("=")
            key, value = key.strip(), value.strip()
            if not equals or not key.isidentifier():
                raise LoadError(f"{path}, line {number}: expected KEY=VALUE, got {raw.strip()!r}")
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            elif " #" in value:  # an unquoted value ends at an inline comment
                value = value.split(" #", 1)[0].rstrip()
            os.environ.setdefault(key, value)


def _add_app_dir(app_dir: str) -> None:
    path = os.path.abspath(app_dir)
    if not os.path.isdir(path):
        raise LoadError(f"app directory {app_dir!r} does not exist (resolved to {path})")
    if path not in sys.path:
        sys.path.insert(0, path)


def _import_module(module_name: str, app_dir: str | None, hint: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name
        if missing is not None and _is_same_or_parent(missing, module_name):
            searched = f"{os.path.abspath(app_dir)} and " if app_dir is not None else ""
            raise LoadError(
                f"could not import module {module_name!r}: {exc} (searched {searched}the rest "
                "of sys.path); run dualcorn from the directory that contains it, "
                f"or pass --app-dir{hint}"
            ) from None
        # The module exists, but one of *its* imports does not: the app's dependency.
        raise _app_error(f"importing {module_name!r} failed: {exc}", exc) from exc
    except SystemExit as exc:
        raise _app_error(
            f"importing {module_name!r} called sys.exit({exc.code!r}); does it parse the "
            "command line or start a server at import time? Guard that code with "
            "`if __name__ == '__main__':`",
            exc,
        ) from exc
    except Exception as exc:
        raise _app_error(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}", exc
        ) from exc


def _is_same_or_parent(missing: str, module_name: str) -> bool:
    return module_name == missing or module_name.startswith(missing + ".")


def _resolve_attribute(module: Any, module_name: str, attribute: str) -> Any:
    target = module
    resolved = module_name
    for name in attribute.split("."):
        try:
            target = getattr(target, name)
        except AttributeError as exc:
            if name in dir(target):  # a property or __getattr__ failed inside the app
                raise _app_error(f"reading {resolved}.{name} failed: {exc}", exc) from exc
            raise LoadError(_missing_attribute_message(target, resolved, name)) from None
        except Exception as exc:
            raise _app_error(
                f"reading {resolved}.{name} failed: {type(exc).__name__}: {exc}", exc
            ) from exc
        resolved = f"{resolved}:{name}" if resolved == module_name else f"{resolved}.{name}"
    return target


def _missing_attribute_message(owner: Any, owner_name: str, name: str) -> str:
    kind = "module" if inspect.ismodule(owner) else "object"
    message = f"{kind} {owner_name!r} has no attribute {name!r}"
    public = sorted(n for n in dir(owner) if not n.startswith("_"))
    close = difflib.get_close_matches(name, public, n=_MAX_SUGGESTIONS)
    if close:
        return f"{message}; did you mean {_quoted_list(close)}?"
    if inspect.ismodule(owner):
        # Suggest only what the module itself defines and could be an app or a factory.
        defined = [n for n in public if callable(getattr(owner, n, None))]
        defined = [n for n in defined if not _imported(owner, n)]
        if defined:
            shown = _quoted_list(defined[:_MAX_LISTED_NAMES])
            more = ", ..." if len(defined) > _MAX_LISTED_NAMES else ""
            return f"{message}; it defines {shown}{more}"
    return message


def _imported(module: Any, name: str) -> bool:
    defined_in = getattr(getattr(module, name, None), "__module__", None)
    return defined_in is not None and defined_in != module.__name__


def _call_factory(factory: Any, label: str) -> Any:
    if not callable(factory):
        raise LoadError(f"{label} cannot be called as a factory: found {_describe_object(factory)}")
    try:
        inspect.signature(factory).bind()
    except TypeError as exc:
        raise LoadError(
            f"factory {label} cannot be called without arguments ({exc}); dualcorn calls "
            "a factory with none: give its parameters defaults or read them from the environment"
        ) from None
    except ValueError:
        pass  # no signature to check (a builtin): let the call itself decide
    try:
        built = factory()
    except Exception as exc:
        raise _app_error(
            f"calling factory {label} failed: {type(exc).__name__}: {exc}", exc
        ) from exc
    if built is None:
        raise LoadError(f"factory {label} returned None; does it end with `return app`?")
    if inspect.iscoroutine(built):
        built.close()  # never awaited: close it so Python does not warn about it later
        raise LoadError(
            f"factory {label} is async; dualcorn calls factories before the event loop runs, "
            "so make it a plain `def` (do async set-up in the app's lifespan startup instead)"
        )
    return built


def _reject_uncalled_factory(target: Any, module_name: str, attribute: str) -> None:
    """A plain function that takes no arguments cannot be an app; it is a forgotten factory."""
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        return
    try:
        parameters = inspect.signature(target, follow_wrapped=False).parameters.values()
    except ValueError:
        return
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind in positional or p.kind is p.VAR_POSITIONAL for p in parameters):
        return
    raise LoadError(
        f"'{module_name}:{attribute}' takes no arguments, so it cannot be the application "
        f"itself; if it builds the application, pass --factory or write "
        f"'{module_name}:{attribute}()'"
    )


def _app_error(message: str, cause: BaseException) -> AppCodeError:
    error = AppCodeError(message)
    error.__cause__ = cause  # callers also write `from exc`; set here so no path forgets it
    # Start the traceback the CLI prints at the application's first line, not in dualcorn or
    # importlib: Python hides import machinery frames only for an `import` statement.
    traceback = cause.__traceback__
    while traceback is not None and _is_loader_frame(traceback.tb_frame.f_code.co_filename):
        traceback = traceback.tb_next
    cause.__traceback__ = traceback  # None for a SyntaxError, which names its file and line
    return error


_IMPORTLIB_DIR = os.path.dirname(importlib.__file__)


def _is_loader_frame(filename: str) -> bool:
    return (
        filename == __file__
        or filename.startswith("<frozen importlib")
        or os.path.dirname(filename) == _IMPORTLIB_DIR
    )


def _describe_object(value: object) -> str:
    text = repr(value)
    if len(text) > _REPR_LIMIT:
        text = text[: _REPR_LIMIT - 3] + "..."
    return f"{type(value).__name__} {text}"


def _quoted_list(names: list[str]) -> str:
    return ", ".join(repr(name) for name in names)
