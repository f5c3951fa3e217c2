"""Concurrent reservations share reserve statements (inventory_svc.reserve_batcher), and each is still
decided on its own: all or nothing, never past the stock, replays and release markers refused."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import ClassVar

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from inventory_svc.domain.model import Reservation, ReservationRequest
from inventory_svc.repository import InventoryStatements
from inventory_svc.reserve_batcher import BATCH_SIZE_ATTRIBUTE, ReserveBatcher
from service_runtime import telemetry
from service_runtime.database import Database
from service_runtime.sql import UnitOfWork
from service_runtime.values import LineItem
from shop.inventory.v1 import inventory_service_pb2 as pb
from shop.type.v1 import line_item_pb2
from tests.integration.inventory.conftest import create_product, invariant_violations, stock_figures
from tests.rpc_errors import failure_of


class CountingStatements(InventoryStatements):
    """The service's own statements, remembering the size of every reserve batch they ran."""

    batches: ClassVar[list[int]] = []

    async def reserve_all_or_nothing(self, requests: Sequence[ReservationRequest]) -> list[Reservation | None]:
        type(self).batches.append(len(requests))
        return await super().reserve_all_or_nothing(requests)


def request(checkout_id: str, *lines: tuple[str, int]) -> ReservationRequest:
    return ReservationRequest(checkout_id, tuple(sorted(LineItem(sku, quantity) for sku, quantity in lines)), 900.0)


@pytest.fixture
async def counting_work(database_url: str) -> AsyncIterator[UnitOfWork[CountingStatements]]:
    database = Database(
        database_url, min_size=1, max_size=2, statement_timeout_ms=10_000, application_name="inventory-tests"
    )
    await database.open()
    try:
        yield UnitOfWork(database, CountingStatements)
    finally:
        await database.close()


async def test_requests_waiting_for_a_running_statement_share_the_next_and_each_is_decided_alone(
    inventory, store, counting_work
):
    await create_product(inventory, "BATCH-A", stock=10)
    await create_product(inventory, "BATCH-B", stock=10)
    await create_product(inventory, "GONE", stock=10)
    await inventory.DiscontinueProduct(pb.DiscontinueProductRequest(sku="GONE"))
    await inventory.ReserveInventory(
        pb.ReserveInventoryRequest(checkout_id="taken", items=[line_item_pb2.LineItem(sku="BATCH-A", quantity=1)])
    )
    await inventory.ReleaseReservation(pb.ReleaseReservationRequest(checkout_id="released-first", reason="test"))
    CountingStatements.batches = []
    batcher = ReserveBatcher(counting_work, max_batch_size=64, max_in_flight=1)

    requests = [
        request("first", ("BATCH-A", 1)),  # sent alone at once; the others wait for it and go together
        *[request(f"one-{index}", ("BATCH-A", 1)) for index in range(10)],  # 8 units left after "first"
        request("both", ("BATCH-A", 1), ("BATCH-B", 2)),
        request("only-b", ("BATCH-B", 3)),
        request("unknown", ("BATCH-B", 1), ("NO-SUCH-SKU", 1)),
        request("discontinued", ("GONE", 1)),
        request("taken", ("BATCH-B", 1)),  # fits, but the checkout has its reservation
        request("released-first", ("BATCH-B", 1)),  # fits, but the checkout was released first
        request("twin", ("BATCH-B", 1)),
        request("twin", ("BATCH-B", 1)),  # the same checkout again: left for the next batch
    ]
    made = await asyncio.gather(*(batcher.reserve(r) for r in requests))

    outcome: dict[str, list[bool]] = {}
    for r, reservation in zip(requests, made, strict=True):
        outcome.setdefault(r.checkout_id, []).append(reservation is not None)
        if reservation is not None:
            assert reservation.checkout_id == r.checkout_id and reservation.lines == r.lines
    assert CountingStatements.batches == [1, len(requests) - 2, 1]
    assert outcome["first"] == [True]
    assert [outcome[f"one-{index}"] for index in range(10)] == [[True]] * 8 + [[False]] * 2
    assert outcome["both"] == [False]  # BATCH-A had no unit left for it; BATCH-B is not taken either
    assert outcome["only-b"] == [True]
    assert outcome["unknown"] == outcome["discontinued"] == [False]
    assert outcome["taken"] == outcome["released-first"] == [False]
    assert outcome["twin"] == [True, False]
    a, b = await stock_figures(store, "BATCH-A"), await stock_figures(store, "BATCH-B")
    assert (a.reserved, b.reserved) == (10, 4)
    assert await invariant_violations(store) == []


