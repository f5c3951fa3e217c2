"""The saga's activities: one typed input (a frozen dataclass) per call the saga makes to another
service, and the one method that makes it. Each call carries its idempotency key (a step key, or the
business key the callee is idempotent on), so running it again is safe; failures leave as
`grpc.aio.AioRpcError` for the saga to read with `DownstreamError`.

Each call's timeout is min(what the caller's deadline leaves − a margin, the hop's cap) while a client
waits (`client_deadline`), and the hop's cap once the saga runs on in the background.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf import duration_pb2

from gateway.domain import CheckoutLine
from gateway.settings import GatewaySettings, Hop
from service_runtime.channels import Channels
from service_runtime.values import Money
from shop.cart.v1 import cart_service_pb2 as cart_pb
from shop.cart.v1 import cart_service_pb2_grpc as cart_grpc
from shop.inventory.v1 import inventory_service_pb2 as inventory_pb
from shop.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shop.order.v1 import order_service_pb2 as order_pb
from shop.order.v1 import order_service_pb2_grpc as order_grpc
from shop.payment.v1 import payment_service_pb2 as payment_pb
from shop.payment.v1 import payment_service_pb2_grpc as payment_grpc
from shop.shipping.v1 import shipping_service_pb2 as shipping_pb
from shop.type.v1 import address_pb2, money_pb2

#: The loop time by which a waiting client must be answered; None once nobody waits.
client_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("client_deadline", default=None)

#: Time kept back from the client's deadline to answer it.
DEADLINE_MARGIN_SECONDS = 0.15
#: Below this, a call is not cut to the client's deadline: the client gets PLACING and the call its cap.
SHORTEST_CALL_SECONDS = 0.25


def _money(currency_code: str, amount_minor: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code=currency_code, amount_minor=amount_minor)


@dataclass(frozen=True)
class ExtendReservation:
    checkout_id: str
    ttl_seconds: int


@dataclass(frozen=True)
class ReleaseReservation:
    checkout_id: str
    reason: str


@dataclass(frozen=True)
class AuthorizePayment:
    checkout_id: str
    amount: Money
    payment_token: str
    idempotency_key: str


@dataclass(frozen=True)
class VoidPayment:
    """Voids by checkout and the authorization's key, so it works when the authorization's outcome is unknown."""

    checkout_id: str
    authorization_key: str
    reason: str


@dataclass(frozen=True)
class CreateOrder:
    checkout_id: str
    user_id: str
    customer_email: str
    payment_id: str
    currency_code: str
    lines: tuple[CheckoutLine, ...]
    subtotal_minor: int
    discount_minor: int
    shipping_minor: int
    tax_minor: int
    total_minor: int
    shipping_address: Mapping[str, str]
    shipping_method: str


@dataclass(frozen=True)
class ConfirmReservation:
    checkout_id: str
    order_id: str


@dataclass(frozen=True)
class CapturePayment:
    payment_id: str
    order_id: str
    idempotency_key: str


@dataclass(frozen=True)
class ConfirmOrder:
    order_id: str


@dataclass(frozen=True)
class ConvertCart:
    cart_id: str
    checkout_id: str
    order_id: str


SHIPPING_METHODS = {
    "standard": shipping_pb.SHIPPING_METHOD_STANDARD,
    "express": shipping_pb.SHIPPING_METHOD_EXPRESS,
    "overnight": shipping_pb.SHIPPING_METHOD_OVERNIGHT,
}


def address_message(fields: Mapping[str, str]) -> address_pb2.Address:
    return address_pb2.Address(**{key: value for key, value in fields.items() if value})


class Activities:
    """The mesh as the saga sees it. Results are small string maps, recorded in the step log."""

    def __init__(self, settings: GatewaySettings, channels: Channels) -> None:
        self._settings = settings
        self.settings = settings
        self.cart = cart_grpc.CartServiceStub(channels.get(settings.cart.target))
        self.inventory = inventory_grpc.InventoryServiceStub(channels.get(settings.inventory.target))
        self.payment = payment_grpc.PaymentServiceStub(channels.get(settings.payment.target))
        self.order = order_grpc.OrderServiceStub(channels.get(settings.order.target))

    @staticmethod
    def timeout(hop: Hop) -> float:
        deadline = client_deadline.get()
        if deadline is None:
            return hop.deadline_seconds
        left = deadline - asyncio.get_running_loop().time() - DEADLINE_MARGIN_SECONDS
        if left < SHORTEST_CALL_SECONDS:
            return hop.deadline_seconds
        return min(left, hop.deadline_seconds)

    async def extend_reservation(self, step: ExtendReservation) -> Mapping[str, str]:
        response = await self.inventory.ExtendReservation(
            inventory_pb.ExtendReservationRequest(
                checkout_id=step.checkout_id, ttl=duration_pb2.Duration(seconds=step.ttl_seconds)
            ),
            timeout=self.timeout(self._settings.inventory),
        )
        return {"expireTime": response.reservation.expire_time.ToJsonString()}

    async def release_reservation(self, step: ReleaseReservation) -> Mapping[str, str]:
        response = await self.inventory.ReleaseReservation(
            inventory_pb.ReleaseReservationRequest(checkout_id=step.checkout_id, reason=step.reason),
            timeout=self.timeout(self._settings.inventory),
        )
        return {"releasedLines": str(response.released_line_count)}

    async def authorize_payment(self, step: AuthorizePayment) -> Mapping[str, str]:
        response = await self.payment.AuthorizePayment(
            payment_pb.AuthorizePaymentRequest(
                checkout_id=step.checkout_id,
                amount=_money(step.amount.currency_code, step.amount.amount_minor),
                payment_token=step.payment_token,
                idempotency_key=step.idempotency_key,
            ),
            timeout=self.timeout(self._settings.payment),
        )
        card = response.payment.payment_method.card
        return {"paymentId": response.payment.payment_id, "cardBrand": card.brand, "cardLast4": card.last4}

    async def void_payment(self, step: VoidPayment) -> Mapping[str, str]:
        response = await self.payment.VoidPayment(
            payment_pb.VoidPaymentRequest(
                checkout_id=step.checkout_id, authorization_idempotency_key=step.authorization_key, reason=step.reason
            ),
            timeout=self.timeout(self._settings.payment),
        )
        return {"paymentId": response.payment.payment_id}

    async def create_order(self, step: CreateOrder) -> Mapping[str, str]:
        currency = step.currency_code
        response = await self.order.CreateOrder(
            order_pb.CreateOrderRequest(
                checkout_id=step.checkout_id,
                user_id=step.user_id,
                customer_email=step.customer_email,
                payment_id=step.payment_id,
                lines=[
                    order_pb.OrderLine(
                        sku=line.sku,
                        product_name=line.product_name,
                        quantity=line.quantity,
                        unit_price=_money(currency, line.unit_price_minor),
                        line_total=_money(currency, line.line_total_minor),
                    )
                    for line in step.lines
                ],
                subtotal=_money(currency, step.subtotal_minor),
                discount_total=_money(currency, step.discount_minor),
                shipping_cost=_money(currency, step.shipping_minor),
                tax=_money(currency, step.tax_minor),
                total=_money(currency, step.total_minor),
                shipping_address=address_message(step.shipping_address),
                shipping_method=SHIPPING_METHODS[step.shipping_method],
            ),
            timeout=self.timeout(self._settings.order),
        )
        return {"orderId": response.order.order_id}

    async def confirm_reservation(self, step: ConfirmReservation) -> Mapping[str, str]:
        await self.inventory.ConfirmReservation(
            inventory_pb.ConfirmReservationRequest(checkout_id=step.checkout_id, order_id=step.order_id),
            timeout=self.timeout(self._settings.inventory),
        )
        return {}

    async def capture_payment(self, step: CapturePayment) -> Mapping[str, str]:
        await self.payment.CapturePayment(
            payment_pb.CapturePaymentRequest(
                payment_id=step.payment_id, order_id=step.order_id, idempotency_key=step.idempotency_key
            ),
            timeout=self.timeout(self._settings.payment),
        )
        return {}

    async def confirm_order(self, step: ConfirmOrder) -> Mapping[str, str]:
        await self.order.ConfirmOrder(
            order_pb.ConfirmOrderRequest(order_id=step.order_id), timeout=self.timeout(self._settings.order)
        )
        return {}

    async def convert_cart(self, step: ConvertCart) -> Mapping[str, str]:
        await self.cart.ConvertCart(
            cart_pb.ConvertCartRequest(cart_id=step.cart_id, checkout_id=step.checkout_id, order_id=step.order_id),
            timeout=self.timeout(self._settings.cart),
        )
        return {}
