"""Tell ASGI 3, ASGI 2 and WSGI applications apart by their shape, without calling them.

Theory of operation
-------------------
The three interfaces differ in how the server calls the application:

* ASGI 3: ``await app(scope, receive, send)``: one call, three positional arguments.
* ASGI 2: ``instance = app(scope); await instance(receive, send)``: a "double callable",
  usually a class whose constructor takes the scope.
* WSGI (PEP 3333): ``app(environ, start_response)`` returns an iterable of bytes, in a thread.

So the evidence is (a) whether the thing the server calls is a coroutine function and (b) how
many positional arguments it accepts.  Calling the app to find out is not an option: the call is
the request.  uvicorn decides on ``iscoroutinefunction`` alone and never sees WSGI; here the
parameter count decides and coroutine-ness confirms, in this order:

1. explicit markers (asgiref's ``_asgi_single_callable`` / ``_asgi_double_callable``);
2. classes: the constructor is the first call, so its parameters decide;
3. everything else: the callable the server would invoke (the function, the bound method, or an
   instance's ``__call__``), seen through ``functools.partial``.  When its own signature says
   nothing (``*args``), a ``__wrapped__`` chain left by ``functools.wraps`` is followed.

When the evidence allows more than one reading the likelier one is returned with
``ambiguous=True`` and a ``reason`` that names the ``--interface`` flag forcing the other.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeGuard

__all__ = ["Detection", "InterfaceName", "describe", "detect_interface"]

InterfaceName = Literal["asgi3", "asgi2", "wsgi"]

_DESCRIPTIONS: dict[InterfaceName, str] = {
    "asgi3": "ASGI 3 application",
    "asgi2": "ASGI 2 application",
    "wsgi": "WSGI application",
}

# asgiref.compatibility.is_double_callable reads these hints before anything else; honouring
# them lets a framework settle the question for its objects.
_SINGLE_CALLABLE_MARKER = "_asgi_single_callable"
_DOUBLE_CALLABLE_MARKER = "_asgi_double_callable"


@dataclass(frozen=True)
class Detection:
    """Which interface an application speaks, why we think so, and whether we are guessing."""

    interface: InterfaceName
    reason: str
    ambiguous: bool = False


def describe(interface: InterfaceName) -> str:
    """How the start-up log names an interface: ``"ASGI 3 application"`` and so on."""
    return _DESCRIPTIONS[interface]


def detect_interface(app: object) -> Detection:
    """Decide from ``app``'s shape whether it is an ASGI 3, ASGI 2 or WSGI application."""
    name = _name_of(app)
    if getattr(app, _SINGLE_CALLABLE_MARKER, False) is True:
        return Detection("asgi3", f"{name} is marked {_SINGLE_CALLABLE_MARKER}")
    if getattr(app, _DOUBLE_CALLABLE_MARKER, False) is True:
        return Detection("asgi2", f"{name} is marked {_DOUBLE_CALLABLE_MARKER}")
    if inspect.isclass(app):
        return _detect_class(app, name)
    target = _call_target(app)
    if target is None:
        return _guess("asgi3", f"{name} is not callable", alternatives=("wsgi",))
    return _detect_callable(target, name)


# --- the shape of one callable ---------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    """How many positional arguments a callable takes, and whether calling it gives a coroutine."""

    required: int
    maximum: int | None  # None: *args accepts any number
    is_async: bool
    signature: str

    def accepts(self, count: int) -> bool:
        return self.required <= count and (self.maximum is None or count <= self.maximum)


def _shape(func: Callable[..., object]) -> _Shape | None:
    try:
        # follow_wrapped=False: a wrapper's own parameters are what the server calls.  Channels'
        # as_asgi() returns an async (scope, receive, send) function whose __wrapped__ is the
        # consumer class; following it would report the class's constructor instead.
        signature = inspect.signature(func, follow_wrapped=False)
    except (TypeError, ValueError):  # builtins and C extensions without a text signature
        return None
    required = 0
    maximum: int | None = 0
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.VAR_POSITIONAL:
            maximum = None
        elif parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            if parameter.default is parameter.empty:
                required += 1
            if maximum is not None:
                maximum += 1
    return _Shape(required, maximum, _is_coroutine_function(func), _compact(signature))


