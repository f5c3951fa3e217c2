"""The failure table: each failure leaves the documented final state, with each compensation applied
once and the invariants (checked by the fixture after each test) intact."""

from __future__ import annotations

import asyncio
import contextlib

import grpc

from shop.cart.v1 import cart_service_pb2 as cart_pb
from shop.gateway.v1 import gateway_service_pb2 as pb
from tests.identity import as_customer
from tests.rpc_errors import expect_failure

from .conftest import Shop, StartGateway

S = pb.SagaStep
ST = pb.SagaStepStatus


def state_of(checkout: pb.Checkout, attempt: int, step: int) -> pb.SagaStepState:
    [state] = [s for s in checkout.steps if s.attempt == attempt and s.step == step]
    return state


async def test_a_lapsed_reservation_ends_the_checkout_expired_with_nothing_charged_and_the_shopper_notified(
    gateway: Shop,
):
    await gateway.product("FIG", 5)
    checkout_id = await gateway.quoted_checkout("hana", {"FIG": 2}, ttl_seconds=1)
    await asyncio.sleep(1.5)

    expired = await expect_failure(gateway.place("hana", checkout_id))

    assert (expired.code, expired.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CHECKOUT_EXPIRED")
    assert expired.metadata["status"] == "CHECKOUT_STATUS_EXPIRED"
    checkout = await gateway.get("hana", checkout_id)
    assert checkout.status == pb.CHECKOUT_STATUS_EXPIRED and checkout.HasField("end_time")
    assert await gateway.psp.authorizations() == []
    [product] = await gateway.rows("SELECT reserved FROM inventory.products WHERE sku = 'FIG'")
    assert product["reserved"] == 0
    [event] = await gateway.rows(
        "SELECT event_type, payload FROM checkout.checkout_events WHERE checkout_id = %s", checkout_id
    )
    assert event["event_type"] == "CheckoutExpired" and event["payload"]["customerEmail"] == "hana@example.com"
    for _ in range(50):  # the relay puts it on the event bus (topic shop.gateway.v1.events)
        [published] = await gateway.rows(
            "SELECT published_at FROM checkout.checkout_events WHERE checkout_id = %s", checkout_id
        )
        if published["published_at"] is not None:
            break
        await asyncio.sleep(0.1)
    assert published["published_at"] is not None
    for _ in range(100):  # and the notification service turns it into a message for the shopper
        sent = await gateway.rows(
            "SELECT template, status FROM notification.notifications WHERE checkout_id = %s", checkout_id
        )
        if sent and sent[0]["status"] == "sent":
            break
        await asyncio.sleep(0.1)
    assert [row["status"] for row in sent] == ["sent"], sent


async def test_a_cart_changed_since_the_quote_is_refused_before_anything_is_charged(gateway: Shop):
    await gateway.product("OAT", 5)
    await gateway.product("RYE", 5)
    checkout_id = await gateway.quoted_checkout("ines", {"OAT": 1})
    cart_id = (await gateway.get("ines", checkout_id)).cart_id
    await gateway.cart.AddItem(
        cart_pb.AddItemRequest(cart_id=cart_id, sku="RYE", quantity=1, idempotency_key="late-add"),
        metadata=as_customer("ines"),
    )

    changed = await expect_failure(gateway.place("ines", checkout_id))

    assert (changed.code, changed.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CART_CHANGED")
    assert changed.metadata["checkoutId"] == checkout_id
    assert (await gateway.get("ines", checkout_id)).status == pb.CHECKOUT_STATUS_QUOTED
    assert await gateway.psp.authorizations() == []
    assert gateway.gateway is not None
    await gateway.gateway.CancelCheckout(
        pb.CancelCheckoutRequest(checkout_id=checkout_id), metadata=as_customer("ines")
    )


async def test_an_order_that_cannot_be_created_voids_the_payment_releases_the_stock_and_fails_for_an_operator(
    start_gateway: StartGateway,
):
    shop = await start_gateway(ORDER_TARGET="127.0.0.1:1")
    await shop.product("JAM", 5)
    checkout_id = await shop.quoted_checkout("jon", {"JAM": 2})

    failed = await expect_failure(shop.place("jon", checkout_id))

    assert (failed.code, failed.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CHECKOUT_FAILED")
    checkout = await shop.get("jon", checkout_id)
    assert checkout.status == pb.CHECKOUT_STATUS_FAILED
    assert checkout.last_failure.step == S.SAGA_STEP_CREATE_ORDER and checkout.last_failure.code == "UNAVAILABLE"
    create = state_of(checkout, 1, S.SAGA_STEP_CREATE_ORDER)
    assert create.attempts == 4 and create.last_error_code == "UNAVAILABLE"
    assert create.status == ST.SAGA_STEP_STATUS_FAILED and create.HasField("end_time")  # not left RUNNING
    assert state_of(checkout, 1, S.SAGA_STEP_AUTHORIZE_PAYMENT).status == ST.SAGA_STEP_STATUS_COMPENSATED
    assert state_of(checkout, 0, S.SAGA_STEP_RESERVE_INVENTORY).status == ST.SAGA_STEP_STATUS_COMPENSATED
    [authorization] = await shop.psp.authorizations()
    assert authorization["status"] == "voided"
    voids = [op for op in await shop.psp.operations() if op["kind"] == "void"]
    assert len(voids) == 1
    [product] = await shop.rows("SELECT stock_on_hand, reserved FROM inventory.products WHERE sku = 'JAM'")
    assert product == {"stock_on_hand": 5, "reserved": 0}


async def test_a_psp_that_answers_too_late_is_retried_with_the_same_key_until_the_payment_is_known(
    start_gateway: StartGateway,
):
    shop = await start_gateway(SAGA_STEP_MAX_ATTEMPTS="40")
    await shop.product("KEG", 5)
    checkout_id = await shop.quoted_checkout("kim", {"KEG": 1})

    placed = (await shop.place("kim", checkout_id, token="tok_hang", timeout=40)).checkout

    assert placed.status == pb.CHECKOUT_STATUS_COMPLETED
    authorize = state_of(placed, 1, S.SAGA_STEP_AUTHORIZE_PAYMENT)
    # However many calls it took (the payment service may wait the PSP out or answer "unknown" first).
    assert authorize.status == ST.SAGA_STEP_STATUS_SUCCEEDED and authorize.attempts >= 1
    assert authorize.attempts == 1 or authorize.last_error_code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
    [authorization] = await shop.psp.authorizations()
    assert authorization["status"] == "captured"


async def test_a_lost_psp_answer_is_settled_by_the_payment_service_and_charged_once(start_gateway: StartGateway):
    shop = await start_gateway(SAGA_STEP_MAX_ATTEMPTS="40")
    await shop.product("LID", 5)
    checkout_id = await shop.quoted_checkout("lea", {"LID": 1})

    with contextlib.suppress(grpc.aio.AioRpcError):  # whatever it answers, the end state is what matters
        await shop.place("lea", checkout_id, token="tok_drop", timeout=40)
    checkout = await shop.settled("lea", checkout_id)

    authorizations = await shop.psp.authorizations()
    assert len(authorizations) <= 1
    if checkout.status == pb.CHECKOUT_STATUS_COMPLETED:
        assert [a["status"] for a in authorizations] == ["captured"]
    else:
        # The payment stayed unknown past the retries: voided by checkout and key, stock still held.
        assert checkout.status == pb.CHECKOUT_STATUS_QUOTED
        assert all(a["status"] == "voided" for a in authorizations)
        assert shop.gateway is not None
        await shop.gateway.CancelCheckout(
            pb.CancelCheckoutRequest(checkout_id=checkout_id), metadata=as_customer("lea")
        )


async def test_a_deadline_that_expires_mid_saga_answers_placing_and_the_same_key_later_returns_the_result(
    start_gateway: StartGateway,
):
    shop = await start_gateway(SAGA_STEP_MAX_ATTEMPTS="40")
    await shop.product("MAT", 5)
    checkout_id = await shop.quoted_checkout("mia", {"MAT": 1})
    loop = asyncio.get_running_loop()
    started = loop.time()

    early = await shop.place("mia", checkout_id, token="tok_hang", key="slow", timeout=1.0)

    assert loop.time() - started < 1.0
    assert early.checkout.status == pb.CHECKOUT_STATUS_PLACING
    settled = await shop.settled("mia", checkout_id)
    assert settled.status == pb.CHECKOUT_STATUS_COMPLETED
    again = await shop.place("mia", checkout_id, token="tok_hang", key="slow")
    assert again.replayed and again.checkout.status == pb.CHECKOUT_STATUS_COMPLETED
    assert again.checkout.order_id == settled.order_id


async def test_a_cancelled_checkout_releases_its_stock_once_and_cannot_be_placed(gateway: Shop):
    await gateway.product("NUT", 5)
    checkout_id = await gateway.quoted_checkout("ned", {"NUT": 3})
    assert gateway.gateway is not None
    request = pb.CancelCheckoutRequest(checkout_id=checkout_id, reason="changed my mind")

    first = await gateway.gateway.CancelCheckout(request, metadata=as_customer("ned"))
    second = await gateway.gateway.CancelCheckout(request, metadata=as_customer("ned"))

    assert first.checkout.status == second.checkout.status == pb.CHECKOUT_STATUS_CANCELLED
    assert (first.replayed, second.replayed) == (False, True)
    assert state_of(second.checkout, 0, S.SAGA_STEP_RESERVE_INVENTORY).status == ST.SAGA_STEP_STATUS_COMPENSATED
    [product] = await gateway.rows("SELECT reserved FROM inventory.products WHERE sku = 'NUT'")
    assert product["reserved"] == 0
    refused = await expect_failure(gateway.place("ned", checkout_id))
    assert (refused.code, refused.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CHECKOUT_CANCELLED")
