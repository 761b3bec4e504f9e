"""The benchmark harness itself: CPU accounting, servers taking turns, the profile command.

These start real servers and real load (the built-in generator, so wrk is not needed) for a
second or two; they assert what was recorded and in which order, never how fast anything was.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import xml.dom.minidom
from pathlib import Path

import pytest

from benchmarks import report
from benchmarks.catalog import SCENARIOS, SERVERS, ServerSpec
from benchmarks.flame import flame_svg, parse_collapsed, top_table
from benchmarks.procs import ROOT, cpu_seconds
from benchmarks.runner import Settings
from benchmarks.turns import run_turns

BURN = """
import os, sys, time
child = os.fork()
if child == 0:
    while time.process_time() < 0.5:
        pass
    os._exit(0)
os.waitpid(child, 0)
print("reaped", flush=True)
sys.stdin.read()
"""


def test_cpu_seconds_counts_a_child_that_already_exited() -> None:
    """A worker that burned CPU and was reaped still counts, through the parent's cutime."""
    proc = subprocess.Popen(
        [sys.executable, "-c", BURN],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "reaped"
        # The child spent at least 0.5 s of CPU; /proc counts in clock ticks (10 ms).
        assert cpu_seconds(proc.pid) >= 0.45
    finally:
        proc.kill()
        proc.wait(10)


def test_cpu_seconds_of_a_missing_process_is_zero() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    assert cpu_seconds(proc.pid) == 0.0


def test_flame_graph_and_top_table_from_collapsed_stacks() -> None:
    text = textwrap.dedent(
        """\
        main (app.py:1);loop (dualcorn/server.py:5);parse (dualcorn/head.py:9) 30
        main (app.py:1);loop (dualcorn/server.py:5) 10
        main (app.py:1);handle (flask/app.py:3);render (flask/json.py:7) 60
        not a stack line
        """
    )
    profile = parse_collapsed(text)
    assert profile.total == 100
    table = top_table(profile, 2)
    assert "`render`" in table[2] and "60.0" in table[2]
    assert "`parse`" in table[3]
    assert not any("`loop`" in line for line in table[:4])  # only the top 2 by self time
    assert "| `flask` | 60.0 |" in table
    svg = flame_svg(profile, "test <profile>")
    document = xml.dom.minidom.parseString(svg)
    titles = [node.firstChild.data for node in document.getElementsByTagName("title")]
    assert "render (flask/json.py:7) (60.0 %)" in titles
    assert "parse (dualcorn/head.py:9) (30.0 %)" in titles


@pytest.mark.timeout(120)
def test_servers_take_turns_and_cpu_per_request_is_recorded() -> None:
    """Two real servers, two rounds: A B A B, each round with its requests and CPU."""
    scenario = SCENARIOS["asgi_hello"]
    specs = [SERVERS["dualcorn"], SERVERS["dualcorn-h11"]]
    settings = Settings(rounds=2, duration=1.0, warmup=0.0, use_wrk=False, quiet_wait=0.0)
    lines: list[str] = []
    rows = run_turns(specs, scenario, settings, lines.append)
    rounds = [line.split()[1] for line in lines if " round " in line]
    assert rounds == ["dualcorn", "dualcorn-h11", "dualcorn", "dualcorn-h11"], lines
    for row in rows:
        assert row.status == "ok", row.reason
        assert len(row.rounds_requests) == 2 and min(row.rounds_requests) > 0
        assert len(row.rounds_cpu_us) == 2 and min(row.rounds_cpu_us) > 0
        assert row.cpu_us is not None and row.rps is not None
        assert row.peak_rss > 0
    text = report.markdown(report.machine(), settings, [(scenario, rows)])
    assert "## Headline: server CPU per request, ratio to dualcorn" in text
    assert "us (1.00)" in text  # dualcorn against itself
    svg = report.chart([(scenario, rows)], "test")
    xml.dom.minidom.parseString(svg)
    assert "us/req" in svg


@pytest.mark.timeout(120)
def test_a_server_that_fails_leaves_the_table_and_the_others_go_on() -> None:
    scenario = SCENARIOS["asgi_hello"]
    broken = ServerSpec(
        "broken",
        ("asgi",),
        lambda target, interface, port, log: [sys.executable, "-c", "raise SystemExit(3)"],
        "dualcorn",
        "exits at once",
    )
    settings = Settings(rounds=1, duration=1.0, warmup=0.0, use_wrk=False, quiet_wait=0.0)
    rows = run_turns([broken, SERVERS["dualcorn"]], scenario, settings, lambda line: None)
    assert rows[0].status == "failed" and "exited with 3" in rows[0].reason
    assert rows[1].status == "ok" and rows[1].cpu_us


@pytest.mark.timeout(120)
@pytest.mark.parametrize("profiler", ["inprocess", "py-spy"])
def test_profile_command_writes_flame_graph_and_top_functions(
    profiler: str, tmp_path: Path
) -> None:
    if profiler == "py-spy" and shutil.which("py-spy") is None:
        pytest.skip("py-spy is not installed (pip install -e '.[bench]')")
    argv = [sys.executable, "-m", "benchmarks.profile", "asgi_hello", "--profiler", profiler]
    argv += ["--duration", "2", "--warmup", "0", "--loadgen", "python", "--rate", "100"]
    argv += ["--output", str(tmp_path)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=100)
    if profiler == "py-spy" and "py-spy failed" in done.stderr:
        pytest.skip(f"py-spy may not attach here: {done.stderr.strip()[-200:]}")
    assert done.returncode == 0, done.stderr[-2000:]
    md = (tmp_path / "profile-asgi_hello.md").read_text()
    assert "## Top 20 functions by self time" in md
    assert "dualcorn/" in md  # the server's own functions show up
    xml.dom.minidom.parse(str(tmp_path / "profile-asgi_hello.svg"))
    assert parse_collapsed((tmp_path / "profile-asgi_hello.txt").read_text()).total > 0


def test_command_takes_the_access_log_and_the_tls_files_together() -> None:
    """Both switches reach the argv: the access log at level info and the server's TLS flags."""
    argv = SERVERS["dualcorn"].command("asgi_hello:app", "asgi", 8000, True, ("c.pem", "k.pem"))
    assert "--no-access-log" not in argv and argv[argv.index("--log-level") + 1] == "info"
    assert argv[-4:] == ["--ssl-certfile", "c.pem", "--ssl-keyfile", "k.pem"]
    argv = SERVERS["hypercorn"].command("asgi_hello:app", "asgi", 8000, False, ("c", "k"))
    assert argv[-4:] == ["--certfile", "c", "--keyfile", "k"]
    tls = SCENARIOS["tls_hello_wsgi"]
    assert not SERVERS["waitress"].serves(tls) and SERVERS["gunicorn"].serves(tls)
    assert SERVERS["nginx"].serves(SCENARIOS["static_1kib"])
    assert not SERVERS["nginx"].serves(SCENARIOS["asgi_hello"])
    with pytest.raises(ValueError, match="does not serve TLS"):
        SERVERS["waitress"].command("wsgi_hello:app", "wsgi", 8000, tls=("c", "k"))


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("scenario", "peer"), [("tls_hello_asgi", "uvicorn"), ("static_1kib", "nginx")]
)
def test_tls_and_static_scenarios_take_turns_with_cpu_per_request(scenario: str, peer: str) -> None:
    """Over https (the probe verifies the test CA) and from a static root, peers included."""
    if peer == "nginx" and shutil.which("nginx") is None:
        pytest.skip("nginx is not installed")
    if peer == "uvicorn":
        pytest.importorskip("uvicorn")
    pytest.importorskip("trustme")
    specs = [SERVERS["dualcorn"], SERVERS[peer]]
    settings = Settings(rounds=1, duration=1.0, warmup=0.0, use_wrk=False, quiet_wait=0.0)
    rows = run_turns(specs, SCENARIOS[scenario], settings, lambda line: None)
    for row in rows:
        assert row.status == "ok", (row.server, row.reason)
        assert row.rounds_requests[0] > 0 and row.non_2xx == 0
        assert row.cpu_us is not None and row.cpu_us > 0
