"""``--http2-engine``: which HTTP/2 engine ``auto`` takes, and what an explicit choice needs.

(Apart from tests/test_http2*.py, which conftest.py runs on each engine in turn.)
"""

from __future__ import annotations

import logging

import pytest

from dualcorn.config import Config
from dualcorn.errors import ConfigError
from dualcorn.protocols.http2 import engines


def test_auto_takes_zttp_when_installed_and_the_configuration_fits() -> None:
    auto = "zttp" if engines.zttp_installed() else "h2"
    assert engines.engine_name(Config(app="a:b")) == auto
    assert engines.engine_name(Config(app="a:b", http2_max_concurrent_streams=128)) == auto
    assert engines.engine_name(Config(app="a:b", limit_request_head=65536)) == auto
    assert engines.engine_name(Config(app="a:b", http2_engine="h2")) == "h2"
    if engines.zttp_installed():
        assert engines.engine_name(Config(app="a:b", http2_engine="zttp")) == "zttp"


@pytest.mark.parametrize(
    ("option", "reason"),
    [
        ({"http2_max_concurrent_streams": 129}, "--http2-max-concurrent-streams"),
        ({"limit_request_head": 65537}, "--limit-request-head"),
    ],
)
def test_auto_takes_h2_past_zttps_ceilings(
    option: dict[str, int], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("zttp")
    config = Config(app="a:b", **option)  # type: ignore[arg-type]
    with caplog.at_level(logging.DEBUG, logger="dualcorn.error"):
        assert engines.engine_name(config) == "h2"
        assert engines.engine_name(config) == "h2"
    assert reason in (engines.zttp_misfit(config) or "")
    said = [r.getMessage() for r in caplog.records if "--http2-engine auto" in r.getMessage()]
    assert len(said) <= 1  # once per configuration, not per connection
    assert all(reason in line for line in said)


def test_auto_takes_only_the_zttp_release_the_engine_was_verified_against(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engines, "zttp_installed", lambda: True)
    config = Config(app="a:b")
    for version, fits in [("0.0.35", True), ("0.0.35.1", True), ("0.0.36", False), (None, False)]:
        monkeypatch.setattr(engines, "zttp_version", lambda version=version: version)
        assert (engines.zttp_misfit(config) is None) is fits, version


def test_auto_is_h2_without_zttp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines, "zttp_installed", lambda: False)
    config = Config(app="a:b", http2_max_concurrent_streams=101)
    assert engines.engine_name(config) == "h2"
    assert "not installed" in (engines.zttp_misfit(config) or "")


def test_zttp_is_refused_where_its_limits_do_not_fit() -> None:
    pytest.importorskip("zttp")
    with pytest.raises(ConfigError, match="128"):
        Config(app="a:b", http2_engine="zttp", http2_max_concurrent_streams=200)
    with pytest.raises(ConfigError, match="64 KiB"):
        Config(app="a:b", http2_engine="zttp", limit_request_head=128 * 1024)
    with pytest.raises(ConfigError, match="http2_engine"):
        Config(app="a:b", http2_engine="nghttp2")  # type: ignore[arg-type]


def test_the_cli_option() -> None:
    from dualcorn.cli import config_from_args

    assert config_from_args(["a:b", "--http2-engine", "h2"]).http2_engine == "h2"
    assert config_from_args(["a:b"]).http2_engine == "auto"
