"""The order-event consumer and the retry worker: every event handled once, every message sent or
dead-lettered.

**Consuming** (`EventConsumer.run`): reads the order event topic with a consumer group. For each batch,
one transaction records every event in the inbox (`processed_events`, keyed by event_id: a redelivered
event finds its row and is only acknowledged) together with the notification it renders; then the batch
is acknowledged, then the new notifications are sent. A consumer that dies before acknowledging leaves
its messages pending: on Redis another member reclaims them (XAUTOCLAIM) after the idle limit, on Kafka
the group rebalances; either way the inbox makes the second handling a no-op. A message that cannot be
decoded (a poison message) goes straight to the dead-letter topic with the reason and is acknowledged.

**Sending and retrying**: a failed send makes the notification FAILED with `next_attempt_time` after an
exponential backoff; the retry worker claims due ones with `FOR UPDATE SKIP LOCKED` (and PENDING ones
whose first attempt was never made, e.g. the consumer died between commit and send: untouched for the
send lease; a live consumer renews the lease of what it recorded and has not sent yet, every third of it,
so a slow send is never taken for abandoned). The attempt that
uses up NOTIFICATION_MAX_ATTEMPTS makes it DEAD_LETTERED and publishes the original event to the
dead-letter topic with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry import trace

from notification_svc import domain, templates
from notification_svc.domain import Channel, NotificationStatus, OrderEventType
from notification_svc.repository import InboxEntry, NewNotification, Notification, NotificationStatements
from notification_svc.senders import Sender, SendFailed
from service_runtime import telemetry
from service_runtime.events import BusMessage, Consumer, Delivery, EventBus, Publisher, tracing
from service_runtime.sql import UnitOfWork
from shop.order.v1 import events_pb2 as events
from shop.order.v1 import order_service_pb2 as order_pb

log = logging.getLogger(__name__)

#: Sends in flight at once, per dispatcher (an SMTP send holds a worker thread and a connection).
SEND_CONCURRENCY = 32


@dataclass(frozen=True)
class ConsumerSettings:
    topic: str
    group: str
    name: str
    dead_letter_topic: str
    max_attempts: int = 5
    batch_size: int = 500
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 300.0
    lease_seconds: float = 30.0
    retry_poll_seconds: float = 0.5


def notification_id(event_id: str, channel: Channel) -> str:
    """Derived from the event and channel, so handling an event twice can never make two notifications."""
    return "ntf_" + hashlib.sha256(f"{event_id}/{channel.value}".encode()).hexdigest()[:32]


def values_of(event: events.OrderEvent) -> dict[str, str]:
    """The template values an OrderEvent provides (see notification_svc.templates)."""
    order = event.order
    values = {
        "order_id": event.order_id,
        "total": templates.format_money(order.total.amount_minor, order.total.currency_code),
        "lines": "\n".join(f"{line.quantity} × {line.product_name}" for line in order.lines),
    }
    payload = event.WhichOneof("payload")
    if payload == "order_shipped":
        shipped = event.order_shipped
        values |= {
            "carrier": shipped.carrier or "our carrier",
            "tracking_number": shipped.tracking_number,
            "ship_date": shipped.ship_time.ToDatetime(tzinfo=UTC).date().isoformat(),
        }
    elif payload == "order_delivered":
        values["deliver_date"] = event.order_delivered.deliver_time.ToDatetime(tzinfo=UTC).date().isoformat()
    elif payload == "order_cancelled":
        reason = order_pb.CancelReason.Name(event.order_cancelled.reason)
        values["reason"] = reason.removeprefix("CANCEL_REASON_").replace("_", " ").lower()
    elif payload == "order_refunded":
        refunded = event.order_refunded
        values |= {
            "refund_amount": templates.format_money(refunded.amount.amount_minor, refunded.amount.currency_code),
            "refund_id": refunded.refund_id,
        }
    return values


class Poison(Exception):
    """A message no attempt can handle (undecodable, no event id, unknown type); it is dead-lettered."""


@dataclass(frozen=True)
class Decoded:
    """An event from either topic, as the inbox and the templates need it."""

    delivery: Delivery
    event_id: str
    #: The OrderEvent payload type (e.g. "OrderConfirmed") or the checkout event's type ("CheckoutExpired").
    event_type: str
    order_id: str | None
    checkout_id: str | None
    sequence: int
    user_id: str
    email: str
    #: The template it is rendered with, or None when it sends nothing.
    template: str | None
    values: Mapping[str, str]


Decoder = Callable[[Delivery], Decoded]


def decode(delivery: Delivery) -> Decoded:
    """An OrderEvent (protobuf) from the order event topic."""
    try:
        event = events.OrderEvent.FromString(delivery.message.value)
    except DecodeError as error:
        raise Poison(f"undecodable OrderEvent: {error}") from None
    payload = event.WhichOneof("payload")
    if not event.event_id or not event.order_id or payload is None:
        raise Poison("the OrderEvent has no event_id, order_id or payload")
    type_name = type(getattr(event, payload)).__name__
    try:
        event_type = OrderEventType(type_name)
    except ValueError:
        raise Poison(f"unknown order event type {type_name}") from None
    return Decoded(
        delivery=delivery,
        event_id=event.event_id,
        event_type=event_type.value,
        order_id=event.order_id,
        checkout_id=None,
        sequence=max(1, event.sequence),
        user_id=event.order.user_id,
        email=event.order.customer_email,
        template=domain.template_for(event_type),
        values=values_of(event),
    )


def decode_checkout_event(delivery: Delivery) -> Decoded:
    """A checkout event (JSON, written by the gateway's relay) from the checkout event topic."""
    try:
        document = json.loads(delivery.message.value)
        assert isinstance(document, dict)
        event_id, event_type = str(document["eventId"]), str(document["eventType"])
        checkout_id, user_id = str(document["checkoutId"]), str(document.get("userId", ""))
    except (ValueError, AssertionError, KeyError, TypeError) as error:
        raise Poison(f"undecodable checkout event: {error!r}") from None
    template = domain.CHECKOUT_TEMPLATES.get(event_type)
    if event_type not in domain.CHECKOUT_TEMPLATES:
        raise Poison(f"unknown checkout event type {event_type}")
    return Decoded(
        delivery=delivery,
        event_id=event_id,
        event_type=event_type,
        order_id=None,
        checkout_id=checkout_id,
        sequence=1,
        user_id=user_id,
        email=str(document.get("customerEmail", "")),
        template=template,
        values={"checkout_id": checkout_id, "cart_id": str(document.get("cartId", ""))},
    )


class Dispatcher:
    """Sends notifications and records the outcome; shared by the consumer and the retry worker."""

    def __init__(
        self,
        work: UnitOfWork[NotificationStatements],
        senders: Mapping[Channel, Sender],
        dead_letters: Publisher,
        settings: ConsumerSettings,
    ) -> None:
        self._work = work
        self._senders = senders
        self._dead_letters = dead_letters
        self._settings = settings
        #: Shared by the consumers and the retry worker; a batch also runs at most this many senders.
        self._concurrency = asyncio.Semaphore(SEND_CONCURRENCY)

    async def attempt_all(
        self, notifications: Sequence[Notification], parents: Mapping[str, trace.Span] | None = None
    ) -> None:
        """Sends each (concurrently, at most SEND_CONCURRENCY at once); records every success in one statement.
        `parents`: the span of each event's handling (by event id), under which its send is traced."""
        if not notifications:
            return
        parents = parents or {}
        outcomes: list[str | None] = [None] * len(notifications)
        attempted = [False] * len(notifications)
        pending = iter(range(len(notifications)))

        async def sender() -> None:  # one of at most SEND_CONCURRENCY, each taking the next notification
            for index in pending:
                notification = notifications[index]
                outcomes[index] = await self._traced_send(notification, parents.get(notification.event_id))
                attempted[index] = True

        async def renewing() -> None:  # slow sends: the ones not sent yet keep their lease (see `renew_pending`)
            while True:
                await asyncio.sleep(self._settings.lease_seconds / 3)
                unsent = [n.notification_id for n, done in zip(notifications, attempted, strict=True) if not done]
                await self.renew(unsent)

        renewer = asyncio.create_task(renewing())
        try:
            # Every sender runs to its end even if one fails unexpectedly (not a SendFailed): what was sent is
            # marked sent before the error goes on, or the retry worker would send it again.
            unexpected = [
                error
                for error in await asyncio.gather(
                    *(sender() for _ in range(min(SEND_CONCURRENCY, len(notifications)))), return_exceptions=True
                )
                if error is not None
            ]
        finally:
            renewer.cancel()
        sent = [
            n.notification_id
            for n, error, done in zip(notifications, outcomes, attempted, strict=True)
            if done and error is None
        ]
        if sent:
            await self._work.statement(lambda tx: tx.mark_sent(sent))
        for notification, error in zip(notifications, outcomes, strict=True):
            if error is not None:
                await self._failed(notification, error)
        if unexpected:
            raise unexpected[0]

    async def renew(self, notification_ids: Sequence[str]) -> None:
        """Moves the lease of recorded notifications still waiting for their first send forward; a failure is
        logged (at worst the retry worker sends one of them a second time)."""
        if not notification_ids:
            return
        try:
            await self._work.statement(lambda tx: tx.renew_pending(notification_ids))
        except Exception as error:
            log.warning("could not renew the lease of %d waiting notifications: %s", len(notification_ids), error)

    async def _traced_send(self, notification: Notification, parent: trace.Span | None) -> str | None:
        if not telemetry.enabled() or (parent is not None and not parent.is_recording()):
            # Tracing is off, or the event's trace is not sampled: the send's span would not be recorded.
            return await self._send(notification)
        with telemetry.span(
            "notification send",
            parent=trace.set_span_in_context(parent) if parent is not None else None,
            attributes={
                "shop.notification.channel": notification.channel.value,
                "shop.event.id": notification.event_id,
            },
        ) as span:
            error = await self._send(notification)
            if error is not None:
                telemetry.fail(span, "send failed")
            return error

    async def _send(self, notification: Notification) -> str | None:
        """None when the channel accepted it, else the error."""
        async with self._concurrency:
            try:
                await self._senders[notification.channel].send(
                    recipient=notification.recipient,
                    subject=notification.subject,
                    body=notification.body,
                    notification_id=notification.notification_id,
                )
            except SendFailed as failure:
                return str(failure)
            return None

    async def _failed(self, notification: Notification, error: str) -> NotificationStatus:
        s = self._settings
        status = domain.status_after_failed_attempt(min(notification.attempts + 1, s.max_attempts), s.max_attempts)
        if status is NotificationStatus.DEAD_LETTERED:
            payload, event_type = await self._work.read(lambda tx: tx.event_payload(notification.event_id))
            await self._dead_letters.publish(
                s.dead_letter_topic,
                [
                    BusMessage(
                        key=notification.order_id or notification.checkout_id or "",
                        type=event_type,
                        value=payload,
                        headers=(
                            ("reason", f"send failed {notification.attempts + 1} times: {error}"[:1000]),
                            ("notificationId", notification.notification_id),
                            ("eventId", notification.event_id),
                        ),
                    )
                ],
            )
            await self._work.run(lambda tx: tx.mark_dead_lettered(notification.notification_id, error))
            log.error("notification %s dead-lettered: %s", notification.notification_id, error)
            return status
        delay = min(s.retry_max_seconds, s.retry_base_seconds * 2**notification.attempts)
        await self._work.run(lambda tx: tx.mark_failed(notification.notification_id, error, delay))
        return status

    async def dead_letter_poison(self, delivery: Delivery, reason: str) -> None:
        message = delivery.message
        await self._dead_letters.publish(
            self._settings.dead_letter_topic,
            [
                BusMessage(
                    key=message.key,
                    type=message.type,
                    value=message.value,
                    headers=(("reason", reason[:1000]), ("sourceId", delivery.id)),
                )
            ],
        )
        log.error("poison message %s dead-lettered: %s", delivery.id, reason)


class EventConsumer:
    def __init__(
        self,
        work: UnitOfWork[NotificationStatements],
        bus: EventBus,
        dispatcher: Dispatcher,
        settings: ConsumerSettings,
        *,
        decoder: Decoder = decode,
    ) -> None:
        self._work = work
        self._bus = bus
        self._dispatcher = dispatcher
        self._settings = settings
        self._decode = decoder
        self._consumer: Consumer | None = None
        self._system = getattr(bus, "system", "")

    async def run(self) -> None:
        await self._bus.ensure_topic(self._settings.topic)
        await self._bus.ensure_topic(self._settings.dead_letter_topic)
        s = self._settings
        self._consumer = self._bus.consumer(s.topic, group=s.group, name=s.name)
        consumer = self._consumer
        sending: asyncio.Task[None] | None = None
        try:
            # Three batches are in flight: the next one is fetched while this one is recorded and acknowledged,
            # while the previous one is sent. One batch's sends at a time, in batch order.
            batch = await consumer.fetch(s.batch_size, timeout_seconds=1.0)
            while True:
                following = asyncio.create_task(consumer.fetch(s.batch_size, timeout_seconds=1.0))
                try:
                    send = await self.record_batch(batch)
                    if sending is not None:
                        await self._wait_renewing(sending, send.waiting)
                    sending = asyncio.create_task(send())
                except BaseException:
                    following.cancel()
                    raise
                batch = await following
        finally:
            # Stopping mid-send leaves notifications PENDING: the retry worker sends them (as after a crash).
            if sending is not None:
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sending
            await self._consumer.close()

    async def _wait_renewing(self, sending: asyncio.Task[None], waiting: Sequence[str]) -> None:
        """Waits for the previous batch's send phase; while it lasts, renews the lease of this batch's recorded
        notifications every third of the lease, so the retry worker never takes them for abandoned (and sends
        them a second time) however long the sends ahead of them take. Quick sends cost no statement."""
        lease = self._settings.lease_seconds
        while not (await asyncio.wait({sending}, timeout=lease / 3))[0]:
            await self._dispatcher.renew(waiting)
        await sending

    async def record_batch(self, deliveries: Sequence[Delivery]) -> SendPhase:
        """Records a batch in the inbox with the notifications of its new events, in one statement, and
        acknowledges it; returns its send phase (sends those notifications, marks the sent ones).

        Each message has its CONSUMER span in the trace it came with, ended when its send phase ends; the
        batch's shared work (decoding, the statement, the ack) runs under the first message's span."""
        if not deliveries:
            return SendPhase(_nothing_to_send, ())
        assert self._consumer is not None
        s = self._settings
        tracing.record_lag(s.topic, s.group, deliveries)
        spans = {d.id: tracing.start_processing(d, system=self._system, group=s.group) for d in deliveries}
        try:
            with trace.use_span(spans[deliveries[0].id], end_on_exit=False):
                good: list[Decoded] = []
                for delivery in deliveries:
                    try:
                        good.append(self._decode(delivery))
                    except Poison as poison:
                        telemetry.fail(spans[delivery.id], "poison message")
                        await self._dispatcher.dead_letter_poison(delivery, str(poison))
                unique = list({item.event_id: item for item in good}.values())  # a batch may hold a redelivery
                batch = [(inbox_entry(item), render(item)) for item in unique]
                # One statement: the inbox rows and the notifications are one transaction (autocommit).
                created = await self._work.statement(lambda tx: tx.record_batch(batch))
                await self._consumer.ack(deliveries)
        except BaseException:
            for span in spans.values():
                span.end()
            raise
        parents = {item.event_id: spans[item.delivery.id] for item in unique}

        async def send() -> None:
            try:
                await self._dispatcher.attempt_all(created, parents)
            finally:
                for span in spans.values():
                    span.end()

        return SendPhase(send, tuple(n.notification_id for n in created))


async def _nothing_to_send() -> None:
    pass


@dataclass(frozen=True)
class SendPhase:
    """A recorded batch's sends: call it to run them; `waiting` names its notifications until then."""

    run: Callable[[], Coroutine[Any, Any, None]]
    waiting: tuple[str, ...]

    def __call__(self) -> Coroutine[Any, Any, None]:
        return self.run()


def inbox_entry(item: Decoded) -> InboxEntry:
    return InboxEntry(
        event_id=item.event_id,
        order_id=item.order_id,
        checkout_id=item.checkout_id,
        sequence=item.sequence,
        event_type=item.event_type,
        entry_id=item.delivery.id,
        payload=item.delivery.message.value,
    )


def render(item: Decoded) -> NewNotification | None:
    """The notification an event becomes, or None (no template for it, or it cannot be rendered)."""
    if item.template is None:
        return None
    channel = domain.channel_for(item.email)
    try:
        subject, body = templates.render(item.template, item.values)
    except KeyError as error:  # a template without its value: recorded in the inbox, not sent
        log.error("event %s cannot be rendered with %s: %s", item.event_id, item.template, error)
        return None
    return NewNotification(
        notification_id=notification_id(item.event_id, channel),
        event_id=item.event_id,
        user_id=item.user_id,
        order_id=item.order_id,
        checkout_id=item.checkout_id,
        channel=channel,
        template=item.template,
        recipient=item.email.strip() if channel is Channel.EMAIL else "",
        subject=subject,
        body=body,
    )


class RetryWorker:
    """Retries due FAILED notifications (and PENDING ones never attempted), in every replica at once."""

    def __init__(
        self, work: UnitOfWork[NotificationStatements], dispatcher: Dispatcher, settings: ConsumerSettings
    ) -> None:
        self._work = work
        self._dispatcher = dispatcher
        self._settings = settings

    async def run_once(self) -> int:
        s = self._settings
        due = await self._work.run(lambda tx: tx.claim_due(s.lease_seconds, s.batch_size))
        await self._dispatcher.attempt_all(due)
        return len(due)

    async def run(self) -> None:
        while True:
            if await self.run_once() < self._settings.batch_size:
                await asyncio.sleep(self._settings.retry_poll_seconds)