def _compact(signature: inspect.Signature) -> str:
    # Parameter names only: annotations such as a2wsgi's spell out whole unions of messages.
    parts = []
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.VAR_POSITIONAL:
            parts.append(f"*{parameter.name}")
        elif parameter.kind is parameter.VAR_KEYWORD:
            parts.append(f"**{parameter.name}")
        elif parameter.default is not parameter.empty:
            parts.append(f"{parameter.name}=...")
        else:
            parts.append(parameter.name)
    return f"({', '.join(parts)})"


def _is_coroutine_function(func: object) -> bool:
    # inspect.iscoroutinefunction sees through bound methods and functools.partial.
    if inspect.iscoroutinefunction(func):
        return True
    # Python 3.11 has no inspect.markcoroutinefunction; asgiref's shim (used by Django's
    # handlers and sync_to_async) marks sync callables that return coroutines this way instead.
    marker = getattr(asyncio.coroutines, "_is_coroutine", None)
    if marker is not None and getattr(func, "_is_coroutine", None) is marker:
        return True
    if isinstance(func, functools.partial):
        return _is_coroutine_function(func.func)
    # An object whose __call__ is a coroutine function, e.g. partial(app_instance, ...).
    if callable(func) and not _is_plain_routine(func) and not inspect.isclass(func):
        return inspect.iscoroutinefunction(func.__call__)
    return False


def _call_target(app: object) -> Callable[..., object] | None:
    """What the server actually invokes: the routine itself or the instance's bound __call__."""
    if _is_plain_routine(app) or isinstance(app, functools.partial):
        return app
    if not callable(app):
        return None
    # The bound __call__, looked up on the instance: a wrapper that assigns self.__call__ to the
    # method matching the wrapped app's interface (Sentry's ASGI middleware does) tells more
    # than its class's generic (*args, **kwargs) __call__.
    bound: Callable[..., object] = app.__call__
    return bound


# --- decisions ---------------------------------------------------------------------------------


def _detect_callable(target: Callable[..., object], name: str) -> Detection:
    shape = _shape(target)
    if shape is None:
        return _guess("asgi3", f"{name} has no readable signature", alternatives=("wsgi",))
    if shape.maximum is None and shape.required == 0 and not shape.is_async:
        # def wrapper(*args, **kwargs): says nothing; the function it wraps may.
        wrapped = _unwrap(target)
        if wrapped is not None:
            return _detect_callable(wrapped, f"{name} (wrapping {_name_of(wrapped)})")
    where = f"{name}: {'async ' if shape.is_async else ''}{shape.signature}"
    if shape.is_async:
        if shape.accepts(3):
            return Detection("asgi3", where)
        return _guess(
            "asgi3", f"{where} is a coroutine function but cannot take (scope, receive, send)",
            alternatives=("asgi2",),
        )  # fmt: skip
    if shape.maximum is None and shape.required == 0:
        # A sync *args forwarder: an ASGI wrapper would most naturally be `async def`, a WSGI
        # one must be sync, so WSGI is the likelier reading.
        return _guess("wsgi", f"{where} accepts any number of arguments", ("asgi3", "asgi2"))
    if shape.accepts(2) and not shape.accepts(3):
        return Detection("wsgi", where)
    if shape.accepts(1) and not shape.accepts(2):
        return Detection("asgi2", f"{where} takes only the scope")
    if shape.accepts(3) and not shape.accepts(2):
        # A sync function taking (scope, receive, send) is an ASGI 3 app only if it returns an
        # awaitable, as instrumentation wrappers do; nothing short of calling it can prove that.
        if _returns_awaitable(target):
            return Detection("asgi3", f"{where} takes 3 arguments and returns an awaitable")
        return _guess("asgi3", f"{where} is not async but takes 3 arguments", ("wsgi",))
    if shape.accepts(2):  # e.g. (environ, start_response, extra=None)
        return _guess("wsgi", f"{where} takes 2 or more arguments", ("asgi3",))
    if shape.maximum == 0:
        evidence = f"{where} takes no arguments (if it builds the app, pass --factory)"
    else:
        evidence = f"{where} takes {shape.required} arguments, which fits no interface"
    return _guess("asgi3", evidence, alternatives=("wsgi", "asgi2"))


