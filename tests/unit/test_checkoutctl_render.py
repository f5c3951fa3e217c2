"""checkoutctl's tables: money in minor units shown exactly, the quote with its tax rate in ppm, the saga's
steps with attempts, timings and errors, and what needs an operator."""

from __future__ import annotations

import io

from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.table import Table

from checkoutctl import render
from shop.gateway.v1 import admin_service_pb2 as admin_pb
from shop.gateway.v1 import gateway_service_pb2 as gateway_pb
from shop.order.v1 import order_service_pb2 as order_pb
from shop.payment.v1 import payment_service_pb2 as payment_pb
from shop.shipping.v1 import shipping_service_pb2 as shipping_pb
from shop.type.v1 import address_pb2, money_pb2


def usd(minor: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="USD", amount_minor=minor)


def text(table: Table) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(table)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(output, str)
    return output


def at(seconds: int, millis: int = 0) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=millis * 1_000_000)


def test_money_is_shown_in_major_units_without_floats():
    assert render.money(usd(1299)) == "12.99 USD"
    assert render.money(usd(5)) == "0.05 USD"
    assert render.money(usd(-250)) == "-2.50 USD"
    assert render.money(usd(123456789012345678)) == "1234567890123456.78 USD"
    assert render.money(money_pb2.Money(currency_code="JPY", amount_minor=1500)) == "1500 JPY"
    assert render.money(money_pb2.Money()) == "—"


def test_the_quote_lists_lines_shipping_tax_rate_in_ppm_discount_and_total():
    checkout = gateway_pb.Checkout(
        checkout_id="chk_1",
        shipping_method=shipping_pb.SHIPPING_METHOD_STANDARD,
        lines=[
            gateway_pb.CheckoutLine(
                sku="MUG", product_name="Mug", quantity=2, unit_price=usd(1299), line_total=usd(2598)
            )
        ],
        quote=gateway_pb.CheckoutQuote(
            subtotal=usd(2598),
            shipping_cost=usd(599),
            tax=usd(284),
            total=usd(3481),
            tax_rate_ppm=88_750,
            shipping_taxed=True,
            discount_total=usd(0),
        ),
    )

    output = text(render.quote_table(checkout))

    assert "Quote for checkout chk_1" in output
    assert "MUG" in output and "25.98 USD" in output
    assert "Shipping (standard)" in output and "5.99 USD" in output
    assert "Tax (8.875%)" in output and "2.84 USD" in output
    assert "Discount" in output and "0.00 USD" in output
    assert "34.81 USD" in output


def test_the_steps_table_shows_each_step_with_attempts_timings_and_its_last_error():
    checkout = gateway_pb.Checkout(
        checkout_id="chk_2",
        steps=[
            gateway_pb.SagaStepState(
                step=gateway_pb.SAGA_STEP_RESERVE_INVENTORY,
                status=gateway_pb.SAGA_STEP_STATUS_SUCCEEDED,
                attempts=1,
                start_time=at(1_800_000_000),
                end_time=at(1_800_000_000, 42),
            ),
            gateway_pb.SagaStepState(
                step=gateway_pb.SAGA_STEP_AUTHORIZE_PAYMENT,
                status=gateway_pb.SAGA_STEP_STATUS_FAILED,
                attempts=3,
                start_time=at(1_800_000_001),
                end_time=at(1_800_000_013, 500),
                last_error_code="UNAVAILABLE",
                last_error_reason="DOWNSTREAM_UNAVAILABLE",
            ),
            gateway_pb.SagaStepState(
                step=gateway_pb.SAGA_STEP_CREATE_ORDER, status=gateway_pb.SAGA_STEP_STATUS_PENDING
            ),
        ],
    )

    rows = [line for line in text(render.steps_table(checkout)).splitlines() if "│" in line]

    assert len(rows) == 3
    assert "reserve inventory" in rows[0] and "SUCCEEDED" in rows[0] and "42 ms" in rows[0]
    assert "2027-01-15 08:00:00.000" in rows[0]
    assert "authorize payment" in rows[1] and "FAILED" in rows[1] and " 3 " in rows[1]
    assert "12.5 s" in rows[1] and "UNAVAILABLE DOWNSTREAM_UNAVAILABLE" in rows[1]
    assert "create order" in rows[2] and "PENDING" in rows[2]


