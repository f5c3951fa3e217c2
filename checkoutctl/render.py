"""Messages → readable tables (rich). Pure: protos in, renderables out; printing is the caller's."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from google.protobuf.message import Message
from rich.table import Table

from shop.cart.v1 import cart_service_pb2 as cart_pb
from shop.gateway.v1 import admin_service_pb2 as admin_pb
from shop.gateway.v1 import gateway_service_pb2 as gateway_pb
from shop.order.v1 import order_service_pb2 as order_pb
from shop.shipping.v1 import shipping_service_pb2 as shipping_pb
from shop.type.v1 import address_pb2, money_pb2

#: ISO 4217 currencies without a minor unit (amount_minor is then whole units).
_ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)


def money(value: money_pb2.Money) -> str:
    """`12.99 USD`: integer minor units shown in major units, never through a float."""
    if not value.currency_code:
        return "—"
    amount = value.amount_minor
    if value.currency_code in _ZERO_DECIMAL:
        return f"{amount} {value.currency_code}"
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    return f"{sign}{whole}.{cents:02d} {value.currency_code}"


def timestamp(holder: Message, field: str) -> str:
    """A Timestamp field as UTC `YYYY-MM-DD HH:MM:SS.mmm`, or "" when unset."""
    if not holder.HasField(field):
        return ""
    stamp = getattr(holder, field)
    moment = datetime.fromtimestamp(stamp.seconds + stamp.nanos / 1e9, tz=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def elapsed(holder: Message, start: str, end: str) -> str:
    """The time between two Timestamp fields (`123 ms`, `4.2 s`), or "" unless both are set."""
    if not (holder.HasField(start) and holder.HasField(end)):
        return ""
    first, last = getattr(holder, start), getattr(holder, end)
    millis = (last.seconds - first.seconds) * 1000 + (last.nanos - first.nanos) // 1_000_000
    return f"{millis} ms" if millis < 10_000 else f"{millis / 1000:.1f} s"


def _enum_name(prefix: str, name: str) -> str:
    """`SAGA_STEP_CREATE_ORDER` → `create order` (the prefix dropped, lower case)."""
    return name.removeprefix(prefix).replace("_", " ").lower()


def step_name(step: gateway_pb.SagaStep.ValueType) -> str:
    return _enum_name("SAGA_STEP_", gateway_pb.SagaStep.Name(step))


def step_status(status: gateway_pb.SagaStepStatus.ValueType) -> str:
    return gateway_pb.SagaStepStatus.Name(status).removeprefix("SAGA_STEP_STATUS_")


def checkout_status(status: gateway_pb.CheckoutStatus.ValueType) -> str:
    return gateway_pb.CheckoutStatus.Name(status).removeprefix("CHECKOUT_STATUS_")


def order_status(status: order_pb.OrderStatus.ValueType) -> str:
    return order_pb.OrderStatus.Name(status).removeprefix("ORDER_STATUS_")


def shipping_method(method: shipping_pb.ShippingMethod.ValueType) -> str:
    return _enum_name("SHIPPING_METHOD_", shipping_pb.ShippingMethod.Name(method))


def address(value: address_pb2.Address) -> str:
    parts = [value.recipient_name, value.line1, value.line2, value.city, value.region, value.postal_code]
    return ", ".join(part for part in [*parts, value.country_code] if part)


def cart_table(cart: cart_pb.Cart) -> Table:
    table = Table(title=f"Cart {cart.cart_id}", title_justify="left")
    table.add_column("SKU")
    table.add_column("Product")
    table.add_column("Qty", justify="right")
    table.add_column("Unit price", justify="right")
    table.add_column("Line total", justify="right")
    for line in cart.lines:
        table.add_row(line.sku, line.product_name, str(line.quantity), money(line.unit_price), money(line.line_total))
    table.add_section()
    table.add_row("", "Subtotal", str(cart.item_count), "", money(cart.subtotal))
    return table


def quote_table(checkout: gateway_pb.Checkout) -> Table:
    """The checkout's lines as priced by inventory, then subtotal, shipping, tax, discount and total."""
    quote = checkout.quote
    table = Table(title=f"Quote for checkout {checkout.checkout_id}", title_justify="left")
    table.add_column("SKU")
    table.add_column("Product")
    table.add_column("Qty", justify="right")
    table.add_column("Unit price", justify="right")
    table.add_column("Line total", justify="right")
    for line in checkout.lines:
        table.add_row(line.sku, line.product_name, str(line.quantity), money(line.unit_price), money(line.line_total))
    table.add_section()
    shipping = f"Shipping ({shipping_method(checkout.shipping_method)})"
    if quote.free_shipping_applied:
        shipping += ", free"
    rate = f"Tax ({quote.tax_rate_ppm / 10_000:g}%{'' if quote.shipping_taxed else ', shipping untaxed'})"
    for label, amount in (
        ("Subtotal", quote.subtotal),
        (shipping, quote.shipping_cost),
        (rate, quote.tax),
        ("Discount", quote.discount_total),
    ):
        table.add_row("", label, "", "", money(amount))
    table.add_section()
    table.add_row("", "[bold]Total[/bold]", "", "", f"[bold]{money(quote.total)}[/bold]")
    return table


