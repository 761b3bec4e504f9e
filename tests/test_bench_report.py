"""The benchmark report's targets table, the README's speed table and the run plan.

Pure functions over recorded rows (no server, no load): what is judged met, where the tables
go and what a run would do; never how fast anything was.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import plan, readme, report, targets
from benchmarks.catalog import SCENARIOS, SERVERS
from benchmarks.runner import Row, Settings


def _row(server: str, cpu_us: float, rps: float, rounds: list[float] | None = None) -> Row:
    return Row(server=server, cpu_us=cpu_us, rps=rps, rounds_cpu_us=rounds or [], p50_ms=1.0,
               p99_ms=2.0)  # fmt: skip


RESULTS = [
    (
        SCENARIOS["asgi_hello"],
        [
            _row("dualcorn", 20.0, 45_000.0),
            _row("granian", 15.0, 50_000.0),  # req/s 0.90x: met (0.85x)
            _row("uvicorn-zttp", 30.0, 40_000.0),  # req/s 1.125x: missed (1.2x)
        ],
    ),
    (
        SCENARIOS["fastapi_json"],
        [
            _row("dualcorn", 100.0, 9_000.0, [100.0, 90.0, 110.0]),
            _row("uvicorn", 120.0, 8_000.0, [115.0, 99.0, 132.0]),  # CPU 1.2x: met (1.1x)
            Row(server="granian", status="failed", reason="no start"),
        ],
    ),
]


def test_targets_are_judged_on_the_measure_the_issue_names() -> None:
    found = {(c.target.scenario, c.target.peer): c for c in targets.checked(RESULTS)}
    granian = found["asgi_hello", "granian"]
    assert granian.target.measure == "rps"
    assert round(granian.rps or 0, 2) == 0.9 and round(granian.cpu or 0, 2) == 0.75
    assert granian.met is True  # on req/s, although granian spends less CPU
    assert found["asgi_hello", "uvicorn-zttp"].met is False
    fastapi = found["fastapi_json", "uvicorn"]
    assert fastapi.met is True and fastapi.cpu_rounds == (1.1, 1.2)
    assert found["fastapi_json", "granian"].met is None  # failed: not measured
    assert found["wsgi_hello", "granian"].met is None  # did not run


def test_the_targets_table_heads_latest_md() -> None:
    info = report.machine()
    text = report.markdown(info, Settings(rounds=3, duration=4), RESULTS, "a note")
    assert text.index("## Issue 15 targets") < text.index("## Machine") < text.index("## Head")
    assert info["python"] in text.splitlines()[4]  # the run line names the interpreter
    assert "2 of 3 measured targets met" in text
    assert (
        "| ASGI hello: at least 1.2x uvicorn-zttp's | req/s | 1.50x | - | 1.12x | no "
        f"| [profile]({targets.ASGI_PROFILE}) |" in text
    )
    # A met or unmeasured target points at no profile: the issue asks for one where it is missed.
    assert "| FastAPI JSON: at least granian | CPU/req | - | - | - | not measured |  |" in text
    assert (
        "| FastAPI JSON: at least 1.1x uvicorn | CPU/req | 1.20x | 1.10-1.20 | 1.12x | **yes** |  |"
        in text
    )


def test_the_readme_table_is_written_between_its_markers(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    report.write_json(results / "latest.json", report.machine(), Settings(), RESULTS, "n")
    page = tmp_path / "README.md"
    page.write_text(f"# x\n\nbefore\n{readme.START}\nold table\n{readme.END}\nafter\n")
    assert readme.update(results, page)
    text = page.read_text()
    assert text.startswith("# x\n\nbefore\n") and text.endswith(f"{readme.END}\nafter\n")
    assert "old table" not in text
    # The best cell of each row is bold (the least CPU per request), whoever's it is.
    # Columns: dualcorn, uvicorn, uvicorn-zttp, granian.
    assert (
        "| ASGI hello | 20.0 us (45,000/s) |  | 30.0 us (40,000/s) | **15.0 us (50,000/s)** |"
        in text
    )
    assert "| FastAPI JSON | **100.0 us (9,000/s)** | 120.0 us (8,000/s) |  | failed |" in text
    assert "failed" in text  # granian's FastAPI row
    assert readme.update(results, page) and page.read_text() == text  # idempotent
    page.write_text("no markers\n")
    assert not readme.update(results, page)
    assert page.read_text() == "no markers\n"
    assert readme.main(["--results", str(results), "--readme", str(page)]) == 1
    assert json.loads((results / "latest.json").read_text())["note"] == "n"


def test_the_readme_bolds_the_best_cell_of_each_row() -> None:
    def row(server: str, cpu: float | None, rps: float, status: str = "ok") -> dict[str, object]:
        return {"server": server, "cpu_us": cpu, "rps": rps, "status": status}

    assert readme._best([row("a", 20.0, 1.0), None, row("b", 15.0, 2.0)]) == {2}
    assert readme._best([row("a", 15.0, 1.0), row("b", 15.04, 2.0)]) == {0, 1}  # a tie as printed
    assert readme._best([row("a", 1.0, 9.0, "failed"), row("b", 30.0, 1.0)]) == {1}
    assert readme._best([row("a", None, 10.0), row("b", None, 20.0)]) == {1}  # no CPU: req/s
    assert readme._best([None, row("a", 1.0, 0.0, "failed")]) == set()


def test_the_plan_lists_every_scenario_and_grows_with_the_rounds() -> None:
    scenarios, servers = list(SCENARIOS.values()), list(SERVERS.values())
    one = plan.estimate(scenarios, servers, Settings(rounds=1, duration=2, warmup=1))
    three = plan.estimate(scenarios, servers, Settings(rounds=3, duration=4))
    assert 0 < one[0] < three[0] and three[0] <= three[1]
    text = plan.describe(scenarios, servers, Settings())
    for name in SCENARIOS:
        assert f"  {name} " in text
    waitress = next(line for line in text.splitlines() if line.strip().startswith("asgi_hello "))
    assert "waitress" not in waitress and "uvicorn-zttp" in waitress


def test_profile_shares_split_the_server_from_the_app() -> None:
    from benchmarks.profile_shares import shares

    root = "process 1;main (dualcorn/cli.py:1);Runner.run (asyncio/runners.py:86)"
    cycle = f"{root};run_cycle (dualcorn/protocols/cycle.py:359)"
    app = f"{cycle};Starlette.__call__ (starlette/applications.py:92)"
    found = shares(
        [
            f"{root};HTTP1Connection._head (dualcorn/protocols/http1/messages.py:151) 5",
            f"{root} 2",  # the loop's own C code: the server's
            f"{app};dumps (json/__init__.py:183) 3",  # the stdlib called by the app: the app's
            f"{app} 4",
            f"{app};RequestCycle.send (dualcorn/protocols/cycle.py:115) 6",  # the app calls send
            f"{app};RequestCycle.send (dualcorn/protocols/cycle.py:115);x (json/a.py:1) 1",
            "garbage",
        ]
    )
    assert (found.server, found.app, found.total) == (14, 7, 21)
    assert found.packages == {"json": 3, "starlette": 4}


def test_every_target_links_a_profile_section_that_exists() -> None:
    results = Path(targets.__file__).parent / "results"
    for target in targets.TARGETS:
        page, _, anchor = target.profile.partition("#")
        headings = [line.lstrip("#").strip() for line in (results / page).read_text().splitlines()]
        slugs = {
            "".join(ch for ch in h.lower() if ch.isalnum() or ch in " -").replace(" ", "-")
            for h in headings
        }
        assert anchor in slugs, (target.text, target.profile)
