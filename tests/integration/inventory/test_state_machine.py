"""Stateful property test: random reserve/confirm/release/expire/adjust/return sequences over gRPC.

Hypothesis drives a model of what stock, reservations and the audit trail must be; after every step
the service's figures must match the model and the database invariants must hold
(stock ≥ reserved ≥ 0, reserved = sum of active lines, stock = sum of the audit trail).

Hypothesis runs synchronously, so the machine runs in a worker thread and submits each gRPC call to
the test's event loop, where the in-process service is serving.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import psycopg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from shop.inventory.v1 import inventory_service_pb2 as pb
from shop.inventory.v1 import inventory_service_pb2_grpc as pb_grpc
from shop.type.v1 import line_item_pb2, money_pb2
from tests.integration.inventory.conftest import Store, invariant_violations
from tests.rpc_errors import failure_of

SKUS = ("S-0", "S-1", "S-2")
_runs = itertools.count()


def build_machine(
    loop: asyncio.AbstractEventLoop, inventory: pb_grpc.InventoryServiceAsyncStub, store: Store, database_url: str
) -> type[RuleBasedStateMachine]:
    def call(start: Callable[[], Awaitable[Any]]) -> Any:
        """Runs `start()` on the service's event loop (gRPC calls must be made there) and waits for it."""

        async def run() -> Any:
            return await start()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=30)

    def outcome(start: Callable[[], Awaitable[Any]]) -> tuple[str, Any]:
        try:
            return "OK", call(start)
        except grpc.aio.AioRpcError as error:
            failure = failure_of(error)
            return failure.reason or failure.code.name, failure

    class InventoryMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            run = next(_runs)
            self.skus = [f"R{run}-{sku}" for sku in SKUS]  # each example gets products of its own
            self.stock = dict.fromkeys(self.skus, 0)
            self.reserved = dict.fromkeys(self.skus, 0)
            self.reservations: dict[str, tuple[str, dict[str, int]]] = {}
            self.orders: dict[str, str] = {}  # order_id -> checkout_id
            self.returned: set[str] = set()
            self.counter = 0
            for sku in self.skus:

                def upsert(sku: str = sku) -> Awaitable[pb.UpsertProductResponse]:
                    return inventory.UpsertProduct(
                        pb.UpsertProductRequest(
                            sku=sku,
                            name=sku,
                            price=money_pb2.Money(currency_code="USD", amount_minor=100),
                            weight_grams=1,
                        )
                    )

                call(upsert)

        def _next_id(self, kind: str) -> str:
            self.counter += 1
            return f"{self.skus[0]}-{kind}-{self.counter}"

        def _active(self) -> list[str]:
            return [c for c, (status, _) in self.reservations.items() if status == "active"]

        @rule(sku_index=st.integers(0, 2), delta=st.integers(-6, 12).filter(bool))
        def adjust(self, sku_index: int, delta: int) -> None:
            sku = self.skus[sku_index]
            result, _ = outcome(
                lambda: inventory.AdjustStock(
                    pb.AdjustStockRequest(
                        sku=sku,
                        delta=delta,
                        reason=pb.STOCK_ADJUSTMENT_REASON_RECOUNT,
                        idempotency_key=self._next_id("adj"),
                    )
                )
            )
            if self.stock[sku] + delta >= self.reserved[sku]:
                assert result == "OK", result
                self.stock[sku] += delta
            else:
                assert result == "STOCK_BELOW_RESERVED", result

        @rule(quantities=st.lists(st.integers(0, 4), min_size=3, max_size=3).filter(any), reverse=st.booleans())
        def reserve(self, quantities: list[int], reverse: bool) -> None:
            lines = {sku: q for sku, q in zip(self.skus, quantities, strict=True) if q}
            order = sorted(lines, reverse=reverse)
            checkout_id = self._next_id("co")
            result, response = outcome(
                lambda: inventory.ReserveInventory(
                    pb.ReserveInventoryRequest(
                        checkout_id=checkout_id, items=[line_item_pb2.LineItem(sku=s, quantity=lines[s]) for s in order]
                    )
                )
            )
            fits = all(self.stock[s] - self.reserved[s] >= q for s, q in lines.items())
            if fits:
                assert result == "OK", result
                self.reservations[checkout_id] = ("active", lines)
                for sku, quantity in lines.items():
                    self.reserved[sku] += quantity
            else:
                assert result == "INSUFFICIENT_STOCK", result
                short = {i.sku for i in response.detail(pb.InsufficientStock).items}
                assert short == {s for s, q in lines.items() if self.stock[s] - self.reserved[s] < q}

        def _with_lines(self) -> list[str]:
            return sorted(c for c, (_, lines) in self.reservations.items() if lines)

        def _released_early(self) -> list[str]:
            return sorted(c for c, (_, lines) in self.reservations.items() if not lines)

        @precondition(lambda self: self._released_early())
        @rule(data=st.data())
        def reserve_after_an_early_release(self, data: st.DataObject) -> None:
            checkout_id = data.draw(st.sampled_from(self._released_early()))
            result, _ = outcome(
                lambda: inventory.ReserveInventory(
                    pb.ReserveInventoryRequest(
                        checkout_id=checkout_id, items=[line_item_pb2.LineItem(sku=self.skus[0], quantity=1)]
                    )
                )
            )
            assert result == "RESERVATION_RELEASED", result

        @precondition(lambda self: self._with_lines())
        @rule(data=st.data())
        def replay_reserve(self, data: st.DataObject) -> None:
            checkout_id = data.draw(st.sampled_from(self._with_lines()))
            status, lines = self.reservations[checkout_id]
            result, response = outcome(
                lambda: inventory.ReserveInventory(
                    pb.ReserveInventoryRequest(
                        checkout_id=checkout_id,
                        items=[line_item_pb2.LineItem(sku=s, quantity=q) for s, q in lines.items()],
                    )
                )
            )
            assert result == "OK", result
            assert response.replayed and pb.ReservationStatus.Name(response.reservation.status).endswith(status.upper())

        @precondition(lambda self: self._active())
        @rule(data=st.data())
        def confirm(self, data: st.DataObject) -> None:
            checkout_id = data.draw(st.sampled_from(self._active()))
            order_id = self._next_id("order")
            result, _ = outcome(
                lambda: inventory.ConfirmReservation(
                    pb.ConfirmReservationRequest(checkout_id=checkout_id, order_id=order_id)
                )
            )
            assert result == "OK", result
            _, lines = self.reservations[checkout_id]
            self.reservations[checkout_id] = ("confirmed", lines)
            self.orders[order_id] = checkout_id
            for sku, quantity in lines.items():
                self.stock[sku] -= quantity
                self.reserved[sku] -= quantity

        @rule(data=st.data(), unknown=st.booleans())
        def release(self, data: st.DataObject, unknown: bool) -> None:
            if unknown or not self.reservations:
                checkout_id = self._next_id("never")
            else:
                checkout_id = data.draw(st.sampled_from(sorted(self.reservations)))
            result, response = outcome(
                lambda: inventory.ReleaseReservation(
                    pb.ReleaseReservationRequest(checkout_id=checkout_id, reason="test")
                )
            )
            status, lines = self.reservations.get(checkout_id, ("missing", {}))
            if status == "confirmed":
                assert result == "RESERVATION_CONFIRMED", result
                return
            assert result == "OK", result
            assert response.released_line_count == (len(lines) if status == "active" else 0)
            if status == "active":
                for sku, quantity in lines.items():
                    self.reserved[sku] -= quantity
                self.reservations[checkout_id] = ("released", lines)
            elif status == "missing":
                self.reservations[checkout_id] = ("released", {})

        @precondition(lambda self: self._active())
        @rule(data=st.data())
        def expire(self, data: st.DataObject) -> None:
            checkout_id = data.draw(st.sampled_from(self._active()))
            call(lambda: _backdate(database_url, checkout_id))
            for _ in range(100):
                reservation = call(
                    lambda: inventory.GetReservation(pb.GetReservationRequest(checkout_id=checkout_id))
                ).reservation
                if reservation.status == pb.RESERVATION_STATUS_EXPIRED:
                    break
                call(lambda: asyncio.sleep(0.02))
            assert reservation.status == pb.RESERVATION_STATUS_EXPIRED
            _, lines = self.reservations[checkout_id]
            self.reservations[checkout_id] = ("expired", lines)
            for sku, quantity in lines.items():
                self.reserved[sku] -= quantity

        @precondition(lambda self: set(self.orders) - self.returned)
        @rule(data=st.data())
        def return_stock(self, data: st.DataObject) -> None:
            order_id = data.draw(st.sampled_from(sorted(set(self.orders) - self.returned)))
            _, lines = self.reservations[self.orders[order_id]]
            back = {sku: data.draw(st.integers(1, quantity)) for sku, quantity in lines.items()}
            result, _ = outcome(
                lambda: inventory.ReturnStock(
                    pb.ReturnStockRequest(
                        order_id=order_id,
                        reason="returned",
                        items=[line_item_pb2.LineItem(sku=s, quantity=q) for s, q in back.items()],
                    )
                )
            )
            assert result == "OK", result
            self.returned.add(order_id)
            for sku, quantity in back.items():
                self.stock[sku] += quantity

        @invariant()
        def figures_match_the_model_and_the_ledger(self) -> None:
            products = call(lambda: _products(store, self.skus))
            assert {s: (p.stock_on_hand, p.reserved) for s, p in products.items()} == {
                s: (self.stock[s], self.reserved[s]) for s in self.skus
            }
            assert call(lambda: invariant_violations(store)) == []

    return InventoryMachine


async def _products(store: Store, skus: list[str]) -> dict:
    return await store.read(lambda tx: tx.products(skus))


async def _backdate(database_url: str, checkout_id: str) -> None:
    """Moves a reservation's expiry into the past, as if its TTL had run out (the sweeper does the rest)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        await connection.execute(
            "UPDATE inventory.reservations SET expires_at = now() - interval '1 second' WHERE checkout_id = %s",
            (checkout_id,),
        )


async def test_random_operation_sequences_keep_every_invariant(inventory, store, database_url):
    machine = build_machine(asyncio.get_running_loop(), inventory, store, database_url)
    profile = settings(
        max_examples=20,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )

    await asyncio.to_thread(run_state_machine_as_test, machine, settings=profile)
