"""gRPC face of the cart service: proto → use case → proto, nothing else."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from cart_svc.domain import CartStatus, CartTotals, MergeOutcome, PricedCart, PricedLine, StoredLine, etag
from cart_svc.handlers import CartHandlers
from cart_svc.memo import CART_LINES, LINES, Memo
from service_runtime.values import Money
from service_runtime.wire import duration_out, money_out, timestamp_into
from shop.cart.v1 import cart_service_pb2 as pb
from shop.cart.v1 import cart_service_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]


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
        self._rendered: Memo[tuple[int, int, bool, str], tuple[StoredLine, Money, bytes]] = Memo(LINES)
        #: cart id → its last rendered lines (see `_rendered_lines`).
        self._rendered_carts: Memo[str, _RenderedLines] = Memo(CART_LINES, lambda entry: 1 + len(entry.stored))

    async def CreateCart(self, request: pb.CreateCartRequest, context: Context) -> pb.CreateCartResponse:
        created = await self._handlers.create(request.user_id, request.session_id, context)
        return pb.CreateCartResponse(cart=self._cart_out(created.cart), created=created.created)

    async def GetCart(self, request: pb.GetCartRequest, context: Context) -> pb.GetCartResponse:
        priced = await self._handlers.get(request.cart_id, context)
        response = pb.GetCartResponse()
        self._cart_out(priced, response.cart)
        return response

    async def AddItem(self, request: pb.AddItemRequest, context: Context) -> pb.AddItemResponse:
        added = await self._handlers.add(
            request.cart_id, request.sku, request.quantity, request.idempotency_key, context
        )
        response = pb.AddItemResponse(replayed=added.replayed)
        cart = self._cart_out(added.cart, response.cart)
        index = next((index for index, line in enumerate(added.cart.cart.lines) if line.sku == added.sku), None)
        if index is not None:
            response.line.CopyFrom(cart.lines[index])
        return response

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

    def _cart_out(self, priced: PricedCart, message: pb.Cart | None = None) -> pb.Cart:
        """The Cart message of `priced`, filled into `message` when given (a response's own field: no copy)."""
        cart = priced.cart
        active = cart.status is CartStatus.ACTIVE
        if message is None:
            message = pb.Cart()
        rendered = self._rendered_lines(priced)
        if cart.lines:
            message.MergeFromString(rendered.wire)  # the lines, as the wire form of Cart.lines
            message.subtotal.currency_code = rendered.totals.subtotal.currency_code
            message.subtotal.amount_minor = rendered.totals.subtotal.amount_minor
        message.cart_id = cart.cart_id
        message.user_id = cart.user_id
        message.session_id = cart.session_id
        message.status = _STATUS[cart.status]
        message.item_count = rendered.totals.item_count
        message.has_price_changes = rendered.totals.has_price_changes
        message.has_unavailable_lines = rendered.totals.has_unavailable_lines
        timestamp_into(message.create_time, cart.create_time)
        timestamp_into(message.update_time, cart.update_time)
        if active:
            message.ttl.CopyFrom(self._ttl)
            timestamp_into(message.expire_time, cart.expire_time)
        message.checkout_id = cart.checkout_id
        message.order_id = cart.order_id
        timestamp_into(message.convert_time, cart.convert_time)
        message.merged_into_cart_id = cart.merged_into_cart_id
        message.etag = rendered.etag
        return message

    def _rendered_lines(self, priced: PricedCart) -> _RenderedLines:
        """The lines part of a cart: its lines on the wire, its totals and its etag. The same priced lines
        (the handlers hand back the same tuple while a cart's lines and their prices are unchanged) of the
        same stored lines and names render the same, so each cart's last rendering is remembered (bounded:
        the carts seen first go first): a GetCart of an unchanged cart renders nothing."""
        cart = priced.cart
        found = self._rendered_carts.get(cart.cart_id)
        if (
            found is not None
            and found.priced is priced.lines
            and found.stored is cart.lines
            and found.names is priced.product_names
        ):
            return found
        names = priced.product_names
        memo = self._rendered
        wire = []
        for stored, priced_line in zip(cart.lines, priced.lines, strict=True):
            # a line is the same bytes while its stored form, price and name are: keyed by the identities
            # of the stored line (the store hands back the same object while its record is unchanged) and
            # of its price (the price cache's object, or the stored line's own); the memo keeps both alive,
            # so their ids are not reused while the entry exists (bounded: the oldest go first)
            name = names.get(stored.sku, stored.product_name)
            key = (id(stored), id(priced_line.unit_price), priced_line.available, name)
            remembered = memo.get(key)
            if remembered is None or remembered[0] is not stored or remembered[1] is not priced_line.unit_price:
                remembered = (stored, priced_line.unit_price, _line_bytes(stored, priced_line, name))
                memo.put(key, remembered)
            wire.append(remembered[2])
        rendered = _RenderedLines(
            priced.lines, cart.lines, names, cart.cart_id, b"".join(wire), priced.totals, etag(cart.cart_id, cart.lines)
        )
        self._rendered_carts.put(cart.cart_id, rendered)
        return rendered


def _line_bytes(stored: StoredLine, priced: PricedLine, name: str) -> bytes:
    """One line in the wire form of `Cart.lines` (tag, length, CartLine)."""
    line = pb.CartLine(
        sku=stored.sku,
        product_name=name,
        quantity=stored.quantity,
        unit_price=money_out(priced.unit_price),
        added_unit_price=money_out(priced.added_unit_price),
        price_changed=priced.price_changed,
        line_total=money_out(Money(priced.unit_price.currency_code, priced.line_total.amount_minor)),
        unavailable=not priced.available,
    )
    timestamp_into(line.add_time, stored.add_time)
    timestamp_into(line.update_time, stored.update_time)
    return pb.Cart(lines=[line]).SerializeToString()


@dataclass(frozen=True)
class _RenderedLines:
    priced: tuple[PricedLine, ...]
    stored: tuple[StoredLine, ...]
    names: Mapping[str, str]
    cart_id: str
    #: The lines in the wire form of `Cart.lines`.
    wire: bytes
    totals: CartTotals
    etag: str
