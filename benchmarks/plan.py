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

# Seconds, fitted to a run of everything at 1 x 2 s (2026-11-30, 17.6 min: 133 server turns
# in 16 throughput scenarios in 9.6 min, 18 idle runs in 8.0 min): starting a server and
# checking its answer; the bookkeeping around one round of one server (the /proc samples,
# wrk's start and report); an idle run's fixed part (start, the opening deadline some
# servers reach, close) and its cost per connection opened.
START_S = 0.4
ROUND_OVERHEAD_S = 0.3
IDLE_BASE_S = 11.7
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
