"""No deadlocks under hot-SKU load: PostgreSQL's own deadlock counter must not move.

The service retries a transaction PostgreSQL aborts as a deadlock victim, so clients see success either
way; what a deadlock costs is `deadlock_timeout` (1 s by default) of every transaction in the cycle, and
p99 with it. These tests therefore read `pg_stat_database.deadlocks` for the test's own database before
and after concurrent mixes of ReserveInventory, ConfirmReservation, ReturnStock, ReleaseReservation and
expiry, and require it unchanged, besides the inventory invariants and the expected stock figures.

The mixes are the ones that found a real cycle: while confirms or returns held KEY SHARE locks on a hot
product row (from their stock movements' foreign key) and queued for that row, old versions of the row
kept a live multixact, and two concurrent reserve statements could deadlock on the heavyweight tuple
lock of such an old version (one waiting for it while holding the newest version, the other holding it
while waiting for the first). Product rows must be locked before anything that references them is
written.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import psycopg
from google.protobuf import duration_pb2

from inventory_svc.__main__ import SPEC
from shop.inventory.v1 import inventory_service_pb2 as pb
from shop.inventory.v1 import inventory_service_pb2_grpc as pb_grpc
from shop.type.v1 import line_item_pb2
from tests.identity import trusted_channel
from tests.integration.inventory.conftest import create_product, invariant_violations

#: Clients running the mix under test, and clients that meanwhile only reserve (fresh checkouts, hot SKUs):
#: 16 at once in all. The extra reservers make the deadlock far likelier on code that has it.
CLIENTS = 12
RESERVERS = 4
STOCK = 100_000

#: One client's loop body: (stub, client index, iteration) -> None; any RPC error fails the test.
Step = Callable[["pb_grpc.InventoryServiceAsyncStub", int, int], Awaitable[None]]


def _items(*skus_and_quantities: tuple[str, int]) -> list[line_item_pb2.LineItem]:
    return [line_item_pb2.LineItem(sku=sku, quantity=quantity) for sku, quantity in skus_and_quantities]


async def _scalar(database_url: str, query: str, *params: object) -> object:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        cursor = await connection.execute(query, params)
        row = await cursor.fetchone()
        assert row is not None
        return row[0]


async def _deadlocks(database_url: str) -> int:
    value = await _scalar(database_url, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
    assert isinstance(value, int)
    return value


async def _other_backends(database_url: str) -> set[int]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        cursor = await connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return {row[0] for row in await cursor.fetchall()}


async def _figures(database_url: str, sku: str) -> tuple[int, int]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        cursor = await connection.execute(
            "SELECT stock_on_hand, reserved FROM inventory.products WHERE sku = %s", (sku,)
        )
        row = await cursor.fetchone()
        assert row is not None, sku
        return row[0], row[1]


async def _run_mix(
    start_service,
    database_url: str,
    skus: list[str],
    iterations: int,
    step: Step,
    reserve_lines: Callable[[int], list[line_item_pb2.LineItem]],
    *,
    settle: Callable[[int], Awaitable[None]] | None = None,
) -> tuple[int, int]:
    """Starts an inventory service and stocks `skus`; runs `step` `iterations` times in each of CLIENTS
    concurrent clients while RESERVERS more clients keep reserving `reserve_lines(n)` under new checkouts;
    stops the service. Returns how many deadlocks PostgreSQL counted in this test's database meanwhile,
    and how many reservations the reservers made (they stay active)."""
    before = await _deadlocks(database_url)
    already_connected = await _other_backends(database_url)
    service = await start_service(SPEC, RESERVATION_SWEEP_INTERVAL_SECONDS="0.1")
    reserved = 0
    async with trusted_channel(service.address) as channel:
        inventory = pb_grpc.InventoryServiceStub(channel)
        for sku in skus:
            await create_product(inventory, sku, stock=STOCK)
        mix_done = asyncio.Event()

        async def client(index: int) -> None:
            for iteration in range(iterations):
                await step(inventory, index, iteration)

        async def reserver(index: int) -> None:
            nonlocal reserved
            sequence = 0
            while not mix_done.is_set():
                await inventory.ReserveInventory(
                    pb.ReserveInventoryRequest(checkout_id=f"bg-{index}-{sequence}", items=reserve_lines(index))
                )
                reserved += 1
                sequence += 1

        async def mix() -> None:
            try:
                await asyncio.gather(*(client(index) for index in range(CLIENTS)))
            finally:
                mix_done.set()

        await asyncio.gather(mix(), *(reserver(index) for index in range(RESERVERS)))
        if settle is not None:
            await settle(reserved)
    # A backend adds its deadlocks to pg_stat_database at most once a second while busy, and always when
    # it exits: stop the service, wait for its connections to end, then read the counter.
    await service.stop()
    deadline = time.monotonic() + 10
    while (await _other_backends(database_url)) - already_connected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    return await _deadlocks(database_url) - before, reserved


async def test_reserve_then_confirm_on_one_hot_sku_never_deadlocks(start_service, database_url, store):
    iterations = 40

    async def reserve_then_confirm(inventory: pb_grpc.InventoryServiceAsyncStub, client: int, iteration: int) -> None:
        checkout_id = f"hot-{client}-{iteration}"
        await inventory.ReserveInventory(
            pb.ReserveInventoryRequest(checkout_id=checkout_id, items=_items(("HOT-1", 1)))
        )
        await inventory.ConfirmReservation(
            pb.ConfirmReservationRequest(checkout_id=checkout_id, order_id=f"order-{checkout_id}")
        )

    deadlocks, held = await _run_mix(
        start_service, database_url, ["HOT-1"], iterations, reserve_then_confirm, lambda _: _items(("HOT-1", 1))
    )

    assert deadlocks == 0, f"PostgreSQL counted {deadlocks} deadlocks during the reserve+confirm mix"
    assert await _figures(database_url, "HOT-1") == (STOCK - CLIENTS * iterations, held)
    assert await invariant_violations(store) == []


async def test_multi_line_reservations_in_opposite_orders_then_confirm_never_deadlock(
    start_service, database_url, store
):
    skus = ["MIX-A", "MIX-B", "MIX-C"]
    iterations = 30

    def in_order(client: int) -> list[str]:
        return skus if client % 2 else list(reversed(skus))

    async def reserve_then_confirm(inventory: pb_grpc.InventoryServiceAsyncStub, client: int, iteration: int) -> None:
        checkout_id = f"mix-{client}-{iteration}"
        order = in_order(client)
        if iteration % 3 == 2:  # two lines: the outer SKUs only
            order = [order[0], order[2]]
        await inventory.ReserveInventory(
            pb.ReserveInventoryRequest(checkout_id=checkout_id, items=_items(*((sku, 1) for sku in order)))
        )
        await inventory.ConfirmReservation(
            pb.ConfirmReservationRequest(checkout_id=checkout_id, order_id=f"order-{checkout_id}")
        )

    deadlocks, held = await _run_mix(
        start_service,
        database_url,
        skus,
        iterations,
        reserve_then_confirm,
        lambda client: _items(*((sku, 1) for sku in in_order(client))),
    )

    assert deadlocks == 0, f"PostgreSQL counted {deadlocks} deadlocks during the multi-line reserve+confirm mix"
    sold = CLIENTS * iterations
    two_line = CLIENTS * (iterations // 3)  # iterations 2, 5, 8, ... leave MIX-B out
    assert await _figures(database_url, "MIX-A") == (STOCK - sold, held)
    assert await _figures(database_url, "MIX-B") == (STOCK - sold + two_line, held)
    assert await _figures(database_url, "MIX-C") == (STOCK - sold, held)
    assert await invariant_violations(store) == []


async def test_reserve_confirm_return_mix_never_deadlocks(start_service, database_url, store):
    iterations = 20

    def lines_of(client: int) -> list[tuple[str, int]]:
        """Even clients buy the hot SKU alone, odd ones with a second SKU, in either order."""
        if client % 2 == 0:
            return [("HOT-R", 1)]
        return [("HOT-R", 1), ("SIDE-R", 1)] if client % 4 == 1 else [("SIDE-R", 1), ("HOT-R", 1)]

    async def reserve_confirm_return(inventory: pb_grpc.InventoryServiceAsyncStub, client: int, iteration: int) -> None:
        checkout_id = f"ret-{client}-{iteration}"
        order_id = f"order-{checkout_id}"
        lines = _items(*lines_of(client))
        await inventory.ReserveInventory(pb.ReserveInventoryRequest(checkout_id=checkout_id, items=lines))
        await inventory.ConfirmReservation(pb.ConfirmReservationRequest(checkout_id=checkout_id, order_id=order_id))
        await inventory.ReturnStock(pb.ReturnStockRequest(order_id=order_id, items=lines, reason="returned"))

    deadlocks, held = await _run_mix(
        start_service,
        database_url,
        ["HOT-R", "SIDE-R"],
        iterations,
        reserve_confirm_return,
        lambda _: _items(("HOT-R", 1)),
    )

    assert deadlocks == 0, f"PostgreSQL counted {deadlocks} deadlocks during the reserve+confirm+return mix"
    assert await _figures(database_url, "HOT-R") == (STOCK, held)
    assert await _figures(database_url, "SIDE-R") == (STOCK, 0)
    assert await invariant_violations(store) == []


async def test_confirm_release_return_and_expiry_mix_never_deadlocks(start_service, database_url, store):
    """Every way a reservation ends, at once on one hot SKU: confirmed, confirmed then returned,
    released, and left to expire for the sweeper (1 s TTL, sweeping every 0.1 s)."""
    iterations = 24
    one_second = duration_pb2.Duration(seconds=1)

    async def any_ending(inventory: pb_grpc.InventoryServiceAsyncStub, client: int, iteration: int) -> None:
        checkout_id = f"end-{client}-{iteration}"
        order_id = f"order-{checkout_id}"
        ending = (client + iteration) % 4
        request = pb.ReserveInventoryRequest(checkout_id=checkout_id, items=_items(("HOT-E", 1)))
        if ending == 3:
            request.ttl.CopyFrom(one_second)
        await inventory.ReserveInventory(request)
        if ending in (0, 1):
            await inventory.ConfirmReservation(pb.ConfirmReservationRequest(checkout_id=checkout_id, order_id=order_id))
        if ending == 1:
            await inventory.ReturnStock(
                pb.ReturnStockRequest(order_id=order_id, items=_items(("HOT-E", 1)), reason="returned")
            )
        if ending == 2:
            await inventory.ReleaseReservation(
                pb.ReleaseReservationRequest(checkout_id=checkout_id, reason="abandoned")
            )

    async def until_expired(held: int) -> None:
        """Waits until only the reservers' reservations (15-minute TTL) are still held."""
        deadline = time.monotonic() + 10
        while (await _figures(database_url, "HOT-E"))[1] > held and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    deadlocks, held = await _run_mix(
        start_service,
        database_url,
        ["HOT-E"],
        iterations,
        any_ending,
        lambda _: _items(("HOT-E", 1)),
        settle=until_expired,
    )

    assert deadlocks == 0, f"PostgreSQL counted {deadlocks} deadlocks during the confirm/release/return/expiry mix"
    sold_for_good = CLIENTS * iterations // 4  # ending 0; ending 1 came back, 2 and 3 never left
    assert await _figures(database_url, "HOT-E") == (STOCK - sold_for_good, held)
    assert await invariant_violations(store) == []
