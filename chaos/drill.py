"""One drill: the mesh up, the load running, each fault injected, held, healed, then the invariants.

For each fault, in order:

1. the load runs `steady_seconds`; the fault is injected and held `fault.hold_seconds` (the load runs
   on: the attempts started meanwhile are the checkouts under fault);
2. the fault is healed (a killed process restarted, a frozen one woken, the PSP's switch cleared); the
   recovery time is from then until the first checkout started after it COMPLETED;
3. the load runs `steady_seconds` more, then pauses and drains; the checker then reads every service's
   state until every invariant holds or `settle_seconds` pass (what is left then is a violation of
   this phase; a violation an earlier phase reported is not counted again, but stays in the final check).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from chaos.cluster import Cluster
from chaos.faults import Fault
from chaos.invariants import Snapshot, Violation, check
from chaos.load import Attempt, Load, seed_catalogue

SETTLE_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class DrillSettings:
    clients: int = 4
    max_attempts: int = 3000
    steady_seconds: float = 3.0
    recovery_window_seconds: float = 60.0
    settle_seconds: float = 60.0


@dataclass
class PhaseResult:
    fault: Fault
    attempts: list[Attempt]
    under_fault: int
    #: Heal → first completed checkout started after the heal; None when none completed in the window.
    recovery_seconds: float | None
    #: Load drained → every invariant held; None when they never did within the settle window.
    settle_seconds: float | None
    snapshot: Snapshot
    heal_error: str = ""

    @property
    def violations(self) -> list[Violation]:
        found = list(self.snapshot.violations)
        if self.recovery_seconds is None:
            found.append(Violation("no-recovery", "no checkout completed after the fault was healed"))
        if self.heal_error:
            found.append(Violation("heal", self.heal_error))
        return found

    def count(self, *statuses: str) -> int:
        return sum(1 for a in self.attempts if self.snapshot.status_of.get(a.checkout_id, "none") in statuses)


@dataclass
class DrillResult:
    phases: list[PhaseResult] = field(default_factory=list)
    final: Snapshot = field(default_factory=Snapshot)
    attempts: list[Attempt] = field(default_factory=list)
    started_at: float = 0.0
    ended_at: float = 0.0

    @property
    def violations(self) -> list[Violation]:
        """Each phase's, then the final check's that no phase reported."""
        found = [v for phase in self.phases for v in phase.violations]
        return found + [v for v in self.final.violations if v not in found]


async def run_drill(
    cluster: Cluster, faults: Sequence[Fault], settings: DrillSettings, say: Callable[[str], None]
) -> DrillResult:
    result = DrillResult(started_at=time.monotonic())
    known: set[Violation] = set()  # reported by an earlier phase
    await seed_catalogue(cluster.address("inventory_svc"))
    load = Load(cluster.address("gateway"), cluster.address("cart_svc"), settings.clients, settings.max_attempts)
    runner = asyncio.create_task(load.run())
    try:
        load.resume()
        await asyncio.sleep(settings.steady_seconds)
        for number, fault in enumerate(faults, 1):
            prefix = f"[{number}/{len(faults)}]"

            def numbered(text: str, prefix: str = prefix) -> None:
                say(f"{prefix} {text}")

            phase = await _phase(cluster, load, fault, settings, numbered, known)
            result.phases.append(phase)
        await load.pause()
        result.final = await check(cluster.database_url)
        result.attempts = list(load.attempts)
    finally:
        await load.close()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    result.ended_at = time.monotonic()
    return result


async def _phase(
    cluster: Cluster,
    load: Load,
    fault: Fault,
    settings: DrillSettings,
    say: Callable[[str], None],
    known: set[Violation],
) -> PhaseResult:
    first = len(load.attempts)
    load.phase = fault.name
    load.resume()
    await asyncio.sleep(settings.steady_seconds)
    say(f"{fault.name}: injecting")
    injected = time.monotonic()
    await fault.inject(cluster)
    await asyncio.sleep(fault.hold_seconds)
    healing = time.monotonic()
    heal_error = seen = ""
    try:
        seen = await fault.heal(cluster)
    except Exception as error:  # the drill goes on; the phase reports it
        heal_error = f"healing failed: {error}"
    healed = time.monotonic()
    # Under fault: every attempt in flight at some moment between the injection and the healing.
    under_fault = sum(1 for a in load.attempts[first:] if a.started < healing and (not a.ended or a.ended >= injected))
    say(
        f"{fault.name}: healed after {fault.hold_seconds:g} s ({healed - healing:.1f} s to heal); "
        f"{under_fault} checkouts in flight under fault" + (f"; {seen}" if seen else "")
    )
    recovery = None
    while time.monotonic() - healing < settings.recovery_window_seconds:
        done = load.completed_after(healing)
        if done is not None:
            recovery = done.ended - healing
            break
        if load.exhausted:
            break
        await asyncio.sleep(0.2)
    say(
        f"{fault.name}: "
        + (
            f"a new checkout completed {recovery:.1f} s after healing"
            if recovery is not None
            else "no checkout completed"
        )
    )
    await asyncio.sleep(settings.steady_seconds)
    await load.pause()
    drained = time.monotonic()
    attempts = load.attempts[first:]
    ids = [a.checkout_id for a in attempts if a.checkout_id]
    settle = None
    waiting_for = ""
    while True:
        snapshot = await _check_or_report(cluster)
        snapshot.violations = [v for v in snapshot.violations if v not in known]
        if not snapshot.violations:
            settle = time.monotonic() - drained
            break
        kinds = ", ".join(sorted({v.kind for v in snapshot.violations}))
        if kinds != waiting_for:
            say(f"{fault.name}: settling, waiting for: {kinds}")
            waiting_for = kinds
        if time.monotonic() - drained > settings.settle_seconds:
            break
        await asyncio.sleep(SETTLE_POLL_SECONDS)
    snapshot.statuses.clear()
    snapshot.statuses.update(snapshot.status_of.get(i, "none") for i in ids)
    phase = PhaseResult(fault, attempts, under_fault, recovery, settle, snapshot, heal_error)
    known.update(snapshot.violations)
    say(
        f"{fault.name}: {len(attempts)} attempts, {phase.count('completed')} completed; "
        + (
            f"invariants hold ({settle:.1f} s to settle)"
            if settle is not None
            else f"{len(phase.violations)} violation(s)"
        )
    )
    for violation in phase.violations:
        say(f"    VIOLATION {violation}")
    return phase


async def _check_or_report(cluster: Cluster) -> Snapshot:
    try:
        return await check(cluster.database_url)
    except Exception as error:  # the database itself unreachable is a finding, not a crash of the drill
        return Snapshot(violations=[Violation("checker", f"could not read the mesh's state: {error}")])