def test_a_failed_checkout_shows_where_and_why_it_failed_and_how_an_operator_resolved_it():
    checkout = gateway_pb.Checkout(
        checkout_id="chk_3",
        status=gateway_pb.CHECKOUT_STATUS_FAILED,
        user_id="alice",
        order_id="ord_9",
        current_step=gateway_pb.SAGA_STEP_CAPTURE_PAYMENT,
        quote=gateway_pb.CheckoutQuote(total=usd(1000)),
        payment_card=payment_pb.CardSummary(brand="visa", last4="4242"),
        shipping_address=address_pb2.Address(recipient_name="Alice", city="New York", country_code="US"),
        last_failure=gateway_pb.CheckoutFailure(
            reason="PAYMENT_UNAVAILABLE",
            message="payment did not answer",
            step=gateway_pb.SAGA_STEP_CAPTURE_PAYMENT,
            code="UNAVAILABLE",
        ),
        update_time=at(1_800_000_000),
    )
    resolution = admin_pb.Resolution(action="CANCEL_ORDER", reason="customer called", resolved_by="ops")

    listing = text(render.checkouts_table("FAILED checkouts (1)", [checkout]))
    summary = text(render.checkout_summary(checkout, resolution))

    assert "chk_3" in listing and "FAILED" in listing and "alice" in listing and "10.00 USD" in listing
    assert "capture payment" in listing and "ord_9" in listing
    assert "PAYMENT_UNAVAILABLE: payment did not answer" in listing
    assert "UNAVAILABLE PAYMENT_UNAVAILABLE at capture payment: payment did not answer" in summary
    assert "visa •••• 4242" in summary and "Alice, New York, US" in summary
    assert "CANCEL_ORDER by ops: customer called" in summary


def test_the_order_table_has_its_status_lines_and_totals():
    order = order_pb.Order(
        order_id="ord_1",
        status=order_pb.ORDER_STATUS_CONFIRMED,
        lines=[
            order_pb.OrderLine(sku="MUG", product_name="Mug", quantity=1, unit_price=usd(1299), line_total=usd(1299))
        ],
        subtotal=usd(1299),
        shipping_cost=usd(0),
        tax=usd(115),
        total=usd(1414),
        shipping_method=shipping_pb.SHIPPING_METHOD_EXPRESS,
    )

    output = text(render.order_table(order))

    assert "Order ord_1 — CONFIRMED" in output
    assert "12.99 USD" in output and "1.15 USD" in output and "14.14 USD" in output
    assert "ships express" in output


def test_shipping_options_mark_the_chosen_method():
    options = [
        shipping_pb.ShippingOption(
            shipping_method=shipping_pb.SHIPPING_METHOD_STANDARD,
            display_name="Standard",
            cost=usd(0),
            delivery_estimate=shipping_pb.DeliveryEstimate(min_business_days=3, max_business_days=7),
        ),
        shipping_pb.ShippingOption(
            shipping_method=shipping_pb.SHIPPING_METHOD_EXPRESS,
            display_name="Express",
            cost=usd(1899),
            delivery_estimate=shipping_pb.DeliveryEstimate(min_business_days=1, max_business_days=1),
        ),
    ]

    rows = [
        line
        for line in text(render.shipping_options_table(options, shipping_pb.SHIPPING_METHOD_STANDARD)).splitlines()
        if "│" in line
    ]

    assert "✓" in rows[0] and "3–7 business days" in rows[0]
    assert "✓" not in rows[1] and "18.99 USD" in rows[1] and "1 business day" in rows[1]
