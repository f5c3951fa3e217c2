"""One checkout is one trace: through the real mesh (in-process servers over loopback, PostgreSQL, Redis
Streams, the sandbox PSP), from the gateway's PlaceOrder to the notification the order's events cause."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc
import psycopg
from grpc_health.v1 import health_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from devstack.mesh import health_of
from gateway.repository import GatewayStatements
from service_runtime import telemetry
from shop.gateway.v1 import gateway_service_pb2 as pb
from tests.integration.gateway.conftest import Shop, StartGateway
from tests.rpc_errors import expect_failure

PLACE_ORDER = "/shop.gateway.v1.CheckoutService/PlaceOrder"


def attribute(span: ReadableSpan, name: str) -> object:
    return (span.attributes or {}).get(name)


def gateway_span(spans: Sequence[ReadableSpan]) -> ReadableSpan:
    [server] = [s for s in spans if s.name == PLACE_ORDER and s.kind is SpanKind.SERVER]
    return server


def trace_of(spans: Sequence[ReadableSpan], root: ReadableSpan) -> list[ReadableSpan]:
    assert root.context is not None
    return [s for s in spans if s.context is not None and s.context.trace_id == root.context.trace_id]


def descendants(spans: Sequence[ReadableSpan], root: ReadableSpan) -> set[int]:
    """Span ids reachable from `root` through parent links."""
    assert root.context is not None
    children: dict[int, list[int]] = {}
    for s in spans:
        if s.parent is not None and s.context is not None:
            children.setdefault(s.parent.span_id, []).append(s.context.span_id)
    reached, frontier = {root.context.span_id}, [root.context.span_id]
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in reached:
                reached.add(child)
                frontier.append(child)
    return reached


def orphans(spans: Sequence[ReadableSpan]) -> list[str]:
    """The names of the spans in the gateway span's trace that its tree does not reach."""
    root = gateway_span(spans)
    in_trace = trace_of(spans, root)
    tree = descendants(in_trace, root)
    return [s.name for s in in_trace if s.context is not None and s.context.span_id not in tree]


