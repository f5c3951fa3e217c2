"""Trace context across the event bus (both adapters): a checkout's trace continues through its events.

Publishing (`TracedBus`, which `open_bus` returns): each message gets a PRODUCER span `<topic> publish`
whose parent is the trace context the message carries in its `traceparent` header (the relay copies it
from the outbox row: the request that caused the event), else the current span. The producer span's
own context replaces the header, with `publishedAt` (epoch milliseconds, for the consumer lag).

Consuming (`start_processing`): a CONSUMER span `<topic> process` whose parent is the message's producer
span, so the notification a checkout caused is in the checkout's trace; the consumer lag is recorded.
Messages without a `traceparent` start a new trace (subject to sampling).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from service_runtime import metrics, telemetry
from service_runtime.events.bus import BusMessage, Consumer, Delivery, EventBus, Publisher

#: Headers the tracing owns (replaced on publish).
TRACE_HEADERS = ("traceparent", "tracestate", "publishedAt")


class TracedBus:
    """An event bus whose publishers trace what they publish (see the module docstring)."""

    def __init__(self, inner: EventBus, system: str) -> None:
        self._inner = inner
        #: messaging.system of its spans: "redis" or "kafka".
        self.system = system

    async def ensure_topic(self, topic: str) -> None:
        await self._inner.ensure_topic(topic)

    def publisher(self) -> Publisher:
        return TracedPublisher(self._inner.publisher(), self.system)

    def consumer(self, topic: str, *, group: str, name: str) -> Consumer:
        return self._inner.consumer(topic, group=group, name=name)

    async def close(self) -> None:
        await self._inner.close()


class TracedPublisher:
    def __init__(self, inner: Publisher, system: str) -> None:
        self._inner = inner
        self._system = system

    async def publish(self, topic: str, messages: Sequence[BusMessage]) -> None:
        tracer = telemetry.tracer()
        spans: list[trace.Span] = []
        traced: list[BusMessage] = []
        now_ms = str(int(time.time() * 1000))
        tracing = telemetry.enabled()
        for message in messages:
            carried = {name: value for name, value in message.headers if name in TRACE_HEADERS and value}
            if not tracing or not _sampled(carried.get("traceparent")):
                # No span would be recorded (tracing is off, or the trace is not sampled: the sampler follows
                # the parent), so the message keeps the context it carries, as a non-recording span would
                # pass it on; it starts no new trace.
                headers = tuple(
                    (name, value)
                    for name, value in message.headers
                    if name != "publishedAt" and (value or name not in TRACE_HEADERS)
                )
                traced.append(replace(message, headers=(*headers, ("publishedAt", now_ms))))
                continue
            parent = telemetry.context_of(carried) if "traceparent" in carried else None
            span = tracer.start_span(
                f"{topic} publish",
                context=parent,
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": self._system,
                    "messaging.destination.name": topic,
                    "messaging.operation": "publish",
                    "messaging.message.type": message.type,
                },
            )
            spans.append(span)
            carrier: dict[str, str] = {}
            propagate.inject(carrier, context=trace.set_span_in_context(span))
            headers = tuple((name, value) for name, value in message.headers if name not in TRACE_HEADERS)
            traced.append(replace(message, headers=(*headers, *carrier.items(), ("publishedAt", now_ms))))
        try:
            await self._inner.publish(topic, traced)
        except BaseException as error:
            for span in spans:
                telemetry.fail(span, type(error).__name__)
            raise
        finally:
            for span in spans:
                span.end()

    async def close(self) -> None:
        await self._inner.close()


def _sampled(traceparent: str | None) -> bool:
    """Whether a message's span would be recorded: it has no parent (a new trace, sampled at the root) or
    its W3C `traceparent` says the trace is sampled (flags bit 0)."""
    if not traceparent:
        return True
    flags = traceparent[-2:]
    try:
        return bool(int(flags, 16) & 1)
    except ValueError:
        return True  # malformed: let the propagator decide, as before


def header(delivery: Delivery, name: str) -> str:
    return next((value for key, value in delivery.message.headers if key == name), "")


def lag_seconds(deliveries: Sequence[Delivery]) -> float:
    """How long the oldest of `deliveries` waited since it was published (0 when none says)."""
    published = [int(stamp) for stamp in (header(d, "publishedAt") for d in deliveries) if stamp.isdigit()]
    return max(0.0, time.time() - min(published) / 1000) if published else 0.0


def record_lag(topic: str, group: str, deliveries: Sequence[Delivery]) -> None:
    if deliveries and metrics.enabled():
        metrics.instruments().consumer_lag.set(
            lag_seconds(deliveries), {"messaging.destination.name": topic, "messaging.consumer.group.name": group}
        )


def start_processing(delivery: Delivery, *, system: str, group: str) -> trace.Span:
    """The CONSUMER span of handling one message, a child of its producer span (see the module docstring).
    Not made current: a consumer that handles a batch chooses which work runs under which span."""
    if not telemetry.enabled():
        return trace.INVALID_SPAN  # tracing is off: nothing would be recorded
    carrier = {name: value for name, value in delivery.message.headers if name in ("traceparent", "tracestate")}
    return telemetry.tracer().start_span(
        f"{delivery.topic} process",
        context=telemetry.context_of(carrier),
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": system,
            "messaging.destination.name": delivery.topic,
            "messaging.operation": "process",
            "messaging.consumer.group.name": group,
            "messaging.message.id": delivery.id,
            "messaging.message.type": delivery.message.type,
        },
    )
