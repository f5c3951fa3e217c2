"""The operator's service: trusted callers only; lists what needs an operator, shows steps, refuses to
resume a FAILED saga without an order, resolves one by hand with a reason."""

from __future__ import annotations

import grpc
from google.protobuf import duration_pb2

from shop.gateway.v1 import admin_service_pb2 as admin_pb
from shop.gateway.v1 import admin_service_pb2_grpc as admin_grpc
from shop.gateway.v1 import gateway_service_pb2 as pb
from tests.identity import as_customer, as_service
from tests.rpc_errors import expect_failure

from .conftest import StartGateway

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
