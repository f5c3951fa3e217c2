"""The checkout saga end to end over the real mesh: the happy path, the failure table before and after
the pivot, idempotent PlaceOrder under concurrency, and deadlines. Invariants are checked after each
test by the `gateway` fixture."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from shop.gateway.v1 import gateway_service_pb2 as pb
from tests.identity import as_customer
from tests.rpc_errors import expect_failure

from .conftest import Shop

S = pb.SagaStep
ST = pb.SagaStepStatus


def step_states(checkout: pb.Checkout) -> list[tuple[int, int, int]]:
    return [(state.attempt, state.step, state.status) for state in checkout.steps]


async def test_a_placed_checkout_completes_with_the_order_confirmed_stock_sold_payment_captured_cart_converted_and_mail(
    gateway: Shop,
):
    await gateway.product("MUG", 10, price_minor=1999)
    checkout_id = await gateway.quoted_checkout("alice", {"MUG": 2})

    placed = (await gateway.place("alice", checkout_id)).checkout

    assert placed.status == pb.CHECKOUT_STATUS_COMPLETED
    assert placed.order_id and placed.payment_id
    assert placed.payment_card.brand == "visa" and placed.payment_card.last4 == "4242"
    assert step_states(placed) == [
        (0, S.SAGA_STEP_RESERVE_INVENTORY, ST.SAGA_STEP_STATUS_SUCCEEDED),
        (1, S.SAGA_STEP_EXTEND_RESERVATION, ST.SAGA_STEP_STATUS_SUCCEEDED),
        (1, S.SAGA_STEP_AUTHORIZE_PAYMENT, ST.SAGA_STEP_STATUS_SUCCEEDED),
        (1, S.SAGA_STEP_CREATE_ORDER, ST.SAGA_STEP_STATUS_SUCCEEDED),
        (1, S.SAGA_STEP_CONFIRM_RESERVATION, ST.SAGA_STEP_STATUS_SUCCEEDED),
        (1, S.SAGA_STEP_CAPTURE_PAYMENT, ST.SAGA_STEP_STATUS_SUCCEEDED),
        (1, S.SAGA_STEP_CONFIRM_ORDER, ST.SAGA_STEP_STATUS_SUCCEEDED),
        (1, S.SAGA_STEP_CONVERT_CART, ST.SAGA_STEP_STATUS_SUCCEEDED),
    ]
    total = placed.quote.total.amount_minor
    # (2 × 19.99 + 5.00 shipping, taxed in New York) × 8.875% = 4498 × 0.08875 = 399.1975 → 399.
    assert placed.quote.tax_rate_ppm == 88750 and placed.quote.tax.amount_minor == 399 and total == 4897
    [order] = await gateway.rows("SELECT status, total_minor FROM orders.orders WHERE checkout_id = %s", checkout_id)
    assert order == {"status": "confirmed", "total_minor": total}
    [payment] = await gateway.rows("SELECT status FROM payment.payments WHERE checkout_id = %s", checkout_id)
    assert payment["status"] == "captured"
    [authorization] = await gateway.psp.authorizations()
    assert (authorization["status"], authorization["captured_minor"]) == ("captured", total)
    [product] = await gateway.rows("SELECT stock_on_hand, reserved FROM inventory.products WHERE sku = 'MUG'")
    assert product == {"stock_on_hand": 8, "reserved": 0}
    [cart] = await gateway.rows("SELECT status FROM cart.carts WHERE cart_id = %s", placed.cart_id)
    assert cart["status"] == "converted"
    for _ in range(100):  # the order's events travel the bus to the notification service
        sent = await gateway.rows(
            "SELECT template FROM notification.notifications WHERE order_id = %s AND status = 'sent'", placed.order_id
        )
        if sent:
            break
        await asyncio.sleep(0.1)
    assert sent, "no notification was sent for the order"


async def test_a_declined_card_leaves_the_checkout_quoted_with_its_stock_held_and_another_card_then_succeeds(
    gateway: Shop,
):
    await gateway.product("TEA", 5)
    checkout_id = await gateway.quoted_checkout("bob", {"TEA": 3})

    declined = await expect_failure(
        gateway.place("bob", checkout_id, token="tok_decline_insufficient_funds", key="k-1")
    )

    assert declined.code == grpc.StatusCode.FAILED_PRECONDITION and declined.reason == "INSUFFICIENT_FUNDS"
    assert declined.domain == "gateway.shop" and declined.metadata["paymentId"]
    quoted = await gateway.get("bob", checkout_id)
    assert quoted.status == pb.CHECKOUT_STATUS_QUOTED
    assert quoted.last_failure.reason == "INSUFFICIENT_FUNDS" and quoted.last_failure.attempt == 1
    assert quoted.last_failure.payment_id == declined.metadata["paymentId"]
    assert quoted.last_failure.code == "FAILED_PRECONDITION"
    [product] = await gateway.rows("SELECT reserved FROM inventory.products WHERE sku = 'TEA'")
    assert product["reserved"] == 3
    # The attempt extended the reservation; the checkout shows the new expiry, as inventory holds it.
    [held] = await gateway.rows("SELECT expires_at FROM inventory.reservations WHERE checkout_id = %s", checkout_id)
    assert quoted.reservation_expire_time.ToDatetime(tzinfo=held["expires_at"].tzinfo) == held["expires_at"]
    # The same key replays the decline; nothing runs again.
    again = await expect_failure(gateway.place("bob", checkout_id, token="tok_decline_insufficient_funds", key="k-1"))
    assert again.reason == "INSUFFICIENT_FUNDS"

    placed = (await gateway.place("bob", checkout_id, token="tok_mastercard", key="k-2")).checkout

    assert placed.status == pb.CHECKOUT_STATUS_COMPLETED and placed.attempt == 2
    assert placed.payment_card.brand == "mastercard"
    authorizations = await gateway.psp.authorizations()
    assert [a["status"] for a in authorizations] == ["captured"]


async def test_placing_with_the_same_key_twenty_times_at_once_places_one_order_and_charges_once(gateway: Shop):
    await gateway.product("LAMP", 3)
    checkout_id = await gateway.quoted_checkout("carol", {"LAMP": 1})

    answers = await asyncio.gather(*(gateway.place("carol", checkout_id, key="same-key") for _ in range(20)))

    assert {answer.checkout.status for answer in answers} == {pb.CHECKOUT_STATUS_COMPLETED}
    assert len({answer.checkout.order_id for answer in answers}) == 1
    assert sum(not answer.replayed for answer in answers) == 1
    assert len(await gateway.rows("SELECT 1 FROM orders.orders")) == 1
    assert len(await gateway.psp.authorizations()) == 1
    reused = await expect_failure(gateway.place("carol", checkout_id, token="tok_amex", key="same-key"))
    assert (reused.code, reused.reason) == (grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")


async def test_another_users_checkout_is_not_found(gateway: Shop):
    await gateway.product("PEN", 2)
    checkout_id = await gateway.quoted_checkout("dave", {"PEN": 1})

    missing = await expect_failure(gateway.place("eve", checkout_id))
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "CHECKOUT_NOT_FOUND")
    assert gateway.gateway is not None
    hidden = await expect_failure(
        gateway.gateway.GetCheckout(pb.GetCheckoutRequest(checkout_id=checkout_id), metadata=as_customer("eve"))
    )
    assert hidden.code == grpc.StatusCode.NOT_FOUND
    cancelled = await gateway.gateway.CancelCheckout(
        pb.CancelCheckoutRequest(checkout_id=checkout_id), metadata=as_customer("dave")
    )
    assert cancelled.checkout.status == pb.CHECKOUT_STATUS_CANCELLED


@pytest.mark.parametrize("token", ["4242424242424242", "4242 4242 4242 4242"])
async def test_a_card_number_as_token_is_refused_before_anything_runs(gateway: Shop, token: str):
    await gateway.product("CUP", 2)
    checkout_id = await gateway.quoted_checkout("fay", {"CUP": 1})
    refused = await expect_failure(gateway.place("fay", checkout_id, token=token))
    assert (refused.code, refused.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "CARD_NUMBER_REJECTED")
    assert (await gateway.get("fay", checkout_id)).status == pb.CHECKOUT_STATUS_QUOTED
    assert await gateway.psp.authorizations() == []
