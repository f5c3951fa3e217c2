"""Two replicas on one database, both sweeping expired reservations in small batches, while clients
confirm, release and extend those reservations at the moment they expire. Every reservation must leave
ACTIVE exactly once, every answer must agree with the state it left behind, and the counters and the
ledger must agree with the reservations."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import duration_pb2

from inventory_svc.__main__ import SPEC
from shop.inventory.v1 import inventory_service_pb2 as pb
from shop.inventory.v1 import inventory_service_pb2_grpc as pb_grpc
from shop.type.v1 import line_item_pb2
from tests.identity import trusted_channel
from tests.integration.inventory.conftest import Store, create_product, invariant_violations
from tests.rpc_errors import failure_of

SKU = "HOT-1"
STOCK = 1000
RESERVATIONS = 120

ACTIVE = pb.RESERVATION_STATUS_ACTIVE
CONFIRMED = pb.RESERVATION_STATUS_CONFIRMED
RELEASED = pb.RESERVATION_STATUS_RELEASED
EXPIRED = pb.RESERVATION_STATUS_EXPIRED


@pytest.fixture
async def replicas(
    start_service,
) -> AsyncIterator[tuple[pb_grpc.InventoryServiceAsyncStub, pb_grpc.InventoryServiceAsyncStub]]:
    """Two inventory services on the test's database, each sweeping every 50 ms, 7 reservations a batch."""
    services = [
        await start_service(SPEC, RESERVATION_SWEEP_INTERVAL_SECONDS="0.05", RESERVATION_SWEEP_BATCH_SIZE="7")
        for _ in range(2)
    ]
    async with (
        trusted_channel(services[0].address) as channel_a,
        trusted_channel(services[1].address) as channel_b,
    ):
        yield pb_grpc.InventoryServiceStub(channel_a), pb_grpc.InventoryServiceStub(channel_b)


async def answer(call: Awaitable[Any]) -> tuple[str, Any]:
    """("OK", response) or (the error's reason, or its code when it has none, the failure)."""
    try:
        return "OK", await call
    except grpc.aio.AioRpcError as error:
        failure = failure_of(error)
        return failure.reason or failure.code.name, failure


def name(status: pb.ReservationStatus.ValueType) -> str:
    return pb.ReservationStatus.Name(status).removeprefix("RESERVATION_STATUS_")


async def product_figures(store: Store) -> tuple[int, int]:
    """Stock on hand and reserved, read from PostgreSQL (never from the product cache)."""
    async with store.transaction() as tx:
        product = (await tx.products([SKU]))[SKU]
    return product.stock_on_hand, product.reserved


