"""The runtime's cross-cutting parts across two real hops: a relay server calls inventory.

- A downstream error that escapes a handler reaches the original caller with its code and rich details.
- An unexpected exception answers INTERNAL, never UNKNOWN.
- The caller's deadline bounds the downstream call.
- One trace spans both hops and the database call.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from inventory_svc.__main__ import SPEC
from service_runtime.channels import Channels, outbound_timeout
from service_runtime.inbound import Inbound
from shop.inventory.v1 import inventory_service_pb2 as pb
from shop.inventory.v1 import inventory_service_pb2_grpc as pb_grpc
from tests.rpc_errors import expect_failure


@pytest.fixture
async def relay(start_service):
    """A server with the runtime's inbound wrapper (service_runtime.inbound) whose handlers call the
    inventory service."""
    inventory = await start_service(SPEC)
    channels = Channels()
    stub = pb_grpc.InventoryServiceStub(channels.get(inventory.address))

    async def get(request: pb.GetProductRequest, context: grpc.aio.ServicerContext) -> pb.GetProductResponse:
        return await stub.GetProduct(request, timeout=outbound_timeout(context, cap=2.0))

    async def crash(request: pb.GetProductRequest, context: grpc.aio.ServicerContext) -> pb.GetProductResponse:
        raise RuntimeError("a bug")

    async def slow(request: pb.GetProductRequest, context: grpc.aio.ServicerContext) -> pb.GetProductResponse:
        await asyncio.sleep(0.3)
        return await stub.GetProduct(request, timeout=outbound_timeout(context, cap=2.0))

    async def hang(request: pb.GetProductRequest, context: grpc.aio.ServicerContext) -> pb.GetProductResponse:
        await asyncio.sleep(30)
        return pb.GetProductResponse()

    def handler(function):
        return grpc.unary_unary_rpc_method_handler(
            function,
            request_deserializer=pb.GetProductRequest.FromString,
            response_serializer=pb.GetProductResponse.SerializeToString,
        )

    server = grpc.aio.server()
    # As a service registers its methods: each wrapped once with tracing, metrics and the error mapping.
    Inbound(domain="relay.test", verifier=None).registrar(server).add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Relay",
                {"Get": handler(get), "Crash": handler(crash), "Slow": handler(slow), "Hang": handler(hang)},
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")

    def method(name: str):
        return channel.unary_unary(
            f"/test.Relay/{name}",
            request_serializer=pb.GetProductRequest.SerializeToString,
            response_deserializer=pb.GetProductResponse.FromString,
        )

    method.address = f"127.0.0.1:{port}"  # type: ignore[attr-defined]
    yield method
    await channel.close()
    await server.stop(0)
    await channels.close()


async def test_downstream_error_reaches_the_caller_with_its_code_and_details(relay):
    failure = await expect_failure(relay("Get")(pb.GetProductRequest(sku="missing"), timeout=5))

    assert failure.code == grpc.StatusCode.NOT_FOUND
    assert (failure.reason, failure.domain) == ("PRODUCT_NOT_FOUND", "inventory.shop")


async def test_unexpected_exception_answers_internal_not_unknown(relay):
    failure = await expect_failure(relay("Crash")(pb.GetProductRequest(sku="x"), timeout=5))

    assert failure.code == grpc.StatusCode.INTERNAL
    assert "a bug" not in failure.message  # internals stay in the log


async def test_the_callers_deadline_bounds_the_downstream_call(relay):
    failure = await expect_failure(relay("Slow")(pb.GetProductRequest(sku="x"), timeout=0.2))

    assert failure.code == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_one_trace_covers_both_hops_and_the_database(relay):
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[attr-defined]

    await expect_failure(relay("Get")(pb.GetProductRequest(sku="traced"), timeout=5))

    spans = exporter.get_finished_spans()
    relay_span = next(s for s in spans if s.name == "/test.Relay/Get" and s.kind == trace.SpanKind.SERVER)
    inventory_span = next(
        s for s in spans if s.name.endswith("InventoryService/GetProduct") and s.kind == trace.SpanKind.SERVER
    )
    trace_id = relay_span.context.trace_id
    assert inventory_span.context.trace_id == trace_id
    in_trace = [s for s in spans if s.context.trace_id == trace_id]
    assert any(s.attributes and s.attributes.get("db.system") == "postgresql" for s in in_trace), [
        s.name for s in in_trace
    ]


async def test_a_call_without_a_timeout_still_gets_the_channels_default_deadline(relay):
    channels = Channels(default_timeout_seconds=0.3)  # the way services open channels
    try:
        target = relay.address
        hang = channels.get(target).unary_unary(
            "/test.Relay/Hang",
            request_serializer=pb.GetProductRequest.SerializeToString,
            response_deserializer=pb.GetProductResponse.FromString,
        )
        started = asyncio.get_running_loop().time()
        failure = await expect_failure(hang(pb.GetProductRequest(sku="x")))
        elapsed = asyncio.get_running_loop().time() - started
    finally:
        await channels.close()

    assert failure.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < 2


async def test_a_call_its_caller_abandons_is_recorded_as_deadline_exceeded_or_cancelled_not_unknown(relay):
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[attr-defined]
    hang = relay("Hang")

    failure = await expect_failure(hang(pb.GetProductRequest(sku="deadline"), timeout=0.3))
    assert failure.code == grpc.StatusCode.DEADLINE_EXCEEDED
    call = hang(pb.GetProductRequest(sku="cancelled"))  # no deadline: the server sees no time remaining
    await asyncio.sleep(0.3)  # the handler is running
    call.cancel()

    def served_codes() -> list[object]:
        return [
            (s.attributes or {}).get("rpc.grpc.status_code")
            for s in exporter.get_finished_spans()
            if s.name == "/test.Relay/Hang" and s.kind == trace.SpanKind.SERVER
        ]

    for _ in range(50):  # each server span ends once gRPC has cancelled its handler
        if len(served_codes()) == 2:
            break
        await asyncio.sleep(0.1)
    assert sorted(served_codes()) == [  # type: ignore[type-var]
        grpc.StatusCode.CANCELLED.value[0],
        grpc.StatusCode.DEADLINE_EXCEEDED.value[0],
    ]
