"""detect_interface on real framework objects and on the awkward shapes people write by hand."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import markcoroutinefunction, sync_to_async

from dualcorn.adapters.detect import Detection, InterfaceName, describe, detect_interface

# Module in tests/apps, interface it must be detected as.  The same modules are served end to
# end by test_frameworks_e2e, so what is detected here is what the server runs there.
FRAMEWORK_APPS: list[tuple[str, InterfaceName]] = [
    ("fw_fastapi", "asgi3"),
    ("fw_starlette", "asgi3"),
    ("fw_starlette_router", "asgi3"),
    ("fw_starlette_gzip", "asgi3"),
    ("fw_litestar", "asgi3"),
    ("fw_quart", "asgi3"),
    ("fw_quart_asgi_app", "asgi3"),
    ("fw_django_asgi", "asgi3"),
    ("fw_django_wsgi", "wsgi"),
    ("fw_channels", "asgi3"),
    ("fw_falcon_wsgi", "wsgi"),
    ("fw_falcon_asgi", "asgi3"),
    ("fw_flask", "wsgi"),
    ("fw_flask_wsgi_app", "wsgi"),
    ("fw_flask_proxyfix", "wsgi"),
    ("fw_bottle", "wsgi"),
    ("fw_pyramid", "wsgi"),
    ("fw_asgiref_wsgitoasgi", "asgi3"),
    ("fw_a2wsgi", "wsgi"),
    ("fw_asgi2_class", "asgi2"),
    ("fw_instrumented", "asgi3"),
]


@pytest.mark.parametrize(("module", "interface"), FRAMEWORK_APPS)
def test_framework_apps(module: str, interface: InterfaceName) -> None:
    app = importlib.import_module(f"tests.apps.{module}").app
    detection = detect_interface(app)
    assert detection.interface == interface, detection.reason
    assert not detection.ambiguous, detection.reason


def test_channels_pieces() -> None:
    channels_app = importlib.import_module("tests.apps.fw_channels")
    assert detect_interface(channels_app.url_router) == Detection(
        "asgi3", "URLRouter instance: async (scope, receive, send)"
    )
    # as_asgi() returns an async function whose __wrapped__ is the consumer *class*; reading
    # the wrapper's own signature, not the class's constructor, is what makes this asgi3.
    consumer = channels_app.Hello.as_asgi()
    assert consumer.__wrapped__ is channels_app.Hello
    assert detect_interface(consumer).interface == "asgi3"
    assert not detect_interface(consumer).ambiguous


def test_django_async_handler_has_no_marker_but_async_call() -> None:
    from django.core.handlers.asgi import ASGIHandler

    detection = detect_interface(importlib.import_module("tests.apps.fw_django_asgi").app)
    assert isinstance(importlib.import_module("tests.apps.fw_django_asgi").app, ASGIHandler)
    assert detection.reason == "ASGIHandler instance: async (scope, receive, send)"


def test_uvicorn_asgi2_middleware_is_asgi3() -> None:
    uvicorn_asgi2 = pytest.importorskip("uvicorn.middleware.asgi2")
    asgi2_app = importlib.import_module("tests.apps.fw_asgi2_class").app
    assert detect_interface(asgi2_app).interface == "asgi2"
    wrapped = uvicorn_asgi2.ASGI2Middleware(asgi2_app)
    assert detect_interface(wrapped) == Detection(
        "asgi3", "ASGI2Middleware instance: async (scope, receive, send)"
    )


# --- hand-written shapes -----------------------------------------------------------------------


async def asgi3_function(scope: Any, receive: Any, send: Any) -> None: ...


def wsgi_function(environ: Any, start_response: Any) -> Iterator[bytes]:
    yield b""


async def asgi3_with_settings(settings: dict[str, str], scope: Any, receive: Any, send: Any):
    return None


def wsgi_with_settings(settings: dict[str, str], environ: Any, start_response: Any) -> list[bytes]:
    return []


class AsyncCallable:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...

    async def handle(self, scope: Any, receive: Any, send: Any) -> None: ...


class Asgi2Class:
    def __init__(self, scope: Any) -> None: ...

    async def __call__(self, receive: Any, send: Any) -> None: ...


class Pep3333Class:
    """PEP 3333 allows a class: instantiating it with (environ, start_response) is the call."""

    def __init__(self, environ: Any, start_response: Any) -> None: ...

    def __iter__(self) -> Iterator[bytes]:
        yield b"hello"


class AwaitableClass:
    def __init__(self, scope: Any, receive: Any, send: Any) -> None: ...

    def __await__(self) -> Any:
        yield


def asgi2_function(scope: Any) -> Callable[..., Any]:
    async def instance(receive: Any, send: Any) -> None: ...

    return instance


def wraps_forwarding(inner: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(inner)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return inner(*args, **kwargs)

    return wrapper


class SelfSelectingMiddleware:
    """Like Sentry's ASGI middleware: a generic __call__, and self.__call__ set per interface."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.__call__ = self._run_asgi3

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._run_asgi3(*args, **kwargs)

    async def _run_asgi3(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def marked_sync(scope: Any, receive: Any, send: Any) -> Any:
    return asgi3_function(scope, receive, send)


markcoroutinefunction(marked_sync)  # asgiref's marker, as Django uses on its handlers


class MarkedDouble:
    _asgi_double_callable = True

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...


def marked_single(scope: Any) -> None: ...


marked_single._asgi_single_callable = True  # type: ignore[attr-defined]


SHAPES: list[tuple[str, object, InterfaceName]] = [
    ("async function", asgi3_function, "asgi3"),
    ("generator wsgi function", wsgi_function, "wsgi"),
    ("instance with async __call__", AsyncCallable(), "asgi3"),
    ("bound async method", AsyncCallable().handle, "asgi3"),
    ("partial of async function", functools.partial(asgi3_with_settings, {}), "asgi3"),
    ("partial of instance", functools.partial(AsyncCallable()), "asgi3"),
    ("partial of bound method", functools.partial(AsyncCallable().handle), "asgi3"),
    ("partial of wsgi function", functools.partial(wsgi_with_settings, {}), "wsgi"),
    ("nested partial", functools.partial(functools.partial(asgi3_with_settings), {}), "asgi3"),
    ("ASGI 2 class", Asgi2Class, "asgi2"),
    ("ASGI 2 function", asgi2_function, "asgi2"),
    ("PEP 3333 class", Pep3333Class, "wsgi"),
    ("class with __await__", AwaitableClass, "asgi3"),
    ("wraps(*args) around async app", wraps_forwarding(asgi3_function), "asgi3"),
    ("wraps(*args) around wsgi app", wraps_forwarding(wsgi_function), "wsgi"),
    ("wraps(*args) around instance", wraps_forwarding(AsyncCallable()), "asgi3"),
    ("wraps twice", wraps_forwarding(wraps_forwarding(wsgi_function)), "wsgi"),
    ("instance sets self.__call__", SelfSelectingMiddleware(asgi3_function), "asgi3"),
    ("asgiref markcoroutinefunction", marked_sync, "asgi3"),
    ("asgiref sync_to_async object", sync_to_async(wsgi_function), "asgi3"),
    ("_asgi_double_callable marker", MarkedDouble(), "asgi2"),
    ("_asgi_single_callable marker", marked_single, "asgi3"),
]


@pytest.mark.parametrize(("app", "interface"), [s[1:] for s in SHAPES], ids=[s[0] for s in SHAPES])
def test_shapes(app: object, interface: InterfaceName) -> None:
    detection = detect_interface(app)
    assert detection.interface == interface, detection.reason
    assert not detection.ambiguous, detection.reason


# --- ambiguous shapes --------------------------------------------------------------------------


def star_args(*args: Any) -> Any: ...


def sync_three(scope, receive, send):  # type: ignore[no-untyped-def]  # no annotation: no proof
    return asgi3_function(scope, receive, send)


def wsgi_with_optional_third(environ: Any, start_response: Any, extra: Any = None) -> Any: ...


async def async_one(scope: Any) -> None: ...


def create_app() -> Any: ...


class SyncCallClass:
    def __init__(self, scope: Any) -> None: ...

    def __call__(self, receive: Any, send: Any) -> Any: ...


AMBIGUOUS: list[tuple[str, object, InterfaceName, list[str]]] = [
    ("*args", star_args, "wsgi", ["--interface wsgi", "--interface asgi3", "--interface asgi2"]),
    ("sync 3 parameters", sync_three, "asgi3", ["--interface asgi3", "--interface wsgi"]),
    ("wsgi + optional", wsgi_with_optional_third, "wsgi", ["--interface asgi3"]),
    ("async 1 parameter", async_one, "asgi3", ["--interface asgi2"]),
    ("no parameters", create_app, "asgi3", ["--factory"]),
    ("class with sync __call__", SyncCallClass, "asgi2", ["--interface asgi3"]),
    ("app class, not instance", AsyncCallable, "asgi3", ["'module:ClassName()'", "--factory"]),
    ("not callable", object(), "asgi3", ["not callable", "--interface wsgi"]),
    ("wraps(*args) around *args", wraps_forwarding(star_args), "wsgi", ["--interface asgi3"]),
]


@pytest.mark.parametrize(
    ("app", "interface", "mentions"), [a[1:] for a in AMBIGUOUS], ids=[a[0] for a in AMBIGUOUS]
)
def test_ambiguous_shapes_name_the_flag(
    app: object, interface: InterfaceName, mentions: list[str]
) -> None:
    detection = detect_interface(app)
    assert detection.ambiguous
    assert detection.interface == interface, detection.reason
    assert f"--interface {interface}" in detection.reason
    for text in mentions:
        assert text in detection.reason


def test_sync_three_with_awaitable_annotation_is_certain() -> None:
    def traced(scope: Any, receive: Any, send: Any) -> Any:
        return asgi3_function(scope, receive, send)

    assert detect_interface(traced).ambiguous
    traced.__annotations__["return"] = "Coroutine[Any, Any, None]"
    assert detect_interface(traced) == Detection(
        "asgi3", "traced: (scope, receive, send) takes 3 arguments and returns an awaitable"
    )


def test_detection_never_calls_the_app() -> None:
    calls: list[object] = []

    class Recorder:
        def __init__(self, *args: object) -> None:
            calls.append(args)

        def __call__(self, *args: object) -> None:
            calls.append(args)

    detect_interface(Recorder)
    detect_interface(Recorder())
    assert len(calls) == 1  # only the explicit Recorder() above


def test_describe() -> None:
    assert describe("asgi3") == "ASGI 3 application"
    assert describe("asgi2") == "ASGI 2 application"
    assert describe("wsgi") == "WSGI application"


def test_detection_is_frozen() -> None:
    detection = detect_interface(asgi3_function)
    with pytest.raises(AttributeError):
        detection.interface = "wsgi"  # type: ignore[misc]
