"""Authorize, capture, void and refund through the service against the sandbox PSP as a real process: every
outcome's status code, reason and final state, with the PSP's own ledger agreeing."""

from __future__ import annotations

import grpc
import pytest

from shop.payment.v1 import payment_service_pb2 as pb
from tests.integration.payment.conftest import TRUSTED, authorize_request, fails, rows, usd
from tests.psp import Psp


async def test_authorize_capture_refund_moves_money_once_and_the_psp_agrees(payment, psp: Psp) -> None:
    authorized = await payment.AuthorizePayment(authorize_request(), metadata=TRUSTED)
    p = authorized.payment
    assert p.status == pb.PAYMENT_STATUS_AUTHORIZED and not authorized.replayed
    assert p.payment_method.type == pb.PAYMENT_METHOD_TYPE_CARD
    assert (p.payment_method.card.brand, p.payment_method.card.last4) == ("visa", "4242")
    assert p.HasField("authorization_expire_time")
    captured = await payment.CapturePayment(
        pb.CapturePaymentRequest(payment_id=p.payment_id, order_id="ord-1", amount=usd(3000), idempotency_key="cap-1"),
        metadata=TRUSTED,
    )
    assert captured.payment.status == pb.PAYMENT_STATUS_CAPTURED
    assert captured.payment.captured_amount.amount_minor == 3000
    assert captured.payment.refundable_amount.amount_minor == 3000
    refunded = await payment.RefundPayment(
        pb.RefundPaymentRequest(
            payment_id=p.payment_id, amount=usd(1000), reason=pb.REFUND_REASON_CUSTOMER_REQUEST, idempotency_key="r-1"
        ),
        metadata=TRUSTED,
    )
    assert refunded.payment.status == pb.PAYMENT_STATUS_PARTIALLY_REFUNDED
    assert refunded.refund.status == pb.REFUND_STATUS_SUCCEEDED
    assert refunded.payment.refundable_amount.amount_minor == 2000
    [held] = await psp.authorizations()
    assert (held["authorization_id"], held["captured_minor"], held["refunded_minor"]) == (p.psp_reference, 3000, 1000)
    assert [(h.from_status, h.to_status) for h in refunded.payment.history] == [
        (pb.PAYMENT_STATUS_UNSPECIFIED, pb.PAYMENT_STATUS_PENDING),
        (pb.PAYMENT_STATUS_PENDING, pb.PAYMENT_STATUS_PROCESSING),
        (pb.PAYMENT_STATUS_PROCESSING, pb.PAYMENT_STATUS_AUTHORIZED),
        (pb.PAYMENT_STATUS_AUTHORIZED, pb.PAYMENT_STATUS_CAPTURED),
        (pb.PAYMENT_STATUS_CAPTURED, pb.PAYMENT_STATUS_PARTIALLY_REFUNDED),
    ]


@pytest.mark.parametrize(
    ("token", "reason", "decline_code"),
    [
        ("tok_decline_insufficient_funds", "INSUFFICIENT_FUNDS", "insufficient_funds"),
        ("tok_decline_expired_card", "CARD_EXPIRED", "expired_card"),
        ("tok_decline_incorrect_cvc", "INCORRECT_CVC", "incorrect_cvc"),
        ("tok_decline_fraud", "FRAUD_SUSPECTED", "fraudulent"),
        ("tok_decline_generic", "CARD_DECLINED", "generic_decline"),
        ("tok_unknown_to_the_psp", "INVALID_PAYMENT_TOKEN", "invalid_token"),
    ],
)
async def test_a_decline_is_failed_precondition_recorded_failed_and_holds_nothing(
    payment, psp: Psp, database_url: str, token: str, reason: str, decline_code: str
) -> None:
    info = await fails(
        payment.AuthorizePayment(authorize_request(token), metadata=TRUSTED), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert info.reason == reason
    [stored] = await rows(database_url, "SELECT * FROM payment.payments")
    assert stored["status"] == "failed" and stored["psp_decline_code"] == decline_code
    assert info.metadata["paymentId"] == stored["payment_id"]
    assert await psp.authorizations() == []
    # a replay answers the same decline without asking the PSP again
    operations = len(await psp.operations())
    again = await fails(
        payment.AuthorizePayment(authorize_request(token), metadata=TRUSTED), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert again.reason == reason and len(await psp.operations()) == operations
    # and the checkout may pay with another card
    retried = await payment.AuthorizePayment(authorize_request(key="auth-2"), metadata=TRUSTED)
    assert retried.payment.status == pb.PAYMENT_STATUS_AUTHORIZED


async def test_untrusted_callers_are_refused(payment) -> None:
    from tests.identity import as_customer

    info = await fails(
        payment.AuthorizePayment(authorize_request(), metadata=as_customer("u1")), grpc.StatusCode.PERMISSION_DENIED
    )
    assert info.reason == "TRUSTED_CALLER_REQUIRED"


async def test_only_payments_in_a_final_state_are_cached_and_the_cache_serves_them(
    payment, psp: Psp, redis_url: str, redis_prefix: str
) -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(redis_url)
    try:
        authorized = await payment.AuthorizePayment(authorize_request(), metadata=TRUSTED)
        payment_id = authorized.payment.payment_id
        await payment.GetPayment(pb.GetPaymentRequest(payment_id=payment_id), metadata=TRUSTED)
        assert [key async for key in client.scan_iter(match=f"{redis_prefix}*")] == []
        voided = await payment.VoidPayment(pb.VoidPaymentRequest(payment_id=payment_id, reason="x"), metadata=TRUSTED)
        [key] = [key async for key in client.scan_iter(match=f"{redis_prefix}*")]
        raw = await client.get(key)
        assert isinstance(raw, bytes) and pb.Payment.FromString(raw) == voided.payment
        await client.delete(key)  # a missing entry is only a miss
        again = await payment.GetPayment(pb.GetPaymentRequest(payment_id=payment_id), metadata=TRUSTED)
        assert again.payment == voided.payment
    finally:
        await client.aclose()


async def test_a_slow_psp_past_the_per_call_timeout_is_recovered_with_the_same_key_inside_the_deadline(
    payment, psp: Psp
) -> None:
    # tok_slow_900 answers after 0.9 s; PSP_TIMEOUT_SECONDS is 0.5 here, the caller allows 3 s
    authorized = await payment.AuthorizePayment(authorize_request("tok_slow_900"), metadata=TRUSTED, timeout=3)
    assert authorized.payment.status == pb.PAYMENT_STATUS_AUTHORIZED
    [held] = await psp.authorizations()
    assert held["authorization_id"] == authorized.payment.psp_reference
    assert len(await psp.operations()) == 1
