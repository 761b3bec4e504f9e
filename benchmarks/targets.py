"""Issue 15's targets, checked against one run: the table at the top of ``latest.md``.

Each target compares dualcorn with one peer in one scenario, in the measure the issue names:
req/s for ASGI hello ("0.85x granian's req/s"), CPU per request for the framework scenarios
("in CPU per request"); the WSGI targets name no measure and are judged on the run's headline,
CPU per request.  Both ratios are printed, written as dualcorn's advantage so that "at least"
reads the same way in both: for CPU ``peer us / dualcorn us`` (2.0: dualcorn needs half the
CPU), for req/s ``dualcorn req/s / peer req/s`` (2.0: twice the requests).  A target whose
scenario or peer did not run (or failed) is "not measured".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from benchmarks.catalog import Scenario
from benchmarks.runner import Row

__all__ = ["TARGETS", "Target", "checked", "markdown"]

Measure = Literal["cpu", "rps"]


@dataclass(frozen=True)
class Target:
    scenario: str
    peer: str
    at_least: float  # dualcorn's advantage, in ``measure``
    measure: Measure
    text: str  # as the issue says it
    # Where a missed target's time goes: the profile and "what it would take", relative to
    # results/ (the issue asks for that profile wherever a target is missed).
    profile: str = ""


ASGI_PROFILE = "profiles-asgi.md#per-missed-target-what-it-would-take"
WSGI_PROFILE = "wsgi-speed.md#what-the-remaining-gap-to-granian-is-made-of"


TARGETS: tuple[Target, ...] = (
    Target(
        "asgi_hello",
        "granian",
        0.85,
        "rps",
        "ASGI hello: at least 0.85x granian's req/s",
        ASGI_PROFILE,
    ),
    Target(
        "asgi_hello",
        "uvicorn-zttp",
        1.2,
        "rps",
        "ASGI hello: at least 1.2x uvicorn-zttp's",
        ASGI_PROFILE,
    ),
    Target("wsgi_hello", "granian", 0.5, "cpu", "WSGI hello: at least 0.5x granian", WSGI_PROFILE),
    Target(
        "wsgi_hello", "waitress", 2.5, "cpu", "WSGI hello: at least 2.5x waitress", WSGI_PROFILE
    ),
    Target("flask_json", "granian", 1.0, "cpu", "Flask JSON: at least granian's", WSGI_PROFILE),
    Target(
        "flask_json", "waitress", 1.5, "cpu", "Flask JSON: at least 1.5x waitress", WSGI_PROFILE
    ),
    Target("django_view", "granian", 1.0, "cpu", "Django view: at least granian's", WSGI_PROFILE),
    Target(
        "fastapi_json", "uvicorn", 1.1, "cpu", "FastAPI JSON: at least 1.1x uvicorn", ASGI_PROFILE
    ),
    Target("fastapi_json", "granian", 1.0, "cpu", "FastAPI JSON: at least granian", ASGI_PROFILE),
    Target(
        "starlette_json",
        "uvicorn",
        1.1,
        "cpu",
        "Starlette JSON: at least 1.1x uvicorn",
        ASGI_PROFILE,
    ),
    Target(
        "starlette_json", "granian", 1.0, "cpu", "Starlette JSON: at least granian", ASGI_PROFILE
    ),
    Target(
        "litestar_json", "uvicorn", 1.1, "cpu", "Litestar JSON: at least 1.1x uvicorn", ASGI_PROFILE
    ),
    Target("litestar_json", "granian", 1.0, "cpu", "Litestar JSON: at least granian", ASGI_PROFILE),
)


@dataclass(frozen=True)
class Checked:
    target: Target
    cpu: float | None  # dualcorn's advantage in CPU per request
    rps: float | None  # dualcorn's advantage in req/s
    cpu_rounds: tuple[float, float] | None  # the same over rounds: (worst, best)

    @property
    def measured(self) -> float | None:
        return self.cpu if self.target.measure == "cpu" else self.rps

    @property
    def met(self) -> bool | None:
        value = self.measured
        return None if value is None else value >= self.target.at_least


def _ok(rows: list[Row], name: str) -> Row | None:
    for row in rows:
        if row.server == name and row.status == "ok" and row.cpu_us and row.rps:
            return row
    return None


def _round_ratios(ours: Row, peer: Row) -> tuple[float, float] | None:
    """Round by round (servers took turns, so round i of both saw the same machine)."""
    pairs = list(zip(ours.rounds_cpu_us, peer.rounds_cpu_us, strict=False))
    if len(pairs) < 2 or not all(a for a, _ in pairs):
        return None
    ratios = [b / a for a, b in pairs]
    return min(ratios), max(ratios)


def checked(results: list[tuple[Scenario, list[Row]]]) -> list[Checked]:
    by_scenario = {scenario.name: rows for scenario, rows in results}
    out = []
    for target in TARGETS:
        rows = by_scenario.get(target.scenario, [])
        ours, peer = _ok(rows, "dualcorn"), _ok(rows, target.peer)
        if ours is None or peer is None:
            out.append(Checked(target, None, None, None))
            continue
        assert ours.cpu_us and peer.cpu_us and ours.rps and peer.rps
        out.append(
            Checked(
                target,
                cpu=peer.cpu_us / ours.cpu_us,
                rps=ours.rps / peer.rps,
                cpu_rounds=_round_ratios(ours, peer),
            )
        )
    return out


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def markdown(results: list[tuple[Scenario, list[Row]]]) -> list[str]:
    """The targets table, or nothing when none of its scenarios ran."""
    rows = checked(results)
    if all(c.measured is None for c in rows):
        return []
    met = sum(1 for c in rows if c.met)
    measured = sum(1 for c in rows if c.met is not None)
    out = [
        "## Issue 15 targets",
        "",
        f"{met} of {measured} measured targets met in this run. dualcorn's advantage over the "
        "peer: CPU = peer CPU per request / dualcorn's (the headline), req/s = dualcorn's "
        "req/s / the peer's; above the target is met. Each target is judged on the measure the "
        "issue names (WSGI targets name none: CPU per request). CPU rounds: the ratio's worst "
        "and best round (servers take turns, so a round compares like with like).",
        "",
        "| target | judged on | CPU | CPU rounds | req/s | met | where the time goes |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for c in rows:
        rounds = f"{c.cpu_rounds[0]:.2f}-{c.cpu_rounds[1]:.2f}" if c.cpu_rounds else "-"
        verdict = "not measured" if c.met is None else "**yes**" if c.met else "no"
        measure = "CPU/req" if c.target.measure == "cpu" else "req/s"
        where = f"[profile]({c.target.profile})" if c.met is False and c.target.profile else ""
        out.append(
            f"| {c.target.text} | {measure} | {_x(c.cpu)} | {rounds} | {_x(c.rps)} | {verdict} "
            f"| {where} |"
        )
    return [*out, ""]
