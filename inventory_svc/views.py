"""Inventory's read-only queries: products (through the cache), pages of the catalogue, availability,
and reservations. Nothing here writes to PostgreSQL.

The catalogue (products, pages, availability) is open to any caller, shoppers included: it is what a
shop shows. A reservation is a checkout's internal state: `get_reservation` is for trusted callers only
(service_runtime.identity.require_trusted)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from inventory_svc.domain import refusals, rules
from inventory_svc.domain.model import Availability, Product, Reservation
from inventory_svc.product_cache import ProductCache
from inventory_svc.repository import InventoryStatements
from service_runtime import pagination
from service_runtime.errors import FieldViolation, InvalidArgument
from service_runtime.identity import require_trusted
from service_runtime.sql import UnitOfWork
from service_runtime.validation import ID_PATTERN
from service_runtime.values import LineItem


@dataclass(frozen=True)
class ProductPage:
    products: list[Product]
    next_page_token: str


class InventoryViews:
    def __init__(
        self, work: UnitOfWork[InventoryStatements], cache: ProductCache, page_tokens: pagination.PageTokens
    ) -> None:
        self._work = work
        self._cache = cache
        self._page_tokens = page_tokens

    async def get_product(self, sku: str) -> Product:
        rules.validate_skus([sku], "sku")
        found = await self._products([sku])
        if not found:
            raise refusals.product_not_found(sku)
        return found[0]

    async def batch_get_products(self, skus: Sequence[str]) -> list[Product]:
        rules.validate_skus(skus, "skus")
        return await self._products(skus)

    async def _products(self, skus: Sequence[str]) -> list[Product]:
        """Products in request order, from the cache where fresh; missing SKUs are left out."""
        cached = await self._cache.get_many(skus)
        missing = [sku for sku in skus if sku not in cached]
        if missing:
            loaded = await self._work.read(lambda tx: tx.products(missing))
            await self._cache.put_many(loaded.values())
            cached.update(loaded)
        return [cached[sku] for sku in skus if sku in cached]

    async def list_products(self, page_size: int, page_token: str, in_stock_only: bool) -> ProductPage:
        limit = pagination.page_size(page_size)
        query = {"inStockOnly": in_stock_only}
        after = self._page_tokens.read(page_token, query)
        if after is not None and not (isinstance(after, str) and ID_PATTERN.fullmatch(after)):
            raise InvalidArgument([FieldViolation("page_token", "is not a token this service issued")])
        products = await self._work.read(lambda tx: tx.list_products(after or "", in_stock_only, limit + 1))
        has_more = len(products) > limit
        products = products[:limit]
        token = self._page_tokens.issue(products[-1].sku, query) if has_more else ""
        return ProductPage(products, token)

    async def check_availability(self, lines: Sequence[LineItem]) -> list[Availability]:
        rules.validate_availability_check(lines)
        products = await self._work.read(lambda tx: tx.products([line.sku for line in lines]))
        rules.check_known_skus(lines, set(products))
        return [Availability(line.sku, line.quantity, products[line.sku].available) for line in lines]

    async def get_reservation(self, checkout_id: str) -> Reservation:
        require_trusted()
        rules.validate_checkout_id(checkout_id)
        reservation = await self._work.read(lambda tx: tx.reservation(checkout_id, lock=False))
        if reservation is None:
            raise refusals.reservation_not_found(checkout_id)
        return reservation