def _detect_class(cls: type, name: str) -> Detection:
    constructor = _shape(cls)
    call_shape = _shape(cls.__call__) if _defines_call(cls) else None
    if constructor is None:
        return _guess("asgi2", f"class {name} has no readable constructor", ("asgi3", "wsgi"))
    if constructor.accepts(1) and not constructor.accepts(2):
        # ASGI 2's canonical shape: Class(scope) then await instance(receive, send).
        # call_shape counts self, so (self, receive, send) takes 3.
        if call_shape is not None and call_shape.is_async and call_shape.accepts(3):
            return Detection("asgi2", f"class {name}(scope) with async __call__(receive, send)")
        return _guess("asgi2", f"class {name} is constructed with one argument (the scope)",
                      alternatives=("asgi3",))  # fmt: skip
    if constructor.accepts(2) and not constructor.accepts(3) and hasattr(cls, "__iter__"):
        # PEP 3333: "a function, method, class, or instance with a __call__ method are all
        # acceptable for use as an application object"; a class's instance is the iterable.
        return Detection("wsgi", f"class {name}(environ, start_response) with __iter__")
    if constructor.maximum == 0 and call_shape is not None:
        # Instances are the app (e.g. a class with async __call__(self, scope, receive, send)),
        # but the server would call the class itself: a slip of `main:App` for `main:app`.
        evidence = (
            f"class {name}() takes no arguments, so its instances must be the app; serve an "
            "instance, or let dualcorn build one with 'module:ClassName()' or --factory"
        )
        return _guess("asgi3" if call_shape.is_async else "wsgi", evidence, ("asgi2",))
    if constructor.accepts(3) and hasattr(cls, "__await__"):
        return Detection("asgi3", f"class {name}(scope, receive, send) whose instances await")
    return _guess("asgi2", f"class {name}{constructor.signature} is a class", ("asgi3", "wsgi"))


def _defines_call(cls: type) -> bool:
    # getattr(cls, "__call__") would find type.__call__ through the metaclass; what matters is
    # whether the class (or a base other than object) defines one for its instances.
    return any("__call__" in vars(klass) for klass in cls.__mro__ if klass is not object)


def _unwrap(func: Callable[..., object]) -> Callable[..., object] | None:
    if isinstance(func, functools.partial):
        func = func.func
    wrapped = getattr(func, "__wrapped__", None)
    if wrapped is None or not callable(wrapped):
        return None
    target = wrapped if _is_plain_routine(wrapped) or inspect.isclass(wrapped) else None
    return target if target is not None else _call_target(wrapped)


def _returns_awaitable(func: Callable[..., object]) -> bool:
    # Read the return annotation as text: evaluating string annotations could import or fail.
    try:
        annotation = inspect.signature(func, follow_wrapped=False).return_annotation
    except (TypeError, ValueError):
        return False
    if annotation is inspect.Signature.empty:
        return False
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return re.search(r"\b(Awaitable|Coroutine)\b", text) is not None


def _guess(interface: InterfaceName, evidence: str, alternatives: tuple[str, ...]) -> Detection:
    others = " or ".join(f"--interface {other}" for other in alternatives)
    reason = (
        f"{evidence}; guessed {describe(interface)} "
        f"(pass --interface {interface} to confirm, or {others} if it is not)"
    )
    return Detection(interface, reason, ambiguous=True)


def _name_of(app: object) -> str:
    if isinstance(app, functools.partial):
        return f"functools.partial({_name_of(app.func)}, ...)"
    if _is_plain_routine(app) or inspect.isclass(app):
        name = getattr(app, "__qualname__", None) or getattr(app, "__name__", None) or repr(app)
        return str(name).rpartition("<locals>.")[2]
    return f"{type(app).__qualname__} instance"


def _is_plain_routine(value: object) -> TypeGuard[Callable[..., object]]:
    # Not inspect.isroutine: it also accepts any object with __get__ (a "method descriptor"),
    # such as asgiref's SyncToAsync, whose behaviour is its class's __call__.
    return inspect.isfunction(value) or inspect.ismethod(value) or inspect.isbuiltin(value)
