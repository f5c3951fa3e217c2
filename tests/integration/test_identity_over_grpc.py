"""Identity across a real gRPC hop: the runtime's channels make a service a trusted caller, a shopper's
bearer token makes a customer, and a bad token is refused before any handler runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import jwt
import pytest

from service_runtime.channels import Channels
from service_runtime.identity import ServiceTokens, Verifier, current_caller, require_trusted
from service_runtime.inbound import Inbound
from service_runtime.settings import CommonSettings, EnvReader
from shop.inventory.v1 import inventory_service_pb2 as pb
from tests.rpc_errors import expect_failure

SETTINGS = CommonSettings.from_env(EnvReader({}), service_name="gateway", default_port=0)
handled: list[str] = []


async def whoami(request: pb.GetProductRequest, context: Any) -> pb.GetProductResponse:
    caller = current_caller()
    handled.append(caller.kind.value)
    if request.sku == "trusted-only":
        require_trusted()
    return pb.GetProductResponse(product=pb.Product(sku=caller.kind.value, name=caller.subject))


@pytest.fixture
async def address() -> AsyncIterator[str]:
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(
        whoami,
        request_deserializer=pb.GetProductRequest.FromString,
        response_serializer=pb.GetProductResponse.SerializeToString,
    )
    # As a service registers its methods (service_runtime.inbound): identity inside the error mapping.
    Inbound(domain="test.shop", verifier=Verifier(SETTINGS.identity)).registrar(server).add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("shop.test.v1.Who", {"Am": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(0)


def call(channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable[pb.GetProductRequest, pb.GetProductResponse]:
    return channel.unary_unary(
        "/shop.test.v1.Who/Am",
        request_serializer=pb.GetProductRequest.SerializeToString,
        response_deserializer=pb.GetProductResponse.FromString,
    )


def bearer(**claims: Any) -> tuple[tuple[str, str]]:
    claims = {"iss": SETTINGS.auth_jwt_issuer, "aud": SETTINGS.auth_jwt_audience, "exp": 2_000_000_000, **claims}
    token = jwt.encode(claims, SETTINGS.auth_jwt_keys[0], algorithm=SETTINGS.auth_jwt_algorithm)
    return (("authorization", f"Bearer {token}"),)


async def test_a_runtime_channel_makes_the_caller_a_trusted_service(address):
    channels = Channels(tokens=ServiceTokens(SETTINGS.identity))
    try:
        answer = await call(channels.get(address))(pb.GetProductRequest(sku="trusted-only"), timeout=5)
    finally:
        await channels.close()
    assert (answer.product.sku, answer.product.name) == ("service", "gateway")


async def test_a_shoppers_token_makes_a_customer_or_a_session_and_not_a_trusted_caller(address):
    async with grpc.aio.insecure_channel(address) as channel:
        customer = await call(channel)(pb.GetProductRequest(sku="x"), metadata=bearer(sub="alice"), timeout=5)
        session = await call(channel)(pb.GetProductRequest(sku="x"), metadata=bearer(sid="s-1"), timeout=5)
        refused = await expect_failure(
            call(channel)(pb.GetProductRequest(sku="trusted-only"), metadata=bearer(sub="alice"), timeout=5)
        )
        nobody = await expect_failure(call(channel)(pb.GetProductRequest(sku="trusted-only"), timeout=5))
    assert (customer.product.sku, customer.product.name) == ("customer", "alice")
    assert (session.product.sku, session.product.name) == ("session", "s-1")
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "TRUSTED_CALLER_REQUIRED")
    assert (nobody.code, nobody.reason) == (grpc.StatusCode.UNAUTHENTICATED, "AUTH_TOKEN_MISSING")


async def test_a_bad_token_is_unauthenticated_before_the_handler_runs(address):
    handled.clear()
    async with grpc.aio.insecure_channel(address) as channel:
        expired = await expect_failure(
            call(channel)(pb.GetProductRequest(sku="x"), metadata=bearer(sub="a", exp=1), timeout=5)
        )
        forged = await expect_failure(
            call(channel)(pb.GetProductRequest(sku="x"), metadata=(("x-shop-service-token", "forged"),), timeout=5)
        )
    assert (expired.code, expired.reason) == (grpc.StatusCode.UNAUTHENTICATED, "AUTH_TOKEN_EXPIRED")
    assert (forged.code, forged.reason) == (grpc.StatusCode.UNAUTHENTICATED, "AUTH_TOKEN_INVALID")
    assert handled == []
