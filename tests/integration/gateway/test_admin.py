"""The operator's service: trusted callers only; lists what needs an operator, shows steps, resumes a
FAILED saga whose order exists (same keys, charged once), refuses to resume one without an order, and
resolves one by hand with a reason."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import grpc
from google.protobuf import duration_pb2

from payment_svc.__main__ import SPEC as PAYMENT
from service_runtime.channels import MAX_RECONNECT_BACKOFF_SECONDS
from shop.gateway.v1 import admin_service_pb2 as admin_pb
from shop.gateway.v1 import admin_service_pb2_grpc as admin_grpc
from shop.gateway.v1 import gateway_service_pb2 as pb
from shop.gateway.v1 import gateway_service_pb2_grpc as gateway_grpc
from tests.identity import as_customer, as_service
from tests.rpc_errors import expect_failure

from .conftest import FAST_PAYMENT, Shop, StartGateway, start_gateway_process

OPERATOR = as_service("checkoutctl")


async def test_the_admin_service_is_for_trusted_callers_only(start_gateway: StartGateway):
    shop = await start_gateway()
    async with grpc.aio.insecure_channel(shop.gateway_address) as channel:
        admin = admin_grpc.CheckoutAdminServiceStub(channel)
        request = admin_pb.ListCheckoutsRequest(status=pb.CHECKOUT_STATUS_FAILED)
        customer = await expect_failure(admin.ListCheckouts(request, metadata=as_customer("zed")))
        assert (customer.code, customer.reason) == (grpc.StatusCode.PERMISSION_DENIED, "TRUSTED_CALLER_REQUIRED")
        nobody = await expect_failure(admin.ListCheckouts(request))
        assert nobody.code == grpc.StatusCode.UNAUTHENTICATED
        assert (await admin.ListCheckouts(request, metadata=OPERATOR)).checkouts == []


async def test_a_failed_checkout_without_an_order_is_listed_shown_and_resolved_by_hand(start_gateway: StartGateway):
    shop = await start_gateway(ORDER_TARGET="127.0.0.1:1")
    await shop.product("YAK", 5)
    checkout_id = await shop.quoted_checkout("yas", {"YAK": 1})
    await expect_failure(shop.place("yas", checkout_id))
    async with grpc.aio.insecure_channel(shop.gateway_address) as channel:
        admin = admin_grpc.CheckoutAdminServiceStub(channel)

        listed = await admin.ListCheckouts(
            admin_pb.ListCheckoutsRequest(status=pb.CHECKOUT_STATUS_FAILED), metadata=OPERATOR
        )
        assert [c.checkout_id for c in listed.checkouts] == [checkout_id]
        recent = admin_pb.ListCheckoutsRequest(
            status=pb.CHECKOUT_STATUS_FAILED, min_unchanged=duration_pb2.Duration(seconds=3600)
        )
        assert (await admin.ListCheckouts(recent, metadata=OPERATOR)).checkouts == []
        details = await admin.GetCheckoutDetails(
            admin_pb.GetCheckoutDetailsRequest(checkout_id=checkout_id), metadata=OPERATOR
        )
        assert details.checkout.last_failure.step == pb.SAGA_STEP_CREATE_ORDER and not details.HasField("resolution")
        not_retryable = await expect_failure(
            admin.RetryCheckout(admin_pb.RetryCheckoutRequest(checkout_id=checkout_id), metadata=OPERATOR)
        )
        assert not_retryable.reason == "CHECKOUT_NOT_RETRYABLE"

        request = admin_pb.ResolveCheckoutRequest(checkout_id=checkout_id, reason="order service outage, INC-42")
        resolved = await admin.ResolveCheckout(request, metadata=OPERATOR)
        again = await admin.ResolveCheckout(request, metadata=OPERATOR)

    assert resolved.resolution.action == "payment_voided_stock_released" and not resolved.replayed
    assert resolved.resolution.resolved_by == "checkoutctl" and resolved.resolution.reason == request.reason
    assert again.replayed and resolved.checkout.status == pb.CHECKOUT_STATUS_FAILED
    [authorization] = await shop.psp.authorizations()
    assert authorization["status"] == "voided"


async def test_a_saga_that_failed_after_its_order_is_resumed_by_an_operator_and_charged_once(
    shop: Shop, start_service, database_url: str, redis_url: str, redis_prefix: str
):
    # A payment service on a port of our own, so it can be stopped and started again at the same address.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    payment_env = {"GRPC_LISTEN_ADDRESS": f"127.0.0.1:{port}", "PSP_BASE_URL": shop.psp.base_url, **FAST_PAYMENT}
    payment = await start_service(PAYMENT, **payment_env)
    shop.targets["PAYMENT_TARGET"] = payment.address
    await shop.product("ZIP", 5)
    checkout_id = await shop.quoted_checkout("zoe", {"ZIP": 1})
    # The gateway dies once the order exists and the stock is sold; the payment service goes down with it.
    doomed = await start_gateway_process(
        shop, database_url, redis_url, redis_prefix, GATEWAY_FAILPOINT="after:confirm_reservation"
    )
    async with grpc.aio.insecure_channel(doomed.address) as channel:
        shop.gateway = gateway_grpc.CheckoutServiceStub(channel)
        with contextlib.suppress(grpc.aio.AioRpcError):
            await shop.place("zoe", checkout_id, key="zoe-1", timeout=20)
    await doomed.process.wait()
    await payment.stop()

    revived = await start_gateway_process(shop, database_url, redis_url, redis_prefix, SAGA_STEP_MAX_ATTEMPTS="2")
    try:
        async with grpc.aio.insecure_channel(revived.address) as channel:
            shop.gateway = gateway_grpc.CheckoutServiceStub(channel)
            admin = admin_grpc.CheckoutAdminServiceStub(channel)
            failed = await shop.settled("zoe", checkout_id)
            assert failed.status == pb.CHECKOUT_STATUS_FAILED
            assert failed.last_failure.step == pb.SAGA_STEP_CAPTURE_PAYMENT and failed.order_id
            stuck = await admin.ListCheckouts(
                admin_pb.ListCheckoutsRequest(status=pb.CHECKOUT_STATUS_FAILED), metadata=OPERATOR
            )
            assert [c.checkout_id for c in stuck.checkouts] == [checkout_id]

            # A retry while Payment is still down gets a fresh budget of calls (two here), then fails again.
            early = admin_pb.RetryCheckoutRequest(checkout_id=checkout_id, reason="trying before payment is back")
            assert not (await admin.RetryCheckout(early, metadata=OPERATOR)).replayed
            again = await shop.settled("zoe", checkout_id)
            assert again.status == pb.CHECKOUT_STATUS_FAILED
            [capture] = [s for s in again.steps if s.step == pb.SAGA_STEP_CAPTURE_PAYMENT]
            assert capture.attempts == 4, capture

            await start_service(PAYMENT, **payment_env)
            # The gateway's channel to Payment redials within its longest reconnect backoff.
            await asyncio.sleep(MAX_RECONNECT_BACKOFF_SECONDS + 0.5)
            retry = admin_pb.RetryCheckoutRequest(checkout_id=checkout_id, reason="payment service is back")
            resumed = await admin.RetryCheckout(retry, metadata=OPERATOR)
            assert not resumed.replayed
            done = await shop.settled("zoe", checkout_id)
            assert done.status == pb.CHECKOUT_STATUS_COMPLETED, done.last_failure
            assert (await admin.RetryCheckout(retry, metadata=OPERATOR)).replayed
            captures = [s for s in done.steps if s.step == pb.SAGA_STEP_CAPTURE_PAYMENT]
            assert [(s.attempt, s.status) for s in captures] == [(1, pb.SAGA_STEP_STATUS_SUCCEEDED)]
    finally:
        revived.process.terminate()
        await revived.process.wait()
    [authorization] = await shop.psp.authorizations()
    assert authorization["status"] == "captured"
    assert len([op for op in await shop.psp.operations() if op["kind"] == "capture"]) == 1
    assert await shop.invariant_violations() == []
