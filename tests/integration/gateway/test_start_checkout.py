"""StartCheckout and CheckoutCart over the real cart, inventory and shipping services: prices re-read
from inventory, the address validated and normalised, shipping quoted, tax from the table, stock
reserved; refusals hold nothing; keys replay."""

from __future__ import annotations

import grpc
from google.protobuf import field_mask_pb2

from shop.gateway.v1 import gateway_service_pb2 as pb
from shop.inventory.v1 import inventory_service_pb2 as inventory_pb
from shop.shipping.v1 import shipping_service_pb2 as shipping_pb
from shop.type.v1 import address_pb2, money_pb2
from tests.identity import as_customer
from tests.rpc_errors import expect_failure

from .conftest import ADDRESS, Shop


def new_york() -> address_pb2.Address:
    return address_pb2.Address(**{key: value for key, value in ADDRESS.items() if value})


def start_request(cart_id: str, key: str = "start-1", **overrides: object) -> pb.StartCheckoutRequest:
    request = pb.StartCheckoutRequest(
        cart_id=cart_id,
        shipping_address=new_york(),
        shipping_method=shipping_pb.SHIPPING_METHOD_STANDARD,
        customer_email="rosa@example.com",
        idempotency_key=key,
    )
    for name, value in overrides.items():
        if hasattr(value, "CopyFrom"):
            getattr(request, name).CopyFrom(value)
        else:
            setattr(request, name, value)
    return request


async def reserved(shop: Shop, sku: str) -> int:
    [row] = await shop.rows("SELECT reserved FROM inventory.products WHERE sku = %s", sku)
    return int(row["reserved"])


async def test_start_checkout_quotes_the_cart_reserves_its_stock_and_the_order_is_then_placed(gateway: Shop):
    await gateway.product("SOAP", 10, price_minor=350)
    cart = await gateway.cart_of("rosa", {"SOAP": 4})
    assert gateway.gateway is not None

    started = await gateway.gateway.StartCheckout(start_request(cart.cart_id), metadata=as_customer("rosa"))

    checkout = started.checkout
    assert checkout.status == pb.CHECKOUT_STATUS_QUOTED and not started.replayed
    assert [(line.sku, line.quantity, line.unit_price.amount_minor) for line in checkout.lines] == [("SOAP", 4, 350)]
    quote = checkout.quote
    assert quote.subtotal.amount_minor == 1400 and quote.tax_rate_ppm == 88750 and quote.shipping_taxed
    assert quote.tax.amount_minor == (1400 + quote.shipping_cost.amount_minor) * 88750 // 1_000_000 + (
        1 if (1400 + quote.shipping_cost.amount_minor) * 88750 % 1_000_000 >= 500_000 else 0
    )
    assert quote.total.amount_minor == 1400 + quote.shipping_cost.amount_minor + quote.tax.amount_minor
    assert quote.discount_total.amount_minor == 0
    assert checkout.available_shipping_options and checkout.cart_etag == cart.etag
    assert checkout.shipping_address.country_code == "US"
    assert await reserved(gateway, "SOAP") == 4
    replay = await gateway.gateway.StartCheckout(start_request(cart.cart_id), metadata=as_customer("rosa"))
    assert replay.replayed and replay.checkout.checkout_id == checkout.checkout_id
    reused = await expect_failure(
        gateway.gateway.StartCheckout(
            start_request(cart.cart_id, shipping_method=shipping_pb.SHIPPING_METHOD_EXPRESS),
            metadata=as_customer("rosa"),
        )
    )
    assert reused.reason == "IDEMPOTENCY_KEY_REUSED"

    placed = (await gateway.place("rosa", checkout.checkout_id)).checkout

    assert placed.status == pb.CHECKOUT_STATUS_COMPLETED
    [order] = await gateway.rows("SELECT total_minor FROM orders.orders WHERE checkout_id = %s", checkout.checkout_id)
    assert order["total_minor"] == quote.total.amount_minor


