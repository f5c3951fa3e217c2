"""The whole mesh in-process for hostile-input tests: the gateway's fixture (inventory, cart, payment with
the sandbox PSP, order, shipping, notification) plus the gateway and a notification server we can call,
and a few real ids (a product, a cart, a quoted checkout) so generated requests reach past the lookups."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gateway.__main__ import SPEC as GATEWAY
from notification_svc.__main__ import SPEC as NOTIFICATION
from tests.integration.gateway.conftest import FAST_GATEWAY, SMALL_POOL, Shop, shop  # noqa: F401  (fixture)

#: The shopper whose cart and checkout are real.
SHOPPER = "alice"
SKU = "FUZZ-SKU-1"


@dataclass(frozen=True)
class Mesh:
    shop: Shop
    #: Every gRPC service's full name → its address.
    addresses: dict[str, str]
    #: Ids that exist: mixed into generated strings.
    real_ids: tuple[str, ...]


@pytest.fixture
async def mesh(start_service, shop: Shop) -> Mesh:  # noqa: F811  (the imported fixture)
    gateway = await start_service(GATEWAY, **{**shop.targets, **FAST_GATEWAY, "PLACE_ORDER_WAIT_SECONDS": "2"})
    notification = await start_service(NOTIFICATION, NOTIFICATION_SENDER="LOG", **SMALL_POOL)
    targets = shop.targets
    addresses = {
        "shop.inventory.v1.InventoryService": targets["INVENTORY_TARGET"],
        "shop.cart.v1.CartService": targets["CART_TARGET"],
        "shop.payment.v1.PaymentService": targets["PAYMENT_TARGET"],
        "shop.order.v1.OrderService": targets["ORDER_TARGET"],
        "shop.shipping.v1.ShippingService": targets["SHIPPING_TARGET"],
        "shop.notification.v1.NotificationService": notification.address,
        "shop.gateway.v1.CheckoutService": gateway.address,
        "shop.gateway.v1.CheckoutAdminService": gateway.address,
    }
    await shop.product(SKU, stock=1000, price_minor=1250)
    cart = await shop.cart_of(SHOPPER, {SKU: 2})
    checkout_id = await shop.quoted_checkout(SHOPPER, {SKU: 1})
    return Mesh(shop, addresses, (SKU, cart.cart_id, checkout_id, SHOPPER, f"user:{SHOPPER}", "bob"))
