"""Who may call the gateway, and how often: signed-in customers only, each with a token bucket in Redis."""

from __future__ import annotations

import asyncio

import grpc

from shop.gateway.v1 import gateway_service_pb2 as pb
from tests.identity import as_customer, as_session
from tests.rpc_errors import expect_failure

from .conftest import StartGateway


async def test_a_user_past_the_bucket_gets_rate_limited_with_a_retry_delay_and_others_do_not(
    start_gateway: StartGateway,
):
    shop = await start_gateway(RATE_LIMIT_CAPACITY="3", RATE_LIMIT_PER_SECOND="2")
    assert shop.gateway is not None
    cancel = pb.CancelCheckoutRequest(checkout_id="chk_nope")

    answers = [await expect_failure(shop.gateway.CancelCheckout(cancel, metadata=as_customer("ola"))) for _ in range(4)]

    assert [answer.reason for answer in answers] == ["CHECKOUT_NOT_FOUND"] * 3 + ["RATE_LIMITED"]
    limited = answers[-1]
    assert limited.code == grpc.StatusCode.RESOURCE_EXHAUSTED and limited.metadata == {"bucket": "checkout"}
    assert limited.retry_delay_seconds is not None and 0 < limited.retry_delay_seconds <= 0.5
    other = await expect_failure(shop.gateway.CancelCheckout(cancel, metadata=as_customer("pia")))
    assert other.reason == "CHECKOUT_NOT_FOUND"
    await asyncio.sleep(limited.retry_delay_seconds)
    refilled = await expect_failure(shop.gateway.CancelCheckout(cancel, metadata=as_customer("ola")))
    assert refilled.reason == "CHECKOUT_NOT_FOUND"


async def test_concurrent_calls_never_take_more_tokens_than_the_bucket_holds(start_gateway: StartGateway):
    shop = await start_gateway(RATE_LIMIT_CAPACITY="5", RATE_LIMIT_PER_SECOND="0.01")
    assert shop.gateway is not None
    cancel = pb.CancelCheckoutRequest(checkout_id="chk_nope")

    answers = await asyncio.gather(
        *(expect_failure(shop.gateway.CancelCheckout(cancel, metadata=as_customer("quin"))) for _ in range(20))
    )

    assert sorted(answer.reason for answer in answers).count("CHECKOUT_NOT_FOUND") == 5


async def test_an_anonymous_session_must_sign_in_and_no_token_is_unauthenticated(gateway):
    assert gateway.gateway is not None
    request = pb.GetCheckoutRequest(checkout_id="chk_1")
    session = await expect_failure(gateway.gateway.GetCheckout(request, metadata=as_session("s1")))
    assert (session.code, session.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SIGN_IN_REQUIRED")
    nobody = await expect_failure(gateway.gateway.GetCheckout(request))
    assert nobody.code == grpc.StatusCode.UNAUTHENTICATED
