"""Exactly once, proven against the PSP's own ledger: concurrent duplicates, lost answers settled by the
reconciler, a timed-out authorization cancelled before it arrives, over-refunds, replays."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc

from shop.payment.v1 import payment_service_pb2 as pb
from tests.integration.payment.conftest import TRUSTED, authorize_request, fails, rows, usd
from tests.psp import Psp


async def eventually(check: Any, *, seconds: float = 15.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def get(payment, payment_id: str) -> pb.Payment:
    return (await payment.GetPayment(pb.GetPaymentRequest(payment_id=payment_id), metadata=TRUSTED)).payment


async def authorized_and_captured(payment, token: str = "tok_visa", minor: int = 5000) -> pb.Payment:
    authorized = await payment.AuthorizePayment(authorize_request(token, minor=minor), metadata=TRUSTED)
    captured = await payment.CapturePayment(
        pb.CapturePaymentRequest(payment_id=authorized.payment.payment_id, order_id="ord-1", idempotency_key="cap-1"),
        metadata=TRUSTED,
    )
    return captured.payment


async def test_twenty_concurrent_authorizations_with_one_key_authorize_once(payment, psp: Psp) -> None:
    async def authorize_until_answered() -> tuple[str, int]:
        aborted = 0
        while True:
            try:
                response = await payment.AuthorizePayment(authorize_request(), metadata=TRUSTED, timeout=10)
                return response.payment.payment_id, aborted
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.ABORTED, error
                aborted += 1
                await asyncio.sleep(0.05)

    answers = await asyncio.gather(*(authorize_until_answered() for _ in range(20)))
    assert len({payment_id for payment_id, _ in answers}) == 1
    [held] = await psp.authorizations()
    assert held["status"] == "authorized"
    assert [op["kind"] for op in await psp.operations()] == ["authorize"]


async def test_a_lost_authorization_answer_is_settled_by_the_reconciler_from_the_psp(
    payment, psp: Psp, database_url: str
) -> None:
    info = await fails(
        payment.AuthorizePayment(authorize_request("tok_drop"), metadata=TRUSTED, timeout=2),
        grpc.StatusCode.UNAVAILABLE,
    )
    assert info.reason == "PAYMENT_OUTCOME_UNKNOWN" and info.retry_delay_seconds
    payment_id = info.metadata["paymentId"]

    async def settled() -> pb.Payment | None:
        found = await get(payment, payment_id)
        return found if found.status == pb.PAYMENT_STATUS_AUTHORIZED else None

    found = await eventually(settled)
    [held] = await psp.authorizations()
    assert found.psp_reference == held["authorization_id"] and held["status"] == "authorized"
    assert [h.cause for h in found.history][-1] == "reconciler: authorize"
    # the event keeps the PSP's answer
    [event] = await rows(database_url, "SELECT psp_response FROM payment.payment_events WHERE to_status = 'authorized'")
    assert event["psp_response"]["id"] == held["authorization_id"]


async def test_a_lost_capture_answer_is_settled_by_the_reconciler(payment, psp: Psp) -> None:
    authorized = await payment.AuthorizePayment(authorize_request("tok_drop_capture"), metadata=TRUSTED)
    payment_id = authorized.payment.payment_id
    capture = pb.CapturePaymentRequest(payment_id=payment_id, order_id="ord-1", amount=usd(4000), idempotency_key="c1")
    info = await fails(payment.CapturePayment(capture, metadata=TRUSTED, timeout=2), grpc.StatusCode.UNAVAILABLE)
    assert info.reason == "PAYMENT_OUTCOME_UNKNOWN"

    async def settled() -> pb.Payment | None:
        found = await get(payment, payment_id)
        return found if found.status == pb.PAYMENT_STATUS_CAPTURED else None

    found = await eventually(settled)
    assert found.captured_amount.amount_minor == 4000 and found.order_id == "ord-1"
    [held] = await psp.authorizations()
    assert (held["status"], held["captured_minor"]) == ("captured", 4000)
    replay = await payment.CapturePayment(capture, metadata=TRUSTED)
    assert replay.replayed and replay.payment.status == pb.PAYMENT_STATUS_CAPTURED
    assert [op["kind"] for op in await psp.operations()] == ["authorize", "capture"]


async def test_a_lost_refund_answer_is_settled_by_the_reconciler(payment, psp: Psp) -> None:
    captured = await authorized_and_captured(payment, "tok_drop_refund")
    refund = pb.RefundPaymentRequest(
        payment_id=captured.payment_id, amount=usd(1500), reason=pb.REFUND_REASON_ORDER_CANCELLED, idempotency_key="r1"
    )
    info = await fails(payment.RefundPayment(refund, metadata=TRUSTED, timeout=2), grpc.StatusCode.UNAVAILABLE)
    assert info.reason == "PAYMENT_OUTCOME_UNKNOWN" and info.metadata["refundId"]
    in_flight = await get(payment, captured.payment_id)
    assert in_flight.refundable_amount.amount_minor == 3500  # the refund at the PSP already counts

    async def settled() -> pb.Payment | None:
        found = await get(payment, captured.payment_id)
        return found if found.status == pb.PAYMENT_STATUS_PARTIALLY_REFUNDED else None

    found = await eventually(settled)
    assert [r.status for r in found.refunds] == [pb.REFUND_STATUS_SUCCEEDED]
    assert found.refunded_amount.amount_minor == 1500
    assert [r["amount_minor"] for r in await psp.refunds()] == [1500]


async def test_an_authorization_the_psp_never_received_fails_and_its_key_is_fenced(payment, psp: Psp) -> None:
    info = await fails(
        payment.AuthorizePayment(authorize_request("tok_psp_error"), metadata=TRUSTED, timeout=2),
        grpc.StatusCode.UNAVAILABLE,
    )
    payment_id = info.metadata["paymentId"]

    async def settled() -> pb.Payment | None:
        found = await get(payment, payment_id)
        return found if found.status == pb.PAYMENT_STATUS_FAILED else None

    found = await eventually(settled)
    assert found.failure.reason == pb.PAYMENT_FAILURE_REASON_PROCESSOR_DECLINED
    assert await psp.authorizations() == []
    assert [op["state"] for op in await psp.operations()] == ["fenced"]


async def test_void_by_checkout_and_key_before_the_authorization_arrives_refuses_it(payment, psp: Psp) -> None:
    void = pb.VoidPaymentRequest(
        reason="authorize_timed_out", checkout_id="chk-1", authorization_idempotency_key="auth-1"
    )
    first = await payment.VoidPayment(void, metadata=TRUSTED)
    assert first.cancelled_before_authorization and not first.HasField("payment") and not first.replayed
    again = await payment.VoidPayment(void, metadata=TRUSTED)
    assert again.cancelled_before_authorization and again.replayed
    info = await fails(
        payment.AuthorizePayment(authorize_request(), metadata=TRUSTED), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert info.reason == "AUTHORIZATION_CANCELLED"
    assert info.metadata == {"checkoutId": "chk-1", "idempotencyKey": "auth-1"}
    assert await psp.authorizations() == [] and await psp.operations() == []


async def test_a_timed_out_authorization_is_voided_by_key_once_the_reconciler_settles_it(payment, psp: Psp) -> None:
    # the PSP holds tok_hang for 2 s; the service stops waiting inside the caller's 1 s deadline
    info = await fails(
        payment.AuthorizePayment(authorize_request("tok_hang"), metadata=TRUSTED, timeout=1),
        grpc.StatusCode.UNAVAILABLE,
    )
    assert info.reason == "PAYMENT_OUTCOME_UNKNOWN"
    void = pb.VoidPaymentRequest(
        reason="authorize_timed_out", checkout_id="chk-1", authorization_idempotency_key="auth-1"
    )

    async def voided() -> pb.VoidPaymentResponse | None:
        try:
            response = await payment.VoidPayment(void, metadata=TRUSTED)
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE  # PAYMENT_OUTCOME_UNKNOWN until settled
            return None
        return response

    response = await eventually(voided)
    assert response.payment.status == pb.PAYMENT_STATUS_VOIDED
    [held] = await psp.authorizations()
    assert held["status"] == "voided"


async def test_over_refunds_sequential_and_concurrent_never_exceed_the_capture(payment, psp: Psp) -> None:
    captured = await authorized_and_captured(payment, minor=1000)

    def refund(key: str, minor: int) -> pb.RefundPaymentRequest:
        return pb.RefundPaymentRequest(
            payment_id=captured.payment_id, amount=usd(minor), reason=pb.REFUND_REASON_OTHER, idempotency_key=key
        )

    await payment.RefundPayment(refund("r0", 400), metadata=TRUSTED)
    info = await fails(payment.RefundPayment(refund("r1", 601), metadata=TRUSTED), grpc.StatusCode.FAILED_PRECONDITION)
    assert info.reason == "REFUND_EXCEEDS_CAPTURED" and info.metadata["refundableMinor"] == "600"
    results = await asyncio.gather(
        *(payment.RefundPayment(refund(f"c{i}", 250), metadata=TRUSTED) for i in range(6)), return_exceptions=True
    )
    succeeded = [r for r in results if isinstance(r, pb.RefundPaymentResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(succeeded) == 2 and len(refused) == 4
    assert all(e.code() == grpc.StatusCode.FAILED_PRECONDITION for e in refused)
    assert sum(r["amount_minor"] for r in await psp.refunds()) == 900
    final = await get(payment, captured.payment_id)
    assert final.refunded_amount.amount_minor == 900 and final.refundable_amount.amount_minor == 100


async def test_a_declined_refund_is_recorded_failed_and_names_the_refund(payment, psp: Psp) -> None:
    captured = await authorized_and_captured(payment, "tok_refund_decline")
    request = pb.RefundPaymentRequest(
        payment_id=captured.payment_id, reason=pb.REFUND_REASON_OTHER, idempotency_key="r1"
    )
    info = await fails(payment.RefundPayment(request, metadata=TRUSTED), grpc.StatusCode.FAILED_PRECONDITION)
    assert info.reason == "REFUND_DECLINED" and info.metadata["refundId"].startswith("re_")
    replay = await fails(payment.RefundPayment(request, metadata=TRUSTED), grpc.StatusCode.FAILED_PRECONDITION)
    assert replay.metadata == info.metadata
    found = await get(payment, captured.payment_id)
    assert [r.status for r in found.refunds] == [pb.REFUND_STATUS_FAILED]
    assert found.status == pb.PAYMENT_STATUS_CAPTURED and await psp.refunds() == []


async def test_capture_after_void_is_refused_and_void_after_capture_too(payment, psp: Psp) -> None:
    authorized = await payment.AuthorizePayment(authorize_request(), metadata=TRUSTED)
    payment_id = authorized.payment.payment_id
    voided = await payment.VoidPayment(pb.VoidPaymentRequest(payment_id=payment_id, reason="cancel"), metadata=TRUSTED)
    assert voided.payment.status == pb.PAYMENT_STATUS_VOIDED
    info = await fails(
        payment.CapturePayment(
            pb.CapturePaymentRequest(payment_id=payment_id, order_id="o1", idempotency_key="c1"), metadata=TRUSTED
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert info.reason == "PAYMENT_NOT_AUTHORIZED" and info.metadata["status"] == "PAYMENT_STATUS_VOIDED"
    [held] = await psp.authorizations()
    assert held["status"] == "voided" and held["captured_minor"] == 0
    second = await payment.AuthorizePayment(authorize_request(key="auth-2"), metadata=TRUSTED)
    await payment.CapturePayment(
        pb.CapturePaymentRequest(payment_id=second.payment.payment_id, order_id="o2", idempotency_key="c2"),
        metadata=TRUSTED,
    )
    info = await fails(
        payment.VoidPayment(pb.VoidPaymentRequest(payment_id=second.payment.payment_id, reason="x"), metadata=TRUSTED),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert info.reason == "PAYMENT_ALREADY_CAPTURED"


async def test_replays_of_every_mutating_rpc_return_the_first_answer(payment, psp: Psp) -> None:
    first = await payment.AuthorizePayment(authorize_request(), metadata=TRUSTED)
    replay = await payment.AuthorizePayment(authorize_request(), metadata=TRUSTED)
    assert replay.replayed and replay.payment.payment_id == first.payment.payment_id
    reused = await fails(
        payment.AuthorizePayment(authorize_request(minor=1), metadata=TRUSTED), grpc.StatusCode.ALREADY_EXISTS
    )
    assert reused.reason == "IDEMPOTENCY_KEY_REUSED"
    payment_id = first.payment.payment_id
    capture = pb.CapturePaymentRequest(payment_id=payment_id, order_id="o1", idempotency_key="c1")
    captured = await payment.CapturePayment(capture, metadata=TRUSTED)
    again = await payment.CapturePayment(capture, metadata=TRUSTED)
    assert again.replayed and again.payment.capture_time == captured.payment.capture_time
    other_order = await fails(
        payment.CapturePayment(
            pb.CapturePaymentRequest(payment_id=payment_id, order_id="o2", idempotency_key="c1"), metadata=TRUSTED
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert other_order.reason == "IDEMPOTENCY_KEY_REUSED"
    refund = pb.RefundPaymentRequest(
        payment_id=payment_id, amount=usd(100), reason=pb.REFUND_REASON_OTHER, idempotency_key="r1"
    )
    refunded = await payment.RefundPayment(refund, metadata=TRUSTED)
    refunded_again = await payment.RefundPayment(refund, metadata=TRUSTED)
    assert refunded_again.replayed and refunded_again.refund.refund_id == refunded.refund.refund_id
    # void: a second authorization, voided twice
    await payment.RefundPayment(
        pb.RefundPaymentRequest(payment_id=payment_id, reason=pb.REFUND_REASON_OTHER, idempotency_key="r2"),
        metadata=TRUSTED,
    )
    second = await payment.AuthorizePayment(authorize_request(checkout="chk-2", key="auth-2"), metadata=TRUSTED)
    void = pb.VoidPaymentRequest(payment_id=second.payment.payment_id, reason="cancel")
    await payment.VoidPayment(void, metadata=TRUSTED)
    void_again = await payment.VoidPayment(void, metadata=TRUSTED)
    assert void_again.replayed and void_again.payment.status == pb.PAYMENT_STATUS_VOIDED
    kinds = sorted(op["kind"] for op in await psp.operations())
    assert kinds == ["authorize", "authorize", "capture", "refund", "refund", "void"]


async def test_an_authorization_that_lapses_is_expired_by_the_reconciler(payment, psp: Psp) -> None:
    authorized = await payment.AuthorizePayment(authorize_request("tok_lapse_1"), metadata=TRUSTED)

    async def expired() -> pb.Payment | None:
        found = await get(payment, authorized.payment.payment_id)
        return found if found.status == pb.PAYMENT_STATUS_EXPIRED else None

    await eventually(expired)
    info = await fails(
        payment.CapturePayment(
            pb.CapturePaymentRequest(payment_id=authorized.payment.payment_id, order_id="o1", idempotency_key="c"),
            metadata=TRUSTED,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert info.reason == "AUTHORIZATION_EXPIRED"
    # the checkout is free for another payment
    await payment.AuthorizePayment(authorize_request(key="auth-2"), metadata=TRUSTED)


async def test_capture_of_a_lapsed_authorization_expires_it(start_payment, psp: Psp) -> None:
    payment = await start_payment(RECONCILE_INTERVAL_SECONDS="600")
    authorized = await payment.AuthorizePayment(authorize_request("tok_lapse_1"), metadata=TRUSTED)
    await asyncio.sleep(1.2)
    info = await fails(
        payment.CapturePayment(
            pb.CapturePaymentRequest(payment_id=authorized.payment.payment_id, order_id="o1", idempotency_key="c"),
            metadata=TRUSTED,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert info.reason == "AUTHORIZATION_EXPIRED"
    assert (await get(payment, authorized.payment.payment_id)).status == pb.PAYMENT_STATUS_EXPIRED


async def test_a_capture_that_never_reached_the_psp_is_fenced_and_a_new_capture_succeeds(
    payment, psp: Psp, database_url: str
) -> None:
    from payment_svc.repository import PaymentStatements
    from service_runtime.database import Database
    from service_runtime.sql import UnitOfWork

    authorized = await payment.AuthorizePayment(authorize_request(), metadata=TRUSTED)
    payment_id = authorized.payment.payment_id
    # A replica crashed after recording its capture and before sending it: only our side knows of it.
    database = Database(database_url, min_size=1, max_size=1, statement_timeout_ms=5000, application_name="test")
    await database.open()
    try:
        work = UnitOfWork(database, PaymentStatements)
        await work.run(lambda tx: tx.begin_pending(payment_id, "capture", grace=0, order_id="ord-1", amount_minor=5000))
    finally:
        await database.close()

    async def fenced() -> bool:
        return [op["state"] for op in await psp.operations() if op["idempotency_key"].endswith(":capture:1")] == [
            "fenced"
        ]

    await eventually(fenced)

    async def dropped() -> bool:
        [row] = await rows(database_url, "SELECT pending_operation FROM payment.payments")
        return row["pending_operation"] is None

    await eventually(dropped)
    captured = await payment.CapturePayment(
        pb.CapturePaymentRequest(payment_id=payment_id, order_id="ord-1", idempotency_key="c1"), metadata=TRUSTED
    )
    assert captured.payment.status == pb.PAYMENT_STATUS_CAPTURED
    [held] = await psp.authorizations()
    assert (held["status"], held["captured_minor"]) == ("captured", 5000)
    keys = sorted(op["idempotency_key"].split(":", 1)[1] for op in await psp.operations())
    assert keys == ["authorize", "capture:1", "capture:2"]
