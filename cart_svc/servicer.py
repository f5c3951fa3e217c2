"""gRPC face of the cart service: proto → use case → proto, nothing else."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from cart_svc.domain import CartStatus, MergeOutcome, PricedCart, PricedLine, StoredLine, etag
from cart_svc.handlers import CartHandlers
from service_runtime.values import Money
from service_runtime.wire import duration_out, money_out, timestamp_out
from shop.cart.v1 import cart_service_pb2 as pb
from shop.cart.v1 import cart_service_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Most rendered lines the servicer remembers (a few hundred bytes each).
_RENDERED_LINES = 50_000

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["CartService"].full_name

_STATUS = {
    CartStatus.ACTIVE: pb.CART_STATUS_ACTIVE,
    CartStatus.CONVERTED: pb.CART_STATUS_CONVERTED,
    CartStatus.ABANDONED: pb.CART_STATUS_ABANDONED,
    CartStatus.MERGED: pb.CART_STATUS_MERGED,
}

_OUTCOMES = {
    MergeOutcome.ADDED: pb.MERGE_OUTCOME_ADDED,
    MergeOutcome.COMBINED: pb.MERGE_OUTCOME_COMBINED,
    MergeOutcome.CAPPED: pb.MERGE_OUTCOME_CAPPED,
    MergeOutcome.DROPPED_LINE_LIMIT: pb.MERGE_OUTCOME_DROPPED_LINE_LIMIT,
    MergeOutcome.DROPPED_CURRENCY: pb.MERGE_OUTCOME_DROPPED_CURRENCY,
    MergeOutcome.DROPPED_UNAVAILABLE: pb.MERGE_OUTCOME_DROPPED_UNAVAILABLE,
}


class CartServicer(pb_grpc.CartServiceServicer):
    def __init__(self, handlers: CartHandlers, *, ttl_seconds: float) -> None:
        self._handlers = handlers
        self._ttl = duration_out(ttl_seconds)
        self._rendered: dict[tuple[int, Money, bool, str], tuple[StoredLine, bytes]] = {}

    async def CreateCart(self, request: pb.CreateCartRequest, context: Context) -> pb.CreateCartResponse:
        created = await self._handlers.create(request.user_id, request.session_id, context)
        return pb.CreateCartResponse(cart=self._cart_out(created.cart), created=created.created)

    async def GetCart(self, request: pb.GetCartRequest, context: Context) -> pb.GetCartResponse:
        return pb.GetCartResponse(cart=self._cart_out(await self._handlers.get(request.cart_id, context)))

    async def AddItem(self, request: pb.AddItemRequest, context: Context) -> pb.AddItemResponse:
        added = await self._handlers.add(
            request.cart_id, request.sku, request.quantity, request.idempotency_key, context
        )
        cart = self._cart_out(added.cart)
        line = next((line for line in cart.lines if line.sku == added.sku), None)
        return pb.AddItemResponse(cart=cart, line=line, replayed=added.replayed)

    async def UpdateItemQuantity(
        self, request: pb.UpdateItemQuantityRequest, context: Context
    ) -> pb.UpdateItemQuantityResponse:
        quantity = request.quantity if request.HasField("quantity") else None
        changed = await self._handlers.set_quantity(request.cart_id, request.sku, quantity, context)
        return pb.UpdateItemQuantityResponse(cart=self._cart_out(changed.cart), removed=changed.removed > 0)

    async def RemoveItem(self, request: pb.RemoveItemRequest, context: Context) -> pb.RemoveItemResponse:
        changed = await self._handlers.remove(request.cart_id, request.sku, context)
        return pb.RemoveItemResponse(cart=self._cart_out(changed.cart), removed=changed.removed > 0)

    async def ClearCart(self, request: pb.ClearCartRequest, context: Context) -> pb.ClearCartResponse:
        changed = await self._handlers.clear(request.cart_id, context)
        return pb.ClearCartResponse(cart=self._cart_out(changed.cart), removed_line_count=changed.removed)

    async def MergeCarts(self, request: pb.MergeCartsRequest, context: Context) -> pb.MergeCartsResponse:
        merged = await self._handlers.merge(request.source_cart_id, request.user_id, context)
        return pb.MergeCartsResponse(
            cart=self._cart_out(merged.cart),
            merged_lines=[
                pb.MergedLine(
                    sku=line.sku,
                    source_quantity=line.source_quantity,
                    resulting_quantity=line.resulting_quantity,
                    outcome=_OUTCOMES[line.outcome],
                )
                for line in merged.merged_lines
            ],
            replayed=merged.replayed,
        )

    async def ConvertCart(self, request: pb.ConvertCartRequest, context: Context) -> pb.ConvertCartResponse:
        converted = await self._handlers.convert(request.cart_id, request.checkout_id, request.order_id, context)
        return pb.ConvertCartResponse(cart=self._cart_out(converted.cart), replayed=converted.replayed)

    def _cart_out(self, priced: PricedCart) -> pb.Cart:
        cart = priced.cart
        totals = priced.totals
        active = cart.status is CartStatus.ACTIVE
        message = pb.Cart()
        if cart.lines:
            # the lines first, as the wire form of Cart.lines, each line rendered once (see _line_bytes)
            message.MergeFromString(
                b"".join(
                    self._line_bytes(stored, priced_line, priced.product_names.get(stored.sku, stored.product_name))
                    for stored, priced_line in zip(cart.lines, priced.lines, strict=True)
                )
            )
            message.subtotal.currency_code = totals.subtotal.currency_code
            message.subtotal.amount_minor = totals.subtotal.amount_minor
        message.cart_id = cart.cart_id
        message.user_id = cart.user_id
        message.session_id = cart.session_id
        message.status = _STATUS[cart.status]
        message.item_count = totals.item_count
        message.has_price_changes = totals.has_price_changes
        message.has_unavailable_lines = totals.has_unavailable_lines
        _stamp(message.create_time, cart.create_time)
        _stamp(message.update_time, cart.update_time)
        if active:
            message.ttl.CopyFrom(self._ttl)
            _stamp(message.expire_time, cart.expire_time)
        message.checkout_id = cart.checkout_id
        message.order_id = cart.order_id
        _stamp(message.convert_time, cart.convert_time)
        message.merged_into_cart_id = cart.merged_into_cart_id
        message.etag = etag(cart.cart_id, cart.lines)
        return message

    def _line_bytes(self, stored: StoredLine, priced: PricedLine, name: str) -> bytes:
        """One line in the wire form of `Cart.lines` (tag, length, CartLine). A line is the same bytes for
        as long as its stored form, price and name are the same, so it is rendered once and remembered
        (a bounded memo: the oldest go first): a 20-line GetCart renders only what changed."""
        # keyed by the stored line's identity (the store hands back the same object while its record is
        # unchanged; the memo keeps it alive, so its id is not reused while the entry exists) and the price
        key = (id(stored), priced.unit_price, priced.available, name)
        remembered = self._rendered.get(key)
        if remembered is not None and remembered[0] is stored:
            return remembered[1]
        line = pb.CartLine(
            sku=stored.sku,
            product_name=name,
            quantity=stored.quantity,
            unit_price=money_out(priced.unit_price),
            added_unit_price=money_out(priced.added_unit_price),
            price_changed=priced.price_changed,
            line_total=money_out(Money(priced.unit_price.currency_code, priced.line_total.amount_minor)),
            unavailable=not priced.available,
            add_time=timestamp_out(stored.add_time),
            update_time=timestamp_out(stored.update_time),
        )
        rendered = pb.Cart(lines=[line]).SerializeToString()
        if len(self._rendered) >= _RENDERED_LINES:
            del self._rendered[next(iter(self._rendered))]
        self._rendered[key] = (stored, rendered)
        return rendered


def _stamp(field: timestamp_pb2.Timestamp, moment: datetime | None) -> None:
    """Sets a Timestamp field from an aware datetime, exactly (whole microseconds); leaves it unset for None."""
    if moment is None:
        return
    elapsed = moment - _EPOCH
    field.seconds = elapsed.days * 86400 + elapsed.seconds
    field.nanos = elapsed.microseconds * 1000