def shipping_options_table(
    options: Iterable[shipping_pb.ShippingOption], chosen: shipping_pb.ShippingMethod.ValueType
) -> Table:
    table = Table(title="Shipping options", title_justify="left")
    table.add_column("")
    table.add_column("Method")
    table.add_column("Cost", justify="right")
    table.add_column("Delivery", justify="right")
    for option in options:
        estimate = option.delivery_estimate
        low, high = estimate.min_business_days, estimate.max_business_days
        days = f"{low}–{high} business days" if low != high else f"{low} business day{'s' if low != 1 else ''}"
        mark = "✓" if option.shipping_method == chosen else ""
        table.add_row(mark, option.display_name or shipping_method(option.shipping_method), money(option.cost), days)
    return table


def steps_table(checkout: gateway_pb.Checkout) -> Table:
    """The saga's step log: one row per step with its attempts, status, timings and last error."""
    table = Table(title=f"Saga steps of checkout {checkout.checkout_id}", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("Step")
    table.add_column("Status")
    table.add_column("Attempts", justify="right")
    table.add_column("Started (UTC)")
    table.add_column("Took", justify="right")
    table.add_column("Last error")
    for number, state in enumerate(checkout.steps, start=1):
        status = step_status(state.status)
        colour = {"SUCCEEDED": "green", "FAILED": "red", "COMPENSATED": "yellow", "COMPENSATING": "yellow"}.get(
            status, "cyan"
        )
        error = " ".join(part for part in (state.last_error_code, state.last_error_reason) if part)
        table.add_row(
            str(number),
            step_name(state.step),
            f"[{colour}]{status}[/{colour}]",
            str(state.attempts),
            timestamp(state, "start_time"),
            elapsed(state, "start_time", "end_time"),
            error,
        )
    return table


def checkout_summary(checkout: gateway_pb.Checkout, resolution: admin_pb.Resolution | None = None) -> Table:
    """Who, what, where and how it ended, as two columns."""
    table = Table(title=f"Checkout {checkout.checkout_id}", title_justify="left", show_header=False)
    table.add_column("Field", style="bold")
    table.add_column("Value")
    rows: list[tuple[str, str]] = [
        ("Status", checkout_status(checkout.status)),
        ("Customer", checkout.user_id),
        ("Cart", checkout.cart_id),
        ("Total", money(checkout.quote.total)),
        ("Ship to", address(checkout.shipping_address)),
        ("Attempt", str(checkout.attempt)),
        ("Created (UTC)", timestamp(checkout, "create_time")),
        ("Updated (UTC)", timestamp(checkout, "update_time")),
        ("Ended (UTC)", timestamp(checkout, "end_time")),
    ]
    if checkout.order_id:
        rows.append(("Order", checkout.order_id))
    if checkout.payment_id:
        rows.append(("Payment", checkout.payment_id))
    if checkout.HasField("payment_card"):
        rows.append(("Card", f"{checkout.payment_card.brand} •••• {checkout.payment_card.last4}"))
    if checkout.HasField("last_failure"):
        failure = checkout.last_failure
        where = f" at {step_name(failure.step)}" if failure.step else ""
        code = f"{failure.code} " if failure.code else ""
        rows.append(("Last failure", f"{code}{failure.reason}{where}: {failure.message}"))
    if resolution is not None:
        rows.append(("Resolved", f"{resolution.action} by {resolution.resolved_by}: {resolution.reason}"))
    for field, value in rows:
        if value:
            table.add_row(field, value)
    return table


def order_table(order: order_pb.Order) -> Table:
    table = Table(title=f"Order {order.order_id} — {order_status(order.status)}", title_justify="left")
    table.add_column("SKU")
    table.add_column("Product")
    table.add_column("Qty", justify="right")
    table.add_column("Unit price", justify="right")
    table.add_column("Line total", justify="right")
    for line in order.lines:
        table.add_row(line.sku, line.product_name, str(line.quantity), money(line.unit_price), money(line.line_total))
    table.add_section()
    for label, amount in (
        ("Subtotal", order.subtotal),
        ("Shipping", order.shipping_cost),
        ("Tax", order.tax),
        ("Discount", order.discount_total),
    ):
        table.add_row("", label, "", "", money(amount))
    table.add_section()
    table.add_row("", "[bold]Total[/bold]", "", "", f"[bold]{money(order.total)}[/bold]")
    table.caption = f"ships {shipping_method(order.shipping_method)} to {address(order.shipping_address)}"
    return table


def checkouts_table(title: str, checkouts: Iterable[gateway_pb.Checkout]) -> Table:
    """Checkouts that need an operator: where each stopped and why."""
    table = Table(title=title, title_justify="left")
    table.add_column("Checkout")
    table.add_column("Status")
    table.add_column("Customer")
    table.add_column("Total", justify="right")
    table.add_column("Step")
    table.add_column("Order")
    table.add_column("Updated (UTC)")
    table.add_column("Last failure")
    for checkout in checkouts:
        failure = checkout.last_failure if checkout.HasField("last_failure") else None
        table.add_row(
            checkout.checkout_id,
            checkout_status(checkout.status),
            checkout.user_id,
            money(checkout.quote.total),
            step_name(checkout.current_step) if checkout.current_step else "",
            checkout.order_id,
            timestamp(checkout, "update_time"),
            f"{failure.reason}: {failure.message}" if failure is not None else "",
        )
    return table