async def test_a_request_a_batch_refused_behind_a_larger_one_is_made_when_it_fits(inventory, store):
    """Within a batch a refused request still counts against the ones after it; the use case retries
    those alone, so whatever the arrival order, a request is refused only when it does not fit."""
    rng = random.Random(11)
    for round_number in range(6):
        sku = f"NEAR-OUT-{round_number}"
        await create_product(inventory, sku, stock=6)
        quantities = [rng.randint(1, 4) for _ in range(12)]

        async def reserve(index: int, quantity: int, sku: str = sku) -> int:
            try:
                await inventory.ReserveInventory(
                    pb.ReserveInventoryRequest(
                        checkout_id=f"{sku}-{index}", items=[line_item_pb2.LineItem(sku=sku, quantity=quantity)]
                    )
                )
                return quantity
            except grpc.aio.AioRpcError as error:
                assert failure_of(error).reason == "INSUFFICIENT_STOCK", failure_of(error)
                return -quantity

        outcomes = await asyncio.gather(*(reserve(i, q) for i, q in enumerate(quantities)))

        product = await stock_figures(store, sku)
        assert product.reserved == sum(q for q in outcomes if q > 0) <= 6
        # Nothing is given back during the test, so what was short then is short now.
        assert all(-q > product.available for q in outcomes if q < 0), (quantities, outcomes, product)
    assert await invariant_violations(store) == []


async def test_concurrent_duplicates_of_one_reservation_make_it_once_and_replay_it(inventory, store):
    await create_product(inventory, "DUP-SKU", stock=100)
    item = [line_item_pb2.LineItem(sku="DUP-SKU", quantity=2)]

    responses = await asyncio.gather(
        *(inventory.ReserveInventory(pb.ReserveInventoryRequest(checkout_id="dup", items=item)) for _ in range(8))
    )

    assert sorted(response.replayed for response in responses) == [False] + [True] * 7
    assert (await stock_figures(store, "DUP-SKU")).reserved == 2
    assert await invariant_violations(store) == []


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span finished from now on until the test ends (as the observability tests collect them)."""
    provider = telemetry.configure_tracing("tests")
    assert trace.get_tracer_provider() is provider
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


async def test_a_batch_statement_is_one_span_under_its_first_request_and_linked_both_ways_with_the_others(
    inventory, counting_work, spans
):
    await create_product(inventory, "TRACED", stock=10)
    batcher = ReserveBatcher(counting_work, max_batch_size=64, max_in_flight=1)

    async def traced(name: str) -> None:
        with telemetry.span(name):
            assert await batcher.reserve(request(name, ("TRACED", 1))) is not None

    await asyncio.gather(*(traced(name) for name in ("alone", "leading", "following")))

    finished = {span.name: span for span in spans.get_finished_spans() if span.name != "reserve batch"}
    [batch] = [span for span in spans.get_finished_spans() if span.name == "reserve batch"]
    alone, leading, following = (finished[name] for name in ("alone", "leading", "following"))
    assert batch.attributes is not None and batch.attributes[BATCH_SIZE_ATTRIBUTE] == 2
    assert batch.parent is not None and batch.parent.span_id == leading.context.span_id
    assert [link.context.span_id for link in batch.links] == [following.context.span_id]
    assert [link.context.span_id for link in following.links] == [batch.context.span_id]
    assert list(leading.links) == list(alone.links) == []

    def statements_under(parent: ReadableSpan) -> list[str]:
        assert parent.context is not None
        parent_id = parent.context.span_id
        return [
            span.name
            for span in spans.get_finished_spans()
            if span.parent is not None
            and span.parent.span_id == parent_id
            and (span.attributes or {}).get("db.system") == "postgresql"
        ]

    assert len(statements_under(batch)) == 1  # the batch's statement, in the batch span
    assert len(statements_under(alone)) == 1  # a batch of one: in its request's own trace
    assert statements_under(leading) == statements_under(following) == []
