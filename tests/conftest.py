"""Fixtures shared by the whole suite.

Every test that talks to a real server runs twice, on asyncio's loop and on uvloop (where it is
installed): the ``serve`` fixture is parametrized, and async tests get both loops through
pytest-asyncio's ``pytest_asyncio_loop_factories`` hook.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from dualcorn.loops import uvloop_available
from tests.memconn import PARSERS
from tests.support import ServerThread

LOOPS = ["asyncio", "uvloop"] if uvloop_available() else ["asyncio"]
HTTPS = ["h11", "httptools"] if importlib.util.find_spec("httptools") else ["h11"]
# The HTTP/2 frame layers (dualcorn.protocols.http2.engines): every test of the HTTP/2 modules
# (tests/test_http2*.py) runs on each engine installed, as the HTTP/1.1 tests on each parser.
H2_ENGINES = ["h2", "zttp"] if importlib.util.find_spec("zttp") else ["h2"]


# The wires of the ``wire`` fixture: an in-memory connection through each HTTP/1.1 tokenizer,
# and HTTP/2 (h2c with prior knowledge, the default engine: zttp when installed, as the test
# extra does, else h2) when h2 is installed.
WIRES = [*PARSERS, "h2"] if importlib.util.find_spec("h2") else list(PARSERS)


# ``@over_both`` on a test that takes ``serve`` and ``protocol``: it runs over HTTP/1.1 on each
# parser and over HTTP/2 (h2c, the default engine, see WIRES) once, since the parser only reads
# the preface before it hands the connection over.  (A parametrize mark, because a mark is what
# overrides the parametrized ``http_name`` fixture.)
_OVER = [(name, "1.1") for name in HTTPS]
if importlib.util.find_spec("h2"):
    _OVER.append((HTTPS[-1], "2"))
over_both = pytest.mark.parametrize(
    ("http_name", "protocol"),
    _OVER,
    ids=[name if version == "1.1" else "h2" for name, version in _OVER],
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.module.__name__.startswith("tests.test_http2"):
        if "h2_engine" not in metafunc.fixturenames:
            metafunc.fixturenames.append("h2_engine")
        metafunc.parametrize("h2_engine", H2_ENGINES)


@pytest.fixture(autouse=True)
def _h2_engine_choice(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a test runs with an ``h2_engine`` parameter, ``--http2-engine auto`` means it."""
    callspec = getattr(request.node, "callspec", None)
    engine = callspec.params.get("h2_engine") if callspec is not None else None
    if engine is None:
        return
    from dualcorn.protocols.http2 import engines

    resolve = engines.engine_name
    monkeypatch.setattr(
        engines,
        "engine_name",
        lambda config: engine if config.http2_engine == "auto" else resolve(config),
    )


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    if uvloop_available():
        import uvloop

        factories["uvloop"] = uvloop.new_event_loop
    return factories


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Records of the ``dualcorn.error`` logger (propagation forced on, as in a host program)."""
    logger = logging.getLogger("dualcorn.error")
    propagate = logger.propagate
    logger.propagate = True
    caplog.set_level(logging.DEBUG, logger="dualcorn.error")
    yield caplog
    logger.propagate = propagate


@pytest.fixture(params=LOOPS)
def loop_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=HTTPS)
def http_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def serve(loop_name: str, http_name: str) -> Iterator[Callable[..., ServerThread]]:
    """``with serve(app, **options) as server:`` runs a real server on 127.0.0.1:0.

    Parametrized over both loops and both HTTP parsers: the same test proves all four.
    """
    started: list[ServerThread] = []

    def start(app: Any, **options: Any) -> ServerThread:
        options.setdefault("loop", loop_name)
        options.setdefault("http", http_name)
        server = ServerThread(app, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture(params=PARSERS)
def connect(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``async with connect(app, interface=..., **options) as conn:`` an in-memory connection.

    Parametrized over every HTTP/1.1 tokenizer installed (see tests/memconn.py);
    ``conn.parser`` names it.
    """
    from tests.memconn import MemoryConnection

    def make(app: Any, **options: Any) -> MemoryConnection:
        return MemoryConnection(str(request.param), app, **options)

    yield make


@pytest.fixture(params=WIRES)
def wire(request: pytest.FixtureRequest) -> Any:
    """``async with wire(app, **options) as client:`` a client on an in-memory connection.

    Parametrized over every HTTP/1.1 tokenizer (:class:`tests.memconn.Wire`) and HTTP/2
    (:class:`tests.h2memconn.H2Wire`, through the HTTP/1.1 protocol's h2c hand-over): both
    offer ``request``/``start``/``send_body``/``response`` and ``version`` ("1.1" or "2"), so
    one test proves a behaviour on every protocol.
    """
    from tests.memconn import WireFactory

    return WireFactory(str(request.param))
