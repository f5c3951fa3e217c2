"""Order rules beyond the lifecycle, no I/O: who may cancel what and the cancel worker's decisions and keys.
(The relay's per-order publication order is a statement: tests/integration/order/test_outbox.py.)"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from order_svc import domain
from order_svc.domain import CancelReason, OrderStatus, RefundAction, RestockAction
from service_runtime.errors import FailedPrecondition, PermissionDenied
from service_runtime.values import Address, Money


def _order(status: OrderStatus) -> domain.Order:
    now = datetime.now(UTC)
    money = Money("USD", 0)
    return domain.Order(
        order_id="o1",
        checkout_id="c1",
        user_id="u1",
        customer_email="",
        payment_id="p1",
        status=status,
        lines=(),
        subtotal=money,
        discount_total=money,
        shipping_cost=money,
        tax=money,
        total=money,
        shipping_address=Address("A", "1", "", "X", "", "", "US"),
        shipping_method=domain.ShippingMethod.STANDARD,
        shipment_id="",
        created_at=now,
        updated_at=now,
        confirmed_at=None,
        shipped_at=None,
        delivered_at=None,
        cancellation=None,
        event_count=1,
    )


@pytest.mark.parametrize("reason", [CancelReason.OPERATOR, CancelReason.FRAUD_SUSPECTED])
def test_customers_cannot_give_an_operators_reason(reason):
    with pytest.raises(PermissionDenied) as raised:
        domain.check_customer_may_cancel(_order(OrderStatus.CONFIRMED), reason)
    assert raised.value.reason == "CANCEL_REASON_NOT_ALLOWED"


def test_customers_cancel_confirmed_orders_but_not_pending_ones():
    domain.check_customer_may_cancel(_order(OrderStatus.CONFIRMED), CancelReason.CUSTOMER_REQUEST)
    with pytest.raises(FailedPrecondition) as raised:
        domain.check_customer_may_cancel(_order(OrderStatus.PENDING), CancelReason.CUSTOMER_REQUEST)
    assert (raised.value.reason, raised.value.metadata) == ("CHECKOUT_IN_PROGRESS", {"status": "ORDER_STATUS_PENDING"})


def test_a_confirmed_order_is_refunded_and_restocked_a_pending_one_voided_and_released():
    assert domain.refund_action(OrderStatus.CONFIRMED) is RefundAction.REFUND
    assert domain.restock_action(OrderStatus.CONFIRMED) is RestockAction.RETURN
    assert domain.refund_action(OrderStatus.PENDING) is RefundAction.VOID
    assert domain.restock_action(OrderStatus.PENDING) is RestockAction.RELEASE


def test_the_refund_key_is_derived_from_the_order_so_every_retry_reuses_it():
    assert domain.refund_key("o1") == domain.refund_key("o1") == "order:o1:refund"


def test_compensation_backoff_doubles_and_is_capped():
    delays = [domain.compensation_delay(n, base_seconds=1, max_seconds=10) for n in range(1, 7)]
    assert delays == [1, 2, 4, 8, 10, 10]
