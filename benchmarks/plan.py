"""What a ``python -m benchmarks`` run will do and about how long it takes (``--plan``).

The estimate is a sum over scenarios of the harness's own steps, with per-step costs measured
on this project's 2-core machine (see benchmarks/README.md, "How long a run takes"): starting
and probing a server, the warm-up, each round's load plus its bookkeeping, the idle
scenarios' connection storms.  Waiting for a quiet machine comes on top: nothing on a quiet
machine, up to ``--quiet-wait`` seconds per round on a busy one, so both are printed.
"""

from __future__ import annotations

from benchmarks.catalog import Scenario, ServerSpec
from benchmarks.runner import Settings

__all__ = ["describe", "estimate"]

# Seconds, measured (a 1 x 2 s run of everything, 2026-11-30): starting a server and
# checking its answer; the bookkeeping around one round of one server (the /proc samples,
# wrk's start and report); one idle scenario's fixed part (start, hold, close) and its cost
# per connection opened.
START_S = 2.5
ROUND_OVERHEAD_S = 0.6
IDLE_BASE_S = 9.0
IDLE_PER_CONNECTION_S = 0.0012


def _servers(scenario: Scenario, servers: list[ServerSpec]) -> list[ServerSpec]:
    return [spec for spec in servers if spec.serves(scenario)]


def estimate(
    scenarios: list[Scenario], servers: list[ServerSpec], settings: Settings
) -> tuple[float, float]:
    """(seconds on a quiet machine, seconds at most when every round waits for quiet)."""
    quiet = waits = 0.0
    for scenario in scenarios:
        specs = _servers(scenario, servers)
        if not specs:
            continue
        if scenario.kind == "idle":
            each = IDLE_BASE_S + settings.idle_hold + settings.idle_count * IDLE_PER_CONNECTION_S
            quiet += len(specs) * each
            continue
        quiet += len(specs) * (START_S + settings.warmup)
        quiet += settings.rounds * len(specs) * (settings.duration + ROUND_OVERHEAD_S)
        waits += settings.rounds * settings.quiet_wait
    return quiet, quiet + waits


def describe(
    scenarios: list[Scenario], servers: list[ServerSpec], settings: Settings, short: bool = False
) -> str:
    quiet, busy = estimate(scenarios, servers, settings)
    head = (
        f"{len(scenarios)} scenarios, {settings.rounds} round(s) x {settings.duration:g} s after "
        f"{settings.warmup:g} s warm-up: about {quiet / 60:.0f} min on a quiet machine, up to "
        f"{busy / 60:.0f} min if every round waits {settings.quiet_wait:g} s for one"
    )
    if short:
        return head
    lines = [head, ""]
    for scenario in scenarios:
        names = [spec.name for spec in _servers(scenario, servers)]
        lines.append(f"  {scenario.name:<20} {', '.join(names) or '(no server serves it)'}")
    return "\n".join(lines)
