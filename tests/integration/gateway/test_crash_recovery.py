"""Crash recovery: the gateway process ends itself (os._exit) right before or right after a step's call
(GATEWAY_FAILPOINT); started again, its recovery worker claims the saga once the lease lapses and
finishes it: one order, one authorization at the sandbox PSP, captured once, stock conserved."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from shop.gateway.v1 import gateway_service_pb2 as pb
from shop.gateway.v1 import gateway_service_pb2_grpc as pb_grpc

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
