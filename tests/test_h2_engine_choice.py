"""``--http2-engine``: which HTTP/2 engine ``auto`` takes, and what an explicit choice needs.

(Apart from tests/test_http2*.py, which conftest.py runs on each engine in turn.)
"""

from __future__ import annotations

import pytest

from dualcorn.config import Config
from dualcorn.errors import ConfigError
from dualcorn.protocols.http2 import engines


def test_auto_takes_h2_until_zttp_passes_every_probe() -> None:
    assert engines.engine_name(Config(app="a:b")) == "h2"
    assert engines.engine_name(Config(app="a:b", http2_engine="h2")) == "h2"
    if engines.zttp_installed():
        assert engines.engine_name(Config(app="a:b", http2_engine="zttp")) == "zttp"


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
