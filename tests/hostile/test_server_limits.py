"""The limits every server applies to an abusive client (service_runtime.server): a message larger than
`MAX_MESSAGE_BYTES` or metadata larger than `MAX_METADATA_BYTES` is refused cleanly, writes nothing and
leaves the server serving; a client that pings faster than allowed is sent away (GOAWAY too_many_pings)
while a polite client on the same server is not."""

from __future__ import annotations

import asyncio

import grpc

from inventory_svc.__main__ import SPEC as INVENTORY
from service_runtime.server import MAX_MESSAGE_BYTES, server_options
from shop.inventory.v1 import inventory_service_pb2 as pb
from shop.inventory.v1 import inventory_service_pb2_grpc as pb_grpc
from shop.type.v1 import money_pb2
from tests.hostile.state import snapshot
from tests.identity import as_service

TRUSTED = as_service("gateway")


async def test_a_10_mb_message_is_resource_exhausted_writes_nothing_and_the_server_keeps_serving(
    start_service, database_url, redis_url, redis_prefix
):
    inventory = await start_service(INVENTORY)
    before = await snapshot(database_url, redis_url, redis_prefix)
    huge = pb.UpsertProductRequest(
        sku="HUGE-1",
        name="x" * (10 * 1024 * 1024),
        price=money_pb2.Money(currency_code="USD", amount_minor=100),
    )
    assert huge.ByteSize() > MAX_MESSAGE_BYTES
    async with grpc.aio.insecure_channel(inventory.address) as channel:
        stub = pb_grpc.InventoryServiceStub(channel)
        try:
            await stub.UpsertProduct(huge, metadata=TRUSTED, timeout=10)
        except grpc.aio.AioRpcError as error:
            refused = error
        else:
            raise AssertionError("a 10 MB request was accepted")
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "HUGE" not in (refused.details() or "")

        oversized_metadata = (*TRUSTED, ("x-padding", "p" * 64 * 1024))
        try:
            await stub.GetProduct(pb.GetProductRequest(sku="HUGE-1"), metadata=oversized_metadata, timeout=10)
        except grpc.aio.AioRpcError as error:
            too_much = error
        else:
            raise AssertionError("64 KiB of metadata was accepted")
        assert too_much.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL), too_much
        # Either way nothing reached a handler: the transport refused the headers (grpc-core reports an
        # oversized header block as INTERNAL or RESOURCE_EXHAUSTED depending on where it is cut).

        assert await snapshot(database_url, redis_url, redis_prefix) == before
        small = pb.UpsertProductRequest(
            sku="SMALL-1", name="Small", price=money_pb2.Money(currency_code="USD", amount_minor=100)
        )
        answer = await stub.UpsertProduct(small, metadata=TRUSTED, timeout=10)
    assert answer.product.sku == "SMALL-1"


async def test_a_client_that_pings_too_often_is_sent_away_and_a_polite_one_is_not(start_service):
    inventory = await start_service(INVENTORY)
    abusive_options = [
        ("grpc.keepalive_time_ms", 50),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    request = pb.GetProductRequest(sku="NONE")
    async with (
        grpc.aio.insecure_channel(inventory.address, options=abusive_options) as abusive,
        grpc.aio.insecure_channel(inventory.address) as polite,
    ):
        for channel in (abusive, polite):
            try:
                await pb_grpc.InventoryServiceStub(channel).GetProduct(request, metadata=TRUSTED, timeout=5)
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.NOT_FOUND
        # The server allows one ping per 10 s on an idle connection and two strikes; grpc-core's client
        # clamps its keepalive to about 1 s, so the third strike comes within a few seconds.
        for _ in range(150):
            if abusive.get_state() != grpc.ChannelConnectivity.READY:
                break
            await asyncio.sleep(0.1)
        assert abusive.get_state() != grpc.ChannelConnectivity.READY
        assert polite.get_state() == grpc.ChannelConnectivity.READY


async def test_one_connection_never_has_more_streams_running_than_the_limit():
    """300 calls at once on one channel to a server limited to 64 streams a connection (the default,
    GRPC_MAX_CONCURRENT_STREAMS, is 4096: more than a test can put in flight): at most 64 run at a time;
    a stream past the limit is refused (RST_STREAM REFUSED_STREAM: UNAVAILABLE, never processed, so safe
    to retry), and the others are answered."""
    limit = 64
    running = peak = 0

    async def slow(request: bytes, context: object) -> bytes:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.3)
        running -= 1
        return request

    server = grpc.aio.server(options=server_options(limit))
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(slow)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("shop.test.v1.Slow", {"Call": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/shop.test.v1.Slow/Call")
            answers = await asyncio.gather(*(call(b"x", timeout=30) for _ in range(300)), return_exceptions=True)
    finally:
        await server.stop(0)
    refused = [answer for answer in answers if isinstance(answer, BaseException)]
    assert all(isinstance(error, grpc.aio.AioRpcError) for error in refused), refused[:3]
    assert {error.code() for error in refused if isinstance(error, grpc.aio.AioRpcError)} <= {
        grpc.StatusCode.UNAVAILABLE
    }
    assert answers.count(b"x") >= limit
    assert 1 < peak <= limit