async def wait_for_whole_tree(
    exporter: InMemorySpanExporter, name_suffix: str, timeout: float = 60.0
) -> list[ReadableSpan]:
    """The finished spans once one named `name_suffix` is among them and every span of the checkout's trace
    hangs from the gateway's: a consumer's span ends only after its send phase has marked the notification
    sent, so its children (the inbox statement, the ack, the send) can be exported before it is."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        finished = list(exporter.get_finished_spans())
        done = any(s.name.endswith(name_suffix) for s in finished) and not orphans(finished)
        if done or loop.time() > end:
            return finished
        await asyncio.sleep(0.1)


async def test_a_checkout_is_one_trace_from_the_gateway_through_every_service_to_the_notification(
    gateway: Shop, spans: InMemorySpanExporter
):
    await gateway.product("MUG", 10, price_minor=1999)
    checkout_id = await gateway.quoted_checkout("alice", {"MUG": 2})
    spans.clear()

    placed = (await gateway.place("alice", checkout_id)).checkout
    assert placed.status == pb.CHECKOUT_STATUS_COMPLETED
    finished = await wait_for_whole_tree(spans, "notification send")

    root = gateway_span(finished)
    in_trace = trace_of(finished, root)
    # The test calls like an uninstrumented BFF: the gateway's server span is the root of one tree.
    assert root.parent is None
    assert orphans(finished) == []
    names = {s.name for s in in_trace}
    for step in (
        "extend_reservation",
        "authorize_payment",
        "create_order",
        "confirm_reservation",
        "capture_payment",
        "confirm_order",
        "convert_cart",
    ):
        [step_span] = [s for s in in_trace if s.name == f"saga step {step}"]
        assert attribute(step_span, "shop.checkout.id") == checkout_id
        assert attribute(step_span, "shop.saga.attempt") == 1
        assert attribute(step_span, "shop.saga.outcome") == "succeeded"
    servers = {s.name for s in in_trace if s.kind is SpanKind.SERVER}
    assert {
        PLACE_ORDER,
        "/shop.inventory.v1.InventoryService/ExtendReservation",
        "/shop.payment.v1.PaymentService/AuthorizePayment",
        "/shop.order.v1.OrderService/CreateOrder",
        "/shop.payment.v1.PaymentService/CapturePayment",
        "/shop.order.v1.OrderService/ConfirmOrder",
        "/shop.cart.v1.CartService/ConvertCart",
    } <= servers, servers
    clients = {s.name for s in in_trace if s.kind is SpanKind.CLIENT and s.name.startswith("/")}
    assert servers - {PLACE_ORDER} <= clients  # each downstream call: the caller's CLIENT span, then the SERVER's
    assert any(attribute(s, "db.system") == "postgresql" for s in in_trace)
    assert any(s.name.startswith("psp POST") for s in in_trace)
    # The asynchronous tail: the order relay's publish and the notification consumer, in the same tree.
    publishes = [s for s in in_trace if s.kind is SpanKind.PRODUCER]
    consumed = [s for s in in_trace if s.kind is SpanKind.CONSUMER]
    assert {attribute(s, "messaging.message.type") for s in publishes} >= {"OrderCreated", "OrderConfirmed"}
    assert all(attribute(s, "messaging.system") == "redis" for s in publishes + consumed)
    assert {attribute(s, "messaging.message.type") for s in consumed} >= {"OrderConfirmed"}
    assert "notification send" in names
    # Nothing of this checkout broke off into another trace.
    elsewhere = [
        s.name
        for s in finished
        if s not in in_trace and (attribute(s, "shop.checkout.id") == checkout_id or s.kind is SpanKind.CONSUMER)
    ]
    assert elsewhere == []


async def test_a_failed_checkout_records_its_compensations_and_an_error_on_the_failing_step(
    start_gateway: StartGateway, spans: InMemorySpanExporter
):
    shop = await start_gateway(ORDER_TARGET="127.0.0.1:1")  # the order service cannot be reached
    await shop.product("JAM", 5)
    checkout_id = await shop.quoted_checkout("jon", {"JAM": 2})
    spans.clear()

    failed = await expect_failure(shop.place("jon", checkout_id))
    assert failed.reason == "CHECKOUT_FAILED"

    finished = list(spans.get_finished_spans())
    in_trace = trace_of(finished, gateway_span(finished))
    [create] = [s for s in in_trace if s.name == "saga step create_order"]
    assert create.status.status_code is StatusCode.ERROR
    assert attribute(create, "shop.saga.outcome") == "gave_up" and attribute(create, "shop.saga.calls") == 4
    [void] = [s for s in in_trace if s.name == "saga compensate authorize_payment"]
    [release] = [s for s in in_trace if s.name == "saga compensate reserve_inventory"]
    assert attribute(void, "shop.saga.outcome") == attribute(release, "shop.saga.outcome") == "compensated"
    assert {attribute(s, "shop.checkout.id") for s in (create, void, release)} == {checkout_id}
    assert any(s.name == "/shop.payment.v1.PaymentService/VoidPayment" and s.kind is SpanKind.SERVER for s in in_trace)
    [saga] = [s for s in in_trace if s.name == "checkout saga"]
    assert attribute(saga, "shop.saga.outcome") == "failed"


async def test_an_idle_mesh_and_its_health_checks_record_no_spans(gateway: Shop, spans: InMemorySpanExporter):
    """The background pollers (outbox relays, recovery worker, sweepers, retry worker, consumers) query
    several times a second; with nothing to do, none of that is traced, nor are health checks."""
    spans.clear()
    async with grpc.aio.insecure_channel(gateway.gateway_address) as channel:
        for _ in range(3):
            assert await health_of(health_pb2_grpc.HealthStub(channel)) == "SERVING"
    await asyncio.sleep(1.5)

    assert [s.name for s in spans.get_finished_spans()] == []


async def test_a_saga_the_recovery_worker_resumes_is_a_new_trace_linked_to_its_place_order(
    gateway: Shop, spans: InMemorySpanExporter
):
    await gateway.product("OAT", 5)
    checkout_id = await gateway.quoted_checkout("ruth", {"OAT": 1})
    # A replica started the attempt in a traced PlaceOrder and died: its lease is already over.
    with telemetry.span("PlaceOrder of a replica that died") as original:
        traceparent = telemetry.current_traceparent()
    async with await psycopg.AsyncConnection.connect(gateway.database_url) as connection:
        await GatewayStatements(connection).start_attempt(checkout_id, "tok_visa", "dead-replica", 0.0, traceparent)
        await connection.commit()

    assert (await gateway.settled("ruth", checkout_id)).status == pb.CHECKOUT_STATUS_COMPLETED

    finished = list(spans.get_finished_spans())
    [saga] = [s for s in finished if s.name == "checkout saga" and attribute(s, "shop.checkout.id") == checkout_id]
    assert saga.parent is None and attribute(saga, "shop.saga.recovered") is True
    assert [link.context.trace_id for link in saga.links] == [original.get_span_context().trace_id]
    assert saga.context is not None
    resumed = [s for s in trace_of(finished, saga) if s.name.startswith("saga step ")]
    assert {attribute(s, "shop.saga.step") for s in resumed} >= {"authorize_payment", "capture_payment"}
