"""--gc-freeze and --gc-threshold (dualcorn.gc_tuning), seen from inside a real server process."""

from __future__ import annotations

import gc
from typing import Any

import httpx
import pytest

from dualcorn import Config
from dualcorn.cli import build_parser
from dualcorn.errors import ConfigError
from dualcorn.gc_tuning import GC_THRESHOLD_MAX, GC_THRESHOLD_MIN
from tests.helpers import run_dualcorn

APP = ("tests.apps.gc_report:app", "--port", "0", "--interface", "wsgi", "--no-access-log")


def _gc_state(*options: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    with run_dualcorn(*APP, *options, env=env) as server:
        state: dict[str, Any] = httpx.get(server.url + "/", timeout=10).json()
        assert server.stop() == 0
    return state


def test_the_app_is_frozen_by_default() -> None:
    state = _gc_state()
    # The app's module-level objects were loaded before the freeze: collections skip them.
    assert state["frozen"] > state["frozen_at_import"] + 1000
    assert state["loaded_tracked"] is False
    assert state["threshold"][0] == gc.get_threshold()[0]  # the interpreter's own, untouched


def test_no_gc_freeze_leaves_the_collector_alone() -> None:
    state = _gc_state("--no-gc-freeze")
    assert state["frozen"] == state["frozen_at_import"]  # nothing frozen by the server
    assert state["loaded_tracked"] is True


def test_gc_threshold_sets_the_young_generation_only() -> None:
    older = list(gc.get_threshold()[1:])
    state = _gc_state("--gc-threshold", "20000")
    assert state["threshold"] == [20000, *older]


def test_gc_threshold_from_the_environment() -> None:
    state = _gc_state(env={"DUALCORN_GC_THRESHOLD": "5000", "DUALCORN_GC_FREEZE": "false"})
    assert state["threshold"][0] == 5000
    assert state["frozen"] == state["frozen_at_import"]


@pytest.mark.parametrize("value", [0, GC_THRESHOLD_MIN - 1, GC_THRESHOLD_MAX + 1, -5])
def test_gc_threshold_is_bounded(value: int) -> None:
    with pytest.raises(ConfigError, match="gc_threshold"):
        Config(app="tests.apps.gc_report:app", gc_threshold=value)


def test_cli_options_reach_config() -> None:
    args = build_parser().parse_args(["app:app", "--no-gc-freeze", "--gc-threshold", "700"])
    assert args.gc_freeze is False
    assert args.gc_threshold == 700
