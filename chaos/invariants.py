"""The invariant checker: reads every service's state (their schemas in the mesh's database and the
sandbox PSP's ledger) and says what breaks the system's promises, naming the checkouts involved.

The checks, each a `Violation.kind`:

- `stuck`: a saga still PLACING (not terminal) after recovery;
- `needs-operator`: a saga that ended FAILED (it could neither finish nor compensate);
- `stock`: per SKU, stock on hand differs from the sum of its stock movements, the units sold differ
  from the confirmed reservations' lines, or `reserved` differs from the active reservations' lines;
- `held-reservation`: an active reservation for a terminal checkout;
- `capture-vs-order`: the checkouts with a captured payment, with a confirmed order and COMPLETED
  differ (each set must equal the others);
- `duplicate-charge` / `duplicate-refund`: more than one captured authorization (or refund) at the PSP
  for one checkout;
- `unknown-charge`: a PSP capture no payment knows of; `held-funds`: an authorization still holding
  money at the PSP for a checkout that ended (or for no payment at all);
- `payment-unsettled`: a payment left pending/processing or with an unfinished PSP operation;
- `notification`: a confirmed order not notified exactly once (one OrderConfirmed in the inbox, one
  message sent).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

TERMINAL = ("completed", "failed", "cancelled", "expired")


@dataclass(frozen=True)
class Violation:
    kind: str
    detail: str
    checkout_ids: tuple[str, ...] = ()

    def __str__(self) -> str:
        named = f" [{', '.join(self.checkout_ids[:8])}{' …' if len(self.checkout_ids) > 8 else ''}]"
        return f"{self.kind}: {self.detail}{named if self.checkout_ids else ''}"


@dataclass
class Snapshot:
    """What the checker saw: checkout counts by status and the violations."""

    statuses: Counter[str] = field(default_factory=Counter)
    status_of: dict[str, str] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)


async def _rows(connection: psycopg.AsyncConnection[Any], query: str, *params: Any) -> list[dict[str, Any]]:
    async with connection.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(query, params)
        return list(await cursor.fetchall())


async def check(database_url: str, checkout_ids: Sequence[str] | None = None) -> Snapshot:
    """Every invariant over the whole mesh database; `checkout_ids` narrows the per-checkout counts only."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True, connect_timeout=5) as connection:
        # One snapshot of every schema: the services' writes are atomic per service, so a single
        # repeatable-read transaction sees one consistent state of each.
        await connection.set_autocommit(False)
        await connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            return await _check(connection, checkout_ids)
        finally:
            await connection.rollback()


async def _check(connection: psycopg.AsyncConnection[Any], checkout_ids: Sequence[str] | None) -> Snapshot:
    snapshot = Snapshot()
    problems = snapshot.violations
    checkouts = {
        r["checkout_id"]: r["status"]
        for r in await _rows(connection, "SELECT checkout_id, status FROM checkout.checkouts")
    }
    snapshot.status_of = checkouts
    wanted = checkouts if checkout_ids is None else {c: checkouts.get(c, "none") for c in checkout_ids}
    snapshot.statuses = Counter(wanted.values())

    def with_status(*statuses: str) -> list[str]:
        return sorted(c for c, s in checkouts.items() if s in statuses)

    if stuck := with_status("placing"):
        problems.append(Violation("stuck", f"{len(stuck)} saga(s) still PLACING after recovery", tuple(stuck)))
    if failed := with_status("failed"):
        problems.append(Violation("needs-operator", f"{len(failed)} saga(s) ended FAILED", tuple(failed)))

    problems += await _stock(connection)

    held = await _rows(
        connection,
        "SELECT r.checkout_id FROM inventory.reservations r JOIN checkout.checkouts c USING (checkout_id)"
        " WHERE r.status = 'active' AND c.status = ANY(%s) ORDER BY 1",
        list(TERMINAL),
    )
    if held:
        ids = tuple(r["checkout_id"] for r in held)
        problems.append(Violation("held-reservation", f"{len(ids)} active reservation(s) of ended checkouts", ids))

    captured = {
        r["checkout_id"]
        for r in await _rows(
            connection,
            "SELECT checkout_id FROM payment.payments WHERE status IN ('captured', 'partially_refunded', 'refunded')",
        )
    }
    confirmed = {
        r["checkout_id"]
        for r in await _rows(
            connection, "SELECT checkout_id FROM orders.orders WHERE status IN ('confirmed', 'shipped', 'delivered')"
        )
    }
    completed = set(with_status("completed"))
    for left, right, what in (
        (captured, confirmed, "captured payment without a confirmed order"),
        (confirmed, captured, "confirmed order without a captured payment"),
        (completed, confirmed, "COMPLETED checkout without a confirmed order"),
        (confirmed, completed, "confirmed order whose checkout is not COMPLETED"),
    ):
        if odd := sorted(left - right):
            problems.append(Violation("capture-vs-order", f"{len(odd)} {what}", tuple(odd)))

    problems += await _psp(connection, checkouts)

    unsettled = await _rows(
        connection,
        "SELECT checkout_id, status, pending_operation FROM payment.payments"
        " WHERE status IN ('pending', 'processing') OR pending_operation IS NOT NULL ORDER BY 1",
    )
    if unsettled:
        ids = tuple(r["checkout_id"] for r in unsettled)
        problems.append(Violation("payment-unsettled", f"{len(ids)} payment(s) with an unfinished PSP operation", ids))

    problems += await _notifications(connection)
    return snapshot


