"""Crash recovery: the gateway process ends itself (os._exit) right before or right after a step's call
(GATEWAY_FAILPOINT); started again, its recovery worker claims the saga once the lease lapses and
finishes it: one order, one authorization at the sandbox PSP, captured once, stock conserved."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from shop.gateway.v1 import gateway_service_pb2 as pb
from shop.gateway.v1 import gateway_service_pb2_grpc as pb_grpc
from shop.inventory.v1 import inventory_service_pb2 as inventory_pb

from .conftest import Shop, start_gateway_process

STEPS = [
    "extend_reservation",
    "authorize_payment",
    "create_order",
    "confirm_reservation",
    "capture_payment",
    "confirm_order",
    "convert_cart",
]


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("step", STEPS)
async def test_a_gateway_killed_at_a_step_is_restarted_and_finishes_the_saga_exactly_once(
    shop: Shop, database_url: str, redis_url: str, redis_prefix: str, step: str, when: str
):
    await shop.product("BOX", 4, price_minor=2500)
    checkout_id = await shop.quoted_checkout("gail", {"BOX": 2})
    failpoint = f"{when}:{step}"
    doomed = await start_gateway_process(shop, database_url, redis_url, redis_prefix, GATEWAY_FAILPOINT=failpoint)
    try:
        async with grpc.aio.insecure_channel(doomed.address) as channel:
            shop.gateway = pb_grpc.CheckoutServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as died:
                await shop.place("gail", checkout_id, key="crash-key", timeout=20)
            assert died.value.code() == grpc.StatusCode.UNAVAILABLE
        assert await asyncio.wait_for(doomed.process.wait(), 10) == 137
    finally:
        if doomed.process.returncode is None:
            doomed.process.kill()
            await doomed.process.wait()

    revived = await start_gateway_process(shop, database_url, redis_url, redis_prefix)
    try:
        async with grpc.aio.insecure_channel(revived.address) as channel:
            shop.gateway = pb_grpc.CheckoutServiceStub(channel)
            checkout = await shop.settled("gail", checkout_id, timeout=30)
            assert checkout.status == pb.CHECKOUT_STATUS_COMPLETED, checkout
            # The same key now returns the finished checkout.
            replay = await shop.place("gail", checkout_id, key="crash-key")
            assert replay.replayed and replay.checkout.order_id == checkout.order_id
    finally:
        revived.process.terminate()
        await revived.process.wait()

    [authorization] = await shop.psp.authorizations()
    assert authorization["status"] == "captured"
    assert len(await shop.rows("SELECT 1 FROM orders.orders")) == 1
    [step_row] = await shop.rows(
        "SELECT attempts FROM checkout.saga_steps WHERE checkout_id = %s AND step = %s", checkout_id, step
    )
    assert step_row["attempts"] == 2  # the call before the crash (or its intent) and the one after
    assert await shop.invariant_violations() == []


async def test_a_reservation_that_cannot_be_confirmed_after_the_pivot_leaves_the_card_authorized_not_charged(
    shop: Shop, database_url: str, redis_url: str, redis_prefix: str
):
    await shop.product("LAMP", 3, price_minor=4200)
    checkout_id = await shop.quoted_checkout("lena", {"LAMP": 1})
    # The gateway dies right after the order exists; meanwhile the reservation is given back (as the sweeper
    # does with a lapsed one), so the resumed saga's ConfirmReservation is refused.
    doomed = await start_gateway_process(
        shop, database_url, redis_url, redis_prefix, GATEWAY_FAILPOINT="after:create_order"
    )
    try:
        async with grpc.aio.insecure_channel(doomed.address) as channel:
            shop.gateway = pb_grpc.CheckoutServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError):
                await shop.place("lena", checkout_id, key="lapse-key", timeout=20)
        assert await asyncio.wait_for(doomed.process.wait(), 10) == 137
    finally:
        if doomed.process.returncode is None:
            doomed.process.kill()
            await doomed.process.wait()
    await shop.inventory.ReleaseReservation(
        inventory_pb.ReleaseReservationRequest(checkout_id=checkout_id, reason="lapsed_in_test")
    )

    revived = await start_gateway_process(shop, database_url, redis_url, redis_prefix)
    try:
        async with grpc.aio.insecure_channel(revived.address) as channel:
            shop.gateway = pb_grpc.CheckoutServiceStub(channel)
            checkout = await shop.settled("lena", checkout_id, timeout=30)
    finally:
        revived.process.terminate()
        await revived.process.wait()

    assert checkout.status == pb.CHECKOUT_STATUS_FAILED, checkout
    assert checkout.last_failure.step == pb.SAGA_STEP_CONFIRM_RESERVATION, checkout.last_failure
    assert [s.step for s in checkout.steps if s.step == pb.SAGA_STEP_CAPTURE_PAYMENT] == []  # never called
    [authorization] = await shop.psp.authorizations()
    assert authorization["status"] == "authorized"  # held for the operator to void, not captured
    assert await shop.rows("SELECT 1 FROM payment.payments WHERE status = 'captured'") == []
