"""Order use cases that change state: one verb each, one unit of work each, and in that unit of work
the OrderEvent of the change, written to the outbox (an event exists if and only if its change committed).

Who may call: CreateOrder, ConfirmOrder, MarkShipped and MarkDelivered need a trusted mesh caller
(`require_trusted`); CancelOrder is for the order's customer or a trusted caller, and a customer may
neither cancel a PENDING order (its checkout's saga is running) nor pick an operator's reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.message import Message

from order_svc import domain
from order_svc.domain import (
    CancelOrder,
    CreateOrder,
    MarkDelivered,
    MarkShipped,
    Order,
    OrderStatus,
    Transition,
)
from order_svc.repository import OrderStatements, address_json
from order_svc.wire import REASON_OUT, new_event_id, order_event
from service_runtime.identity import Caller, current_caller, require_customer, require_trusted
from service_runtime.ids import new_id
from service_runtime.sql import RaceLost, UnitOfWork
from service_runtime.wire import timestamp_out
from shop.order.v1 import events_pb2 as events


@dataclass(frozen=True)
class Changed:
    order: Order
    replayed: bool


@dataclass(frozen=True)
class Cancelled:
    order: Order
    replayed: bool
    already_cancelled: bool


async def record_event(tx: OrderStatements, order: Order, payload: Message) -> None:
    """Writes the OrderEvent of a change that left `order` as it is (sequence = its event_count)."""
    event_id = new_event_id()
    event = order_event(event_id, order, payload, order.updated_at)
    await tx.insert_event(
        event_id, order.order_id, order.event_count, type(payload).__name__, event.SerializeToString(), order.updated_at
    )


def customer_or_trusted() -> Caller:
    caller = current_caller()
    return caller if caller.trusted else require_customer()


class OrderHandlers:
    def __init__(
        self,
        work: UnitOfWork[OrderStatements],
        *,
        after_cancel: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._work = work
        #: Called with the order id after a cancellation commits (the cancel worker's first attempt).
        self._after_cancel = after_cancel

    async def create(self, command: CreateOrder) -> Changed:
        require_trusted()
        domain.validate_create(command)
        assert command.subtotal and command.shipping_cost and command.tax and command.total
        assert command.shipping_address and command.shipping_method
        currency = command.subtotal.currency_code
        fields: dict[str, object] = {
            "checkout_id": command.checkout_id,
            "user_id": command.user_id,
            "customer_email": command.customer_email,
            "payment_id": command.payment_id,
            "currency_code": currency,
            "subtotal_minor": command.subtotal.amount_minor,
            "discount_minor": command.discount_total.amount_minor if command.discount_total else 0,
            "shipping_cost_minor": command.shipping_cost.amount_minor,
            "tax_minor": command.tax.amount_minor,
            "total_minor": command.total.amount_minor,
            "shipping_address": address_json(command.shipping_address),
            "shipping_method": command.shipping_method.value,
        }

        async def work(tx: OrderStatements) -> Changed:
            existing = await tx.order_by_checkout(command.checkout_id)
            if existing is not None:
                if not domain.same_order(existing, command):
                    raise domain.checkout_already_ordered(existing.order_id)
                return Changed(existing, replayed=True)
            order_id = new_id("ord")
            if not await tx.insert_order(order_id, fields, command.lines):
                raise RaceLost()  # a concurrent duplicate committed first: the next attempt replays it
            order = await tx.order(order_id, lock=False)
            assert order is not None
            await record_event(
                tx, order, events.OrderCreated(checkout_id=order.checkout_id, payment_id=order.payment_id)
            )
            return Changed(order, replayed=False)

        return await self._work.run(work)

    async def confirm(self, order_id: str) -> Changed:
        require_trusted()
        domain.validate_order_id(order_id)

        async def work(tx: OrderStatements) -> Changed:
            order = await self._locked(tx, order_id)
            if domain.check_transition(order.status, OrderStatus.CONFIRMED) is Transition.ALREADY_DONE:
                return Changed(order, replayed=True)
            order = await tx.confirm(order)
            await record_event(tx, order, events.OrderConfirmed(payment_id=order.payment_id))
            return Changed(order, replayed=False)

        return await self._work.run(work)

    async def ship(self, command: MarkShipped) -> Changed:
        require_trusted()
        now = datetime.now(UTC)
        domain.validate_mark_shipped(command, now)

        async def work(tx: OrderStatements) -> Changed:
            order = await self._locked(tx, command.order_id)
            if domain.check_transition(order.status, OrderStatus.SHIPPED) is Transition.ALREADY_DONE:
                domain.check_shipment(order.status, order.shipment_id, command.shipment_id)
                return Changed(order, replayed=True)
            order = await tx.ship(order, command.shipment_id, command.shipped_at or now)
            await record_event(
                tx,
                order,
                events.OrderShipped(
                    tracking_number=command.tracking_number,
                    carrier=command.carrier,
                    ship_time=timestamp_out(order.shipped_at),
                    shipment_id=order.shipment_id,
                ),
            )
            return Changed(order, replayed=False)

        return await self._work.run(work)

    async def deliver(self, command: MarkDelivered) -> Changed:
        require_trusted()
        now = datetime.now(UTC)
        domain.validate_mark_delivered(command, now)

        async def work(tx: OrderStatements) -> Changed:
            order = await self._locked(tx, command.order_id)
            if domain.check_transition(order.status, OrderStatus.DELIVERED) is Transition.ALREADY_DONE:
                return Changed(order, replayed=True)
            delivered_at = command.delivered_at or now
            domain.check_delivered_after_shipped(order, delivered_at)
            order = await tx.deliver(order, delivered_at)
            await record_event(tx, order, events.OrderDelivered(deliver_time=timestamp_out(delivered_at)))
            return Changed(order, replayed=False)

        return await self._work.run(work)

    async def cancel(self, command: CancelOrder) -> Cancelled:
        caller = customer_or_trusted()
        domain.validate_cancel(command)
        reason = command.reason
        assert reason is not None

        async def work(tx: OrderStatements) -> Cancelled:
            keyed = await tx.order_by_cancel_key(command.idempotency_key)
            if keyed is not None and keyed.order_id != command.order_id:
                raise domain.key_reused(command.idempotency_key)
            order = await tx.order(command.order_id, lock=True)
            if order is None or not (caller.trusted or domain.owned_by(order, caller.owner)):
                raise domain.not_found(command.order_id)
            if domain.check_cancel_replay(order, command):
                return Cancelled(order, replayed=True, already_cancelled=False)
            if not caller.trusted and reason in domain.OPERATOR_ONLY_REASONS:
                domain.check_customer_may_cancel(order, reason)
            if domain.check_transition(order.status, OrderStatus.CANCELLED) is Transition.ALREADY_DONE:
                return Cancelled(order, replayed=False, already_cancelled=True)
            if not caller.trusted:
                domain.check_customer_may_cancel(order, reason)
            order = await tx.cancel(order, command, reason)
            await record_event(
                tx,
                order,
                events.OrderCancelled(reason=REASON_OUT[reason], note=command.note),
            )
            return Cancelled(order, replayed=False, already_cancelled=False)

        cancelled = await self._work.run(work, retry_duplicates=True)
        if cancelled.replayed or cancelled.already_cancelled or self._after_cancel is None:
            return cancelled
        await self._after_cancel(cancelled.order.order_id)
        order = await self._work.read(lambda tx: tx.order(command.order_id, lock=False))
        assert order is not None
        return Cancelled(order, replayed=False, already_cancelled=False)

    @staticmethod
    async def _locked(tx: OrderStatements, order_id: str) -> Order:
        order = await tx.order(order_id, lock=True)
        if order is None:
            raise domain.not_found(order_id)
        return order