async def sale_movements(database_url: str) -> list[tuple[str, str, int]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        cursor = await connection.execute(
            "SELECT request_key, sku, delta FROM inventory.stock_movements WHERE kind = 'sale' ORDER BY request_key"
        )
        return [tuple(row) for row in await cursor.fetchall()]


async def test_two_sweeping_replicas_and_clients_racing_the_expiry_settle_every_reservation_once(
    replicas, store, database_url
):
    replica_a, replica_b = replicas
    await create_product(replica_a, SKU, stock=STOCK)
    rng = random.Random(20240611)
    quantities = {f"co-{index:03d}": rng.randint(1, 3) for index in range(RESERVATIONS)}
    checkouts = list(quantities)

    reserving_since = time.monotonic()
    await asyncio.gather(
        *(
            (replica_a if index % 2 == 0 else replica_b).ReserveInventory(
                pb.ReserveInventoryRequest(
                    checkout_id=checkout_id,
                    items=[line_item_pb2.LineItem(sku=SKU, quantity=quantities[checkout_id])],
                    ttl=duration_pb2.Duration(seconds=1),
                )
            )
            for index, checkout_id in enumerate(checkouts)
        )
    )
    # Their TTLs run out about 1 s after `reserving_since`, spread over however long reserving took; the calls
    # below go out just before the first expiry and are still arriving while the rest expire and both
    # sweepers claim them.
    await asyncio.sleep(max(0.0, reserving_since + 0.95 - time.monotonic()))

    confirms, releases, extends = checkouts[0::3], checkouts[1::3], checkouts[2::3]
    jobs: list[tuple[str, str, Awaitable[Any]]] = []
    for checkout_id in confirms:
        jobs.append(
            (
                "confirm",
                checkout_id,
                replica_a.ConfirmReservation(
                    pb.ConfirmReservationRequest(checkout_id=checkout_id, order_id=f"order-{checkout_id}")
                ),
            )
        )
    for checkout_id in releases:
        jobs.append(
            (
                "release",
                checkout_id,
                replica_b.ReleaseReservation(
                    pb.ReleaseReservationRequest(checkout_id=checkout_id, reason="client_gave_up")
                ),
            )
        )
    for index, checkout_id in enumerate(extends):
        jobs.append(
            (
                "extend",
                checkout_id,
                (replica_a if index % 2 == 0 else replica_b).ExtendReservation(
                    pb.ExtendReservationRequest(checkout_id=checkout_id, ttl=duration_pb2.Duration(seconds=60))
                ),
            )
        )
    rng.shuffle(jobs)
    answers = await asyncio.gather(*(answer(call) for _, _, call in jobs))
    answered = {checkout_id: (kind, *result) for (kind, checkout_id, _), result in zip(jobs, answers, strict=True)}
    extended_in_time = {c for c, (kind, outcome, _) in answered.items() if kind == "extend" and outcome == "OK"}

    async def current() -> dict[str, pb.Reservation]:
        found = await asyncio.gather(
            *(
                (replica_a if index % 2 == 0 else replica_b).GetReservation(
                    pb.GetReservationRequest(checkout_id=checkout_id)
                )
                for index, checkout_id in enumerate(checkouts)
            )
        )
        return {response.reservation.checkout_id: response.reservation for response in found}

    for _ in range(50):
        final = await current()
        still_active = {c for c, reservation in final.items() if reservation.status == ACTIVE}
        if still_active <= extended_in_time:
            break
        await asyncio.sleep(0.1)

    problems: list[str] = []
    for checkout_id, (kind, outcome, response) in sorted(answered.items()):
        reservation = final[checkout_id]
        status = name(reservation.status)
        if kind == "confirm":
            if outcome == "OK":
                ok = reservation.status == CONFIRMED and response.reservation.status == CONFIRMED
                ok = ok and reservation.order_id == f"order-{checkout_id}"
            else:
                ok = outcome == "RESERVATION_EXPIRED" and response.code == grpc.StatusCode.FAILED_PRECONDITION
                ok = ok and reservation.status == EXPIRED
        elif kind == "release":
            ok = outcome == "OK" and response.reservation.status in (RELEASED, EXPIRED)
            ok = ok and reservation.status == response.reservation.status
        else:
            if outcome == "OK":
                ok = reservation.status == ACTIVE and response.reservation.status == ACTIVE
            else:
                ok = outcome == "RESERVATION_EXPIRED" and response.code == grpc.StatusCode.FAILED_PRECONDITION
                ok = ok and reservation.status == EXPIRED
        if reservation.status == EXPIRED:
            ok = ok and reservation.release_reason == "expired"
        if reservation.status == RELEASED:
            ok = ok and reservation.release_reason == "client_gave_up"
        if not ok:
            shown = (
                f"OK ({name(response.reservation.status)})"
                if outcome == "OK"
                else f"{outcome} ({response.code.name}: {response.message})"
            )
            problems.append(f"{checkout_id}: {kind} answered {shown}, now {status} ({reservation.release_reason!r})")
    assert problems == [], "\n".join(problems)

    by_status: dict[int, list[str]] = {}
    for checkout_id, reservation in final.items():
        by_status.setdefault(reservation.status, []).append(checkout_id)
    assert set(by_status.get(ACTIVE, [])) == extended_in_time
    stock_on_hand, reserved = await product_figures(store)
    sold_units = sum(quantities[c] for c in by_status.get(CONFIRMED, []))
    assert STOCK - stock_on_hand == sold_units
    assert reserved == sum(quantities[c] for c in by_status.get(ACTIVE, []))
    assert await invariant_violations(store) == []
    sales = await sale_movements(database_url)
    confirmed_lines = sorted(
        (checkout_id, line.sku, -line.quantity)
        for checkout_id in by_status.get(CONFIRMED, [])
        for line in final[checkout_id].items
    )
    assert len(sales) == len(confirmed_lines)
    assert sales == confirmed_lines