async def _stock(connection: psycopg.AsyncConnection[Any]) -> list[Violation]:
    problems = []
    ledger = {
        r["sku"]: (int(r["units"]), int(r["sold"]))
        for r in await _rows(
            connection,
            "SELECT sku, sum(delta) AS units,"
            " coalesce(-sum(delta) FILTER (WHERE kind = 'sale'), 0) AS sold"
            " FROM inventory.stock_movements GROUP BY sku",
        )
    }
    sold: dict[str, int] = defaultdict(int)
    reserved: dict[str, int] = defaultdict(int)
    sold_by: dict[str, list[str]] = defaultdict(list)
    for r in await _rows(
        connection,
        "SELECT r.checkout_id, r.status, l.sku, l.quantity FROM inventory.reservations r"
        " JOIN inventory.reservation_lines l USING (checkout_id) WHERE r.status IN ('confirmed', 'active')",
    ):
        if r["status"] == "confirmed":
            sold[r["sku"]] += r["quantity"]
            sold_by[r["sku"]].append(r["checkout_id"])
        else:
            reserved[r["sku"]] += r["quantity"]
    for r in await _rows(connection, "SELECT sku, stock_on_hand, reserved FROM inventory.products ORDER BY sku"):
        sku = r["sku"]
        units, sold_units = ledger.get(sku, (0, 0))
        if r["stock_on_hand"] != units:
            problems.append(Violation("stock", f"{sku}: stock on hand {r['stock_on_hand']} != movements {units}"))
        if sold_units != sold[sku]:
            problems.append(
                Violation(
                    "stock",
                    f"{sku}: {sold_units} unit(s) sold by movements != {sold[sku]} in confirmed reservations",
                    tuple(sold_by[sku]),
                )
            )
        if r["reserved"] != reserved[sku]:
            problems.append(
                Violation("stock", f"{sku}: reserved {r['reserved']} != {reserved[sku]} in active reservations")
            )
    return problems


async def _psp(connection: psycopg.AsyncConnection[Any], checkouts: Mapping[str, str]) -> list[Violation]:
    problems = []
    authorizations = await _rows(
        connection,
        "SELECT a.authorization_id, a.status, a.captured_minor, a.refunded_minor, p.checkout_id,"
        " (SELECT count(*) FROM psp_sandbox.refunds f WHERE f.authorization_id = a.authorization_id) AS refunds"
        " FROM psp_sandbox.authorizations a LEFT JOIN payment.payments p ON p.psp_reference = a.authorization_id",
    )
    captures: Counter[str] = Counter()
    refunds: Counter[str] = Counter()
    unknown, holds = [], []
    for a in authorizations:
        checkout_id = a["checkout_id"]
        if a["status"] == "captured":
            if checkout_id is None:
                unknown.append(a["authorization_id"])
            else:
                captures[checkout_id] += 1
                refunds[checkout_id] += int(a["refunds"])
        if a["status"] == "authorized" and (checkout_id is None or checkouts.get(checkout_id) in TERMINAL):
            holds.append(checkout_id or f"(no payment: {a['authorization_id']})")
    if doubles := sorted(c for c, n in captures.items() if n > 1):
        problems.append(
            Violation("duplicate-charge", f"{len(doubles)} checkout(s) captured more than once", tuple(doubles))
        )
    if doubles := sorted(c for c, n in refunds.items() if n > 1):
        problems.append(
            Violation("duplicate-refund", f"{len(doubles)} checkout(s) refunded more than once", tuple(doubles))
        )
    if unknown:
        problems.append(
            Violation("unknown-charge", f"{len(unknown)} PSP capture(s) no payment knows of", tuple(unknown))
        )
    if holds:
        problems.append(
            Violation("held-funds", f"{len(holds)} PSP authorization(s) still holding money", tuple(sorted(holds)))
        )
    return problems


async def _notifications(connection: psycopg.AsyncConnection[Any]) -> list[Violation]:
    rows = await _rows(
        connection,
        "SELECT o.checkout_id,"
        " (SELECT count(*) FROM notification.processed_events e"
        "   WHERE e.order_id = o.order_id AND e.event_type = 'OrderConfirmed') AS received,"
        " (SELECT count(*) FROM notification.notifications n JOIN notification.processed_events e USING (event_id)"
        "   WHERE n.order_id = o.order_id AND e.event_type = 'OrderConfirmed' AND n.status = 'sent') AS sent"
        " FROM orders.orders o WHERE o.status IN ('confirmed', 'shipped', 'delivered') ORDER BY 1",
    )
    missing = tuple(r["checkout_id"] for r in rows if r["received"] == 0 or r["sent"] == 0)
    doubled = tuple(r["checkout_id"] for r in rows if r["received"] > 1 or r["sent"] > 1)
    problems = []
    if missing:
        problems.append(Violation("notification", f"{len(missing)} confirmed order(s) not notified", missing))
    if doubled:
        problems.append(
            Violation("notification", f"{len(doubled)} confirmed order(s) notified more than once", doubled)
        )
    return problems
