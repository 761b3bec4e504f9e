"""The HTTP/2 scenarios of the benchmark harness: h2load as the load generator, the h2 probe.

The real-server tests run h2load for a second against real servers (hypercorn and granian,
which serve HTTP/2 out of the box) and assert what was recorded, never how fast it was.
"""

from __future__ import annotations

import shutil
import sys

import pytest

from benchmarks.catalog import SCENARIOS, SERVERS, ServerSpec
from benchmarks.h2load import parse_h2load
from benchmarks.procs import ServerFailed
from benchmarks.runner import Settings
from benchmarks.turns import run_turns

SUMMARY = """\
starting benchmark...
Application protocol: h2c
finished in 3.00s, 1000.00 req/s, 100KB/s
requests: 3010 total, 3050 started, 3010 done, 3000 succeeded, 10 failed, 10 errored, 0 timeout
status codes: 2999 2xx, 0 3xx, 0 4xx, 1 5xx
"""


def test_parse_h2load_rate_over_the_answered_span_and_percentiles() -> None:
    # 100 answered requests started 10 ms apart, each 1..100 ms long; one 503; one reset (-1).
    lines = [f"{1_000_000 + i * 10_000}\t200\t{(i + 1) * 1000}" for i in range(100)]
    lines += ["1000000\t503\t500", "1000000\t-1\t0", "garbage"]
    result = parse_h2load(SUMMARY, "\n".join(lines))
    assert result.requests == 100
    # first start 1.000 s, last end 1.000 + 0.990 + 0.100 = 2.090 s: 100 / 1.09 s
    assert result.rps == pytest.approx(100 / 1.09)
    assert result.p50_ms == pytest.approx(50.0, abs=1.0)
    assert result.p99_ms == pytest.approx(99.0, abs=1.0)
    assert result.errors == 10 and result.non_2xx == 1
    assert result.tool == "h2load (h2c)"


def test_parse_h2load_refuses_a_run_that_was_not_http2() -> None:
    with pytest.raises(ServerFailed, match="not HTTP/2"):
        parse_h2load(SUMMARY.replace("h2c", "http/1.1"), "")
    with pytest.raises(ValueError, match="unrecognised"):
        parse_h2load("h2load: connection refused\n", "")


def test_h2_scenarios_need_a_server_with_http2_flags() -> None:
    h2c = SCENARIOS["h2c_hello_asgi"]
    assert SERVERS["granian"].serves(h2c) and SERVERS["uvicorn-zttp"].serves(h2c)
    assert not SERVERS["uvicorn"].serves(h2c) and not SERVERS["dualcorn-h11"].serves(h2c)
    argv = SERVERS["uvicorn-zttp"].command("asgi_hello:app", "asgi", 8000, h2=True)
    assert argv[argv.index("--http") + 1] == "zttp" and "--http2" in argv
    argv = SERVERS["dualcorn"].command("asgi_hello:app", "asgi", 8000, tls=("c", "k"), h2=True)
    assert argv[-1] == "--http2" and "--ssl-certfile" in argv
    with pytest.raises(ValueError, match="does not serve HTTP/2"):
        SERVERS["uvicorn"].command("asgi_hello:app", "asgi", 8000, h2=True)


def test_the_dualcorn_rows_name_their_http2_engine() -> None:
    """``dualcorn`` runs the default (auto: zttp with the bench extra); the h2 table keeps
    both engines by name."""
    engines = {}
    for name in ("dualcorn", "dualcorn-h2", "dualcorn-zttp"):
        argv = SERVERS[name].command("asgi_hello:app", "asgi", 8000, h2=True)
        engines[name] = argv[argv.index("--http2-engine") + 1] if "--http2-engine" in argv else None
    assert engines == {"dualcorn": None, "dualcorn-h2": "h2", "dualcorn-zttp": "zttp"}


def _need_h2load() -> None:
    if shutil.which("h2load") is None:
        pytest.skip("h2load is not installed (apt-get install nghttp2-client)")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("scenario", ["h2c_hello_asgi", "h2_tls_hello_asgi"])
def test_h2_scenario_takes_turns_with_h2load(scenario: str) -> None:
    """dualcorn --http2 and two real HTTP/2 peers take turns under h2load; h2c and TLS."""
    _need_h2load()
    pytest.importorskip("hypercorn")
    pytest.importorskip("granian")
    pytest.importorskip("trustme")
    specs = [SERVERS["dualcorn"], SERVERS["hypercorn"], SERVERS["granian"]]
    settings = Settings(
        rounds=1, duration=1.0, warmup=0.0, quiet_wait=0.0, h2_connections=4, h2_streams=8
    )
    lines: list[str] = []
    rows = run_turns(specs, SCENARIOS[scenario], settings, lines.append)
    turns = [line.split()[1] for line in lines if " round " in line]
    assert turns == ["dualcorn", "hypercorn", "granian"], lines
    protocol = "h2" if SCENARIOS[scenario].tls else "h2c"
    for row in rows:
        assert row.status == "ok", (row.server, row.reason)
        assert row.tool == f"h2load ({protocol})"
        assert row.rounds_requests[0] > 0 and row.non_2xx == 0
        assert row.cpu_us is not None and row.cpu_us > 0
        if row.server == "dualcorn":
            # Only dualcorn's own streams must all succeed: hypercorn ends a connection after
            # 1,000 streams (keep_alive_max_requests), which h2load counts as failed streams
            # once a fast round passes that many per connection.
            assert row.errors == 0, row


@pytest.mark.timeout(120)
def test_a_server_without_http2_fails_the_h2_scenario() -> None:
    """uvicorn with httptools answers an h2c preface as bad HTTP/1.1: failed, not scored."""
    _need_h2load()
    pytest.importorskip("uvicorn")
    h1_only = ServerSpec(
        "h1-only",
        ("asgi",),
        lambda target, interface, port, log: [
            *(sys.executable, "-m", "uvicorn", target, "--port", str(port)),
            *("--http", "httptools", "--log-level", "warning"),
        ],
        "uvicorn",
        "HTTP/1.1 only",
        h2_flags=lambda tls: [],
    )
    settings = Settings(rounds=1, duration=1.0, warmup=0.0, quiet_wait=0.0)
    rows = run_turns([h1_only], SCENARIOS["h2c_hello_asgi"], settings, lambda line: None)
    assert rows[0].status == "failed" and "h2 probe" in rows[0].reason, rows[0].reason
