"""The fault drill's invariant checker (chaos.invariants) over a real mesh's state: quiet after a clean
checkout, and naming the checkout when its state is broken behind the services' backs."""

from __future__ import annotations

import asyncio

import psycopg

from chaos.invariants import Snapshot, check
from shop.gateway.v1 import gateway_service_pb2 as pb

from .conftest import Shop


async def _settled(database_url: str, timeout: float = 30) -> Snapshot:
    """The checker's snapshot once it is clean (the confirmation mail goes out asynchronously)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        snapshot = await check(database_url)
        if not snapshot.violations or loop.time() > end:
            return snapshot
        await asyncio.sleep(0.2)


async def test_the_checker_is_quiet_after_a_clean_checkout_and_names_the_checkout_it_finds_broken(
    gateway: Shop,
) -> None:
    await gateway.product("MUG", 10, price_minor=1999)
    checkout_id = await gateway.quoted_checkout("alice", {"MUG": 2})
    placed = (await gateway.place("alice", checkout_id)).checkout
    assert placed.status == pb.CHECKOUT_STATUS_COMPLETED

    clean = await _settled(gateway.database_url)
    assert clean.violations == []
    assert clean.status_of[checkout_id] == "completed"

    async with await psycopg.AsyncConnection.connect(gateway.database_url, autocommit=True) as db:
        # A saga back in PLACING, a confirmation mail lost, a stock unit that appeared from nowhere.
        await db.execute(
            "UPDATE checkout.checkouts SET status = 'placing', ended_at = NULL WHERE checkout_id = %s", (checkout_id,)
        )
        await db.execute("DELETE FROM notification.notifications WHERE order_id = %s", (placed.order_id,))
        await db.execute("UPDATE inventory.products SET stock_on_hand = stock_on_hand + 1 WHERE sku = 'MUG'")
        try:
            broken = await check(gateway.database_url)
        finally:
            await db.execute(
                "UPDATE checkout.checkouts SET status = 'completed', ended_at = now() WHERE checkout_id = %s",
                (checkout_id,),
            )
            await db.execute("UPDATE inventory.products SET stock_on_hand = stock_on_hand - 1 WHERE sku = 'MUG'")

    kinds = {violation.kind: violation for violation in broken.violations}
    assert set(kinds) == {"stuck", "capture-vs-order", "notification", "stock"}, broken.violations
    assert kinds["stuck"].checkout_ids == (checkout_id,)
    assert kinds["capture-vs-order"].checkout_ids == (checkout_id,)
    assert kinds["notification"].checkout_ids == (checkout_id,)
    assert "MUG" in kinds["stock"].detail