async def test_an_invalid_address_names_its_fields_and_reserves_nothing(gateway: Shop):
    await gateway.product("SALT", 10)
    cart = await gateway.cart_of("sam", {"SALT": 1})
    assert gateway.gateway is not None
    bad = address_pb2.Address(
        recipient_name="Sam", line1="1 Road", city="Nowhere", postal_code="???", country_code="US"
    )

    refused = await expect_failure(
        gateway.gateway.StartCheckout(start_request(cart.cart_id, shipping_address=bad), metadata=as_customer("sam"))
    )

    assert (refused.code, refused.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "ADDRESS_INVALID")
    assert refused.field_violations and all(path.startswith("shipping_address.") for path in refused.field_violations)
    assert await reserved(gateway, "SALT") == 0
    assert await gateway.rows("SELECT 1 FROM checkout.checkouts") == []


async def test_short_stock_is_refused_with_the_short_skus_and_holds_nothing(gateway: Shop):
    await gateway.product("RARE", 1)
    await gateway.product("MORE", 9)
    cart = await gateway.cart_of("tom", {"RARE": 1, "MORE": 1})
    await gateway.inventory.AdjustStock(
        inventory_pb.AdjustStockRequest(
            sku="RARE", delta=-1, reason=inventory_pb.STOCK_ADJUSTMENT_REASON_DAMAGED, idempotency_key="gone"
        )
    )
    gateway.initial_stock["RARE"] = 0
    assert gateway.gateway is not None

    short = await expect_failure(
        gateway.gateway.StartCheckout(start_request(cart.cart_id), metadata=as_customer("tom"))
    )

    assert (short.code, short.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_STOCK")
    detail = short.detail(inventory_pb.InsufficientStock)
    assert detail is not None and [item.sku for item in detail.items] == ["RARE"]
    assert await reserved(gateway, "MORE") == 0


async def test_a_new_quote_of_the_cart_supersedes_the_open_one_and_releases_its_stock(gateway: Shop):
    await gateway.product("TAPE", 10)
    cart = await gateway.cart_of("uma", {"TAPE": 2})
    assert gateway.gateway is not None
    first = (
        await gateway.gateway.StartCheckout(start_request(cart.cart_id, "a"), metadata=as_customer("uma"))
    ).checkout

    second = (
        await gateway.gateway.StartCheckout(
            start_request(cart.cart_id, "b", shipping_method=shipping_pb.SHIPPING_METHOD_EXPRESS),
            metadata=as_customer("uma"),
        )
    ).checkout

    assert (await gateway.get("uma", first.checkout_id)).status == pb.CHECKOUT_STATUS_CANCELLED
    assert second.status == pb.CHECKOUT_STATUS_QUOTED
    assert await reserved(gateway, "TAPE") == 2
    await gateway.gateway.CancelCheckout(
        pb.CancelCheckoutRequest(checkout_id=second.checkout_id), metadata=as_customer("uma")
    )


async def test_checkout_cart_places_in_one_call_and_refuses_a_changed_total_before_charging(gateway: Shop):
    await gateway.product("WAX", 10, price_minor=800)
    assert gateway.gateway is not None
    cart = await gateway.cart_of("vic", {"WAX": 1})
    wrong = pb.CheckoutCartRequest(
        cart_id=cart.cart_id,
        shipping_address=new_york(),
        shipping_method=shipping_pb.SHIPPING_METHOD_STANDARD,
        payment_token="tok_visa",
        expected_total=money_pb2.Money(currency_code="USD", amount_minor=1),
        idempotency_key="one-shot-1",
    )

    changed = await expect_failure(gateway.gateway.CheckoutCart(wrong, metadata=as_customer("vic")))

    assert changed.reason == "QUOTE_CHANGED" and changed.metadata["currencyCode"] == "USD"
    assert (await gateway.get("vic", changed.metadata["checkoutId"])).status == pb.CHECKOUT_STATUS_CANCELLED
    assert await gateway.psp.authorizations() == []
    right = pb.CheckoutCartRequest()
    right.CopyFrom(wrong)
    right.expected_total.amount_minor = int(changed.metadata["totalMinor"])
    right.idempotency_key = "one-shot-2"

    placed = await gateway.gateway.CheckoutCart(right, metadata=as_customer("vic"))

    assert placed.checkout.status == pb.CHECKOUT_STATUS_COMPLETED and not placed.replayed
    again = await gateway.gateway.CheckoutCart(right, metadata=as_customer("vic"))
    assert again.replayed and again.checkout.order_id == placed.checkout.order_id
    assert len(await gateway.psp.authorizations()) == 1


async def test_update_checkout_requotes_shipping_and_tax_and_keeps_the_reservation(gateway: Shop):
    await gateway.product("INK", 10, price_minor=2000)
    cart = await gateway.cart_of("wes", {"INK": 3})
    assert gateway.gateway is not None
    quoted = (await gateway.gateway.StartCheckout(start_request(cart.cart_id), metadata=as_customer("wes"))).checkout
    [reservation] = await gateway.rows(
        "SELECT created_at FROM inventory.reservations WHERE checkout_id = %s", quoted.checkout_id
    )
    california = address_pb2.Address(
        recipient_name="Wes",
        line1="1 Market St",
        city="San Francisco",
        region="CA",
        postal_code="94105",
        country_code="US",
    )
    change = pb.Checkout(
        checkout_id=quoted.checkout_id,
        shipping_method=shipping_pb.SHIPPING_METHOD_EXPRESS,
        shipping_address=california,
        customer_email="wes@example.org",
    )

    updated = (
        await gateway.gateway.UpdateCheckout(
            pb.UpdateCheckoutRequest(checkout=change, update_mask=field_mask_pb2.FieldMask(paths=["*"])),
            metadata=as_customer("wes"),
        )
    ).checkout

    assert updated.status == pb.CHECKOUT_STATUS_QUOTED
    assert (
        updated.shipping_method == shipping_pb.SHIPPING_METHOD_EXPRESS and updated.customer_email == "wes@example.org"
    )
    assert updated.shipping_address.region == "CA" and updated.quote.tax_rate_ppm == 72500
    assert not updated.quote.shipping_taxed  # California does not tax shipping: 6000 × 7.25% = 435
    assert updated.quote.tax.amount_minor == 435
    assert updated.quote.shipping_cost.amount_minor >= quoted.quote.shipping_cost.amount_minor
    assert [line.sku for line in updated.lines] == ["INK"]
    assert await gateway.rows(
        "SELECT created_at FROM inventory.reservations WHERE checkout_id = %s AND status = 'active'", quoted.checkout_id
    ) == [reservation]
    assert await reserved(gateway, "INK") == 3
    bad_path = await expect_failure(
        gateway.gateway.UpdateCheckout(
            pb.UpdateCheckoutRequest(checkout=change, update_mask=field_mask_pb2.FieldMask(paths=["lines"])),
            metadata=as_customer("wes"),
        )
    )
    assert bad_path.code == grpc.StatusCode.INVALID_ARGUMENT and "update_mask" in bad_path.field_violations
    injected = pb.Checkout(checkout_id=quoted.checkout_id, customer_email="wes@example.org\r\nBcc: all@example.org")
    bad_email = await expect_failure(
        gateway.gateway.UpdateCheckout(
            pb.UpdateCheckoutRequest(checkout=injected, update_mask=field_mask_pb2.FieldMask(paths=["customer_email"])),
            metadata=as_customer("wes"),
        )
    )
    assert bad_email.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "checkout.customer_email" in bad_email.field_violations
    placed = (await gateway.place("wes", quoted.checkout_id)).checkout
    assert placed.quote.total.amount_minor == updated.quote.total.amount_minor
    refused = await expect_failure(
        gateway.gateway.UpdateCheckout(
            pb.UpdateCheckoutRequest(checkout=change, update_mask=field_mask_pb2.FieldMask(paths=["customer_email"])),
            metadata=as_customer("wes"),
        )
    )
    assert refused.reason == "CHECKOUT_ALREADY_COMPLETED"
