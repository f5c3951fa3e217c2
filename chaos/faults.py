"""The faults, in the order a drill injects them. Each has an injection, a time it holds, and a healing.

Processes: the gateway (its saga runner, recovery worker and checkout-event relay run inside it), cart
(cart sweeper), inventory (reservation sweeper), payment (PSP reconciler), order (outbox relay and
cancellation worker), shipping, notification (order and checkout event consumers, retry worker) and
the sandbox PSP: a background worker is killed with the service it runs in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from chaos.cluster import SERVICE_PACKAGES, Cluster

Step = Callable[[Cluster], Awaitable[None]]
#: A healing may say what it saw (e.g. how many events the killed consumer held), or "".
Heal = Callable[[Cluster], Awaitable[str]]

#: What runs inside each process, for the report.
INSIDE = {
    "gateway": "saga runner, recovery worker, checkout-event relay",
    "cart_svc": "cart sweeper",
    "inventory_svc": "reservation sweeper",
    "payment_svc": "PSP reconciler",
    "order_svc": "outbox relay, cancellation worker",
    "shipping_svc": "",
    "notification_svc": "event consumers, retry worker",
    "psp_sandbox": "card network ledger",
}


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Step
    heal: Heal
    #: How long the fault lasts before it is healed (the load runs throughout).
    hold_seconds: float


def sigkill(process: str, hold_seconds: float = 1.5) -> Fault:
    """SIGKILL the process; after `hold_seconds` dead, start it again."""

    async def inject(cluster: Cluster) -> None:
        await cluster.kill(process)

    async def heal(cluster: Cluster) -> str:
        took = await cluster.restart(process)
        return f"{process} answering {took:.1f} s after its restart"

    return Fault(f"SIGKILL {process}", inject, heal, hold_seconds)


def server_crash(server: str, hold_seconds: float = 2.0) -> Fault:
    """PostgreSQL or Redis killed with SIGKILL (the whole process group) and restarted on its port."""
    fault = sigkill(server, hold_seconds)
    return Fault(f"restart {server} (crash)", fault.inject, fault.heal, hold_seconds)


def consumer_mid_batch(hold_seconds: float = 3.0) -> Fault:
    """The notification consumer frozen while events pile up, woken, then SIGKILLed with a batch in hand."""

    async def inject(cluster: Cluster) -> None:
        cluster.pause("notification_svc")

    async def heal(cluster: Cluster) -> str:
        cluster.resume("notification_svc")
        # While it was frozen, the group delivered it the first new events (they are in its socket); 10 ms
        # after waking it is working through them and the backlog: kill it then.
        await asyncio.sleep(0.01)
        held = await cluster.unacknowledged_events("notification")
        await cluster.kill("notification_svc")
        await cluster.restart("notification_svc")
        return f"killed holding {held} delivered, unacknowledged event(s)"

    return Fault("kill notification consumer mid-batch", inject, heal, hold_seconds)


def psp(mode: str, hold_seconds: float = 5.0) -> Fault:
    """The sandbox PSP slow (1.5 s per call), failing (half the calls 500) or lossy (half processed, then dropped)."""
    modes: dict[str, dict[str, int | float]] = {
        "slow": {"delay_ms": 1500},
        "5xx": {"error_rate": 0.5},
        "lossy": {"drop_rate": 0.5},
    }
    settings = modes[mode]

    async def inject(cluster: Cluster) -> None:
        await cluster.psp_faults(**settings)

    async def heal(cluster: Cluster) -> str:
        await cluster.psp_faults()
        return ""

    return Fault(f"PSP {mode}", inject, heal, hold_seconds)


def partition(process: str, hold_seconds: float = 6.0) -> Fault:
    """SIGSTOP: the process keeps its sockets but answers nothing, so callers meet deadlines, not errors."""

    async def inject(cluster: Cluster) -> None:
        cluster.pause(process)

    async def heal(cluster: Cluster) -> str:
        cluster.resume(process)
        return ""

    return Fault(f"partition {process}", inject, heal, hold_seconds)


def full_drill() -> list[Fault]:
    return [
        *(sigkill(process) for process in (*SERVICE_PACKAGES, "psp_sandbox")),
        server_crash("postgresql"),
        server_crash("redis"),
        consumer_mid_batch(),
        psp("slow"),
        psp("5xx"),
        psp("lossy"),
        partition("payment_svc"),
        partition("inventory_svc"),
    ]


def short_drill() -> list[Fault]:
    return [
        sigkill("gateway"),
        server_crash("postgresql"),
        consumer_mid_batch(hold_seconds=2.0),
        psp("lossy", hold_seconds=4.0),
        partition("payment_svc", hold_seconds=4.0),
    ]
