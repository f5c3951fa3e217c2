"""gRPC face of the cart service: proto → use case → proto, nothing else."""

from __future__ import annotations

from typing import Any

import grpc

from cart_svc.domain import CartStatus, MergeOutcome, PricedCart, etag
from cart_svc.handlers import CartHandlers
from service_runtime.values import Money
from service_runtime.wire import duration_out, money_out, timestamp_out
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
        self._ttl_seconds = ttl_seconds

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
        message = pb.Cart(
            cart_id=cart.cart_id,
            user_id=cart.user_id,
            session_id=cart.session_id,
            status=_STATUS[cart.status],
            item_count=totals.item_count,
            has_price_changes=totals.has_price_changes,
            has_unavailable_lines=totals.has_unavailable_lines,
            create_time=timestamp_out(cart.create_time),
            update_time=timestamp_out(cart.update_time),
            ttl=duration_out(self._ttl_seconds) if active else None,
            expire_time=timestamp_out(cart.expire_time) if active else None,
            checkout_id=cart.checkout_id,
            order_id=cart.order_id,
            convert_time=timestamp_out(cart.convert_time),
            merged_into_cart_id=cart.merged_into_cart_id,
            etag=etag(cart.cart_id, cart.lines),
        )
        if cart.lines:
            message.subtotal.CopyFrom(money_out(totals.subtotal))
        for stored, priced_line in zip(cart.lines, priced.lines, strict=True):
            message.lines.append(
                pb.CartLine(
                    sku=stored.sku,
                    product_name=priced.product_names.get(stored.sku, stored.product_name),
                    quantity=stored.quantity,
                    unit_price=money_out(priced_line.unit_price),
                    added_unit_price=money_out(priced_line.added_unit_price),
                    price_changed=priced_line.price_changed,
                    line_total=money_out(
                        Money(priced_line.unit_price.currency_code, priced_line.line_total.amount_minor)
                    ),
                    unavailable=not priced_line.available,
                    add_time=timestamp_out(stored.add_time),
                    update_time=timestamp_out(stored.update_time),
                )
            )
        return message
