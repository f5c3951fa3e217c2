"""Inventory use cases: validate the command, run one unit of work, tell the cache what changed.

Every use case that changes several products locks their rows in SKU order, after everything else it
writes, so requests over the same SKUs queue briefly instead of deadlocking; conflicts PostgreSQL
still reports are retried a bounded number of times by `InventoryStore`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from inventory_svc import domain
from inventory_svc.domain import (
    AdjustStock,
    Availability,
    ConfirmReservation,
    ExtendReservation,
    Line,
    Product,
    ReleaseReservation,
    Reservation,
    ReservationStatus,
    ReserveInventory,
    ReturnStock,
    Transition,
    UpsertProduct,
)
from inventory_svc.product_cache import ProductCache
from inventory_svc.repository import InventoryStore, InventoryTransaction
from service_runtime.errors import Aborted

#: How often a request that lost a race to a concurrent one (see `_race_lost`) starts again.
RACE_ATTEMPTS = 5


@dataclass(frozen=True)
class ProductPage:
    products: list[Product]
    next_page_token: str


@dataclass(frozen=True)
class Adjusted:
    product: Product
    movement_id: int
    replayed: bool


@dataclass(frozen=True)
class Reserved:
    reservation: Reservation
    replayed: bool


@dataclass(frozen=True)
class Released:
    reservation: Reservation
    #: Lines this call gave back (0 when nothing was held, or the reservation had already ended).
    released_line_count: int
    #: SKUs whose figures changed (for the cache).
    changed_skus: tuple[str, ...] = ()


@dataclass(frozen=True)
class Returned:
    order_id: str
    lines: tuple[Line, ...]
    replayed: bool
    returned_at: datetime


@dataclass(frozen=True)
class _Expired:
    """A reservation was found past its expiry and expired in the transaction; the caller is refused
    after the commit, so the expiry sticks."""

    reservation: Reservation


def _skus(lines: Sequence[Line]) -> list[str]:
    return [line.sku for line in lines]


def _race_lost() -> Aborted:
    return Aborted(
        "concurrent requests kept changing this stock; retry the request",
        reason="CONFLICT",
        retry_after_seconds=0.05,
    )


class InventoryHandlers:
    def __init__(
        self, store: InventoryStore, cache: ProductCache, *, shop_currency: str, default_ttl_seconds: float
    ) -> None:
        self._store = store
        self._cache = cache
        self._shop_currency = shop_currency
        self._default_ttl_seconds = default_ttl_seconds

    # Catalogue

    async def upsert_product(self, command: UpsertProduct) -> tuple[Product, bool]:
        price = domain.validate_upsert(command, shop_currency=self._shop_currency)

        async def work(tx: InventoryTransaction) -> tuple[Product, bool]:
            return await tx.upsert_product(command.sku, command.name, price, command.weight_grams)

        result = await self._store.run(work)
        await self._cache.invalidate([command.sku])
        return result

    async def get_product(self, sku: str) -> Product:
        domain.validate_skus([sku], "sku")
        found = await self._products([sku])
        if not found:
            raise domain.product_not_found(sku)
        return found[0]

    async def batch_get_products(self, skus: Sequence[str]) -> list[Product]:
        domain.validate_skus(skus, "skus")
        return await self._products(skus)

    async def _products(self, skus: Sequence[str]) -> list[Product]:
        """Products in request order, from the cache where fresh; missing SKUs are left out."""
        cached = await self._cache.get_many(skus)
        missing = [sku for sku in skus if sku not in cached]
        if missing:
            async with self._store.transaction() as tx:
                loaded = await tx.products(missing)
            await self._cache.put_many(loaded.values())
            cached.update(loaded)
        return [cached[sku] for sku in skus if sku in cached]

    async def list_products(self, page_size: int, page_token: str, in_stock_only: bool) -> ProductPage:
        limit = domain.checked_page_size(page_size)
        after = domain.decode_page_token(page_token, in_stock_only)
        async with self._store.transaction() as tx:
            products = await tx.list_products(after, in_stock_only, limit + 1)
        has_more = len(products) > limit
        products = products[:limit]
        token = domain.encode_page_token(products[-1].sku, in_stock_only) if has_more else ""
        return ProductPage(products, token)

    # Stock

    async def adjust_stock(self, command: AdjustStock) -> Adjusted:
        reason = domain.validate_adjustment(command)

        async def work(tx: InventoryTransaction) -> Adjusted:
            earlier = await tx.movements_for_request("adjustment", command.idempotency_key)
            if earlier:
                movement = earlier[0]
                domain.check_adjustment_replay(
                    command, movement["sku"], movement["delta"], movement["reason"], movement["note"]
                )
                current = await tx.products([movement["sku"]])
                return Adjusted(current[movement["sku"]], movement["movement_id"], replayed=True)
            product = await tx.change_stock(command.sku, command.delta)
            if product is None:
                existing = (await tx.products([command.sku])).get(command.sku)
                if existing is None:
                    raise domain.product_not_found(command.sku)
                raise domain.adjustment_refused(existing, command.delta)
            movement_id, _ = await tx.record_movement(
                sku=command.sku,
                delta=command.delta,
                kind="adjustment",
                reason=reason.value,
                note=command.note,
                request_key=command.idempotency_key,
            )
            return Adjusted(product, movement_id, replayed=False)

        result = await self._store.run(work, duplicates_race=True)
        if not result.replayed:
            await self._cache.invalidate([command.sku])
        return result

    async def check_availability(self, lines: Sequence[Line]) -> list[Availability]:
        domain.validate_availability_check(lines)
        async with self._store.transaction() as tx:
            products = await tx.products(_skus(lines))
        domain.unknown_skus(lines, set(products))
        return [Availability(line.sku, line.quantity, products[line.sku].available) for line in lines]

    # Reservations

    async def reserve(self, command: ReserveInventory) -> Reserved:
        domain.validate_reserve(command)
        ttl = command.ttl_seconds if command.ttl_seconds is not None else self._default_ttl_seconds
        lines = domain.normalised(command.lines)

        async def explain(tx: InventoryTransaction) -> Reserved | None:
            """The reservation was not made: replay an existing one, or raise why not; None when the
            units that were short have come back since (try again)."""
            existing = await tx.reservation(command.checkout_id, lock=False)
            if existing is not None:
                domain.check_replay(existing, command.lines)
                return Reserved(existing, replayed=True)
            products = await tx.products(_skus(lines))
            domain.unknown_skus(command.lines, set(products))
            short = domain.shortages(lines, {sku: product.available for sku, product in products.items()})
            if short:
                raise domain.InsufficientStock(short)
            return None

        for _ in range(RACE_ATTEMPTS):
            made = await self._store.reserve(command.checkout_id, lines, ttl)
            if made is not None:
                await self._cache.invalidate(_skus(lines))
                return Reserved(made, replayed=False)
            outcome = await self._store.run(explain)
            if outcome is not None:
                return outcome
        raise _race_lost()

    async def confirm(self, command: ConfirmReservation) -> Reservation:
        domain.validate_confirm(command)

        async def work(tx: InventoryTransaction) -> Reservation | _Expired:
            reservation = await tx.reservation(command.checkout_id, lock=True)
            if reservation is None:
                raise domain.not_found(command.checkout_id)
            decision = domain.decide_confirm(reservation, command.order_id)
            if decision is Transition.ALREADY_DONE:
                return reservation
            if decision is Transition.EXPIRE_FIRST:
                return _Expired(await _end(tx, reservation, ReservationStatus.EXPIRED, "expired"))
            confirmed = await tx.mark_confirmed(reservation, command.order_id)
            if confirmed is None:
                raise domain.order_already_confirmed(command.order_id)
            for line in reservation.lines:
                await tx.record_movement(
                    sku=line.sku,
                    delta=-line.quantity,
                    kind="sale",
                    reason="order_confirmed",
                    note=f"order {command.order_id}",
                    request_key=command.checkout_id,
                )
            # Product rows last: hot rows stay locked for the shortest part of the transaction.
            await tx.lock_products(_skus(reservation.lines))
            for line in reservation.lines:
                await tx.sell_units(line.sku, line.quantity)
            return confirmed

        return await self._settle(await self._store.run(work))

    async def release(self, command: ReleaseReservation) -> Released:
        domain.validate_release(command)

        async def work(tx: InventoryTransaction) -> Released | None:
            reservation = await tx.reservation(command.checkout_id, lock=True)
            if reservation is None:
                marker = await tx.insert_released_marker(command.checkout_id, command.reason)
                return Released(marker, 0) if marker is not None else None  # None: a reserve just landed
            decision = domain.decide_release(reservation)
            if decision is Transition.ALREADY_DONE:
                return Released(reservation, 0)
            if decision is Transition.EXPIRE_FIRST:
                expired = await _end(tx, reservation, ReservationStatus.EXPIRED, "expired")
                return Released(expired, 0, tuple(_skus(expired.lines)))
            released = await _end(tx, reservation, ReservationStatus.RELEASED, command.reason)
            return Released(released, len(released.lines), tuple(_skus(released.lines)))

        for _ in range(RACE_ATTEMPTS):
            result = await self._store.run(work)
            if result is not None:
                await self._cache.invalidate(result.changed_skus)
                return result
        raise _race_lost()

    async def extend(self, command: ExtendReservation) -> Reservation:
        ttl = domain.validate_extend(command)

        async def work(tx: InventoryTransaction) -> Reservation | _Expired:
            reservation = await tx.reservation(command.checkout_id, lock=True)
            if reservation is None:
                raise domain.not_found(command.checkout_id)
            if domain.decide_extend(reservation) is Transition.EXPIRE_FIRST:
                return _Expired(await _end(tx, reservation, ReservationStatus.EXPIRED, "expired"))
            return await tx.extend(reservation, ttl)

        return await self._settle(await self._store.run(work))

    async def get_reservation(self, checkout_id: str) -> Reservation:
        domain.validate_checkout_id(checkout_id)
        async with self._store.transaction() as tx:
            reservation = await tx.reservation(checkout_id, lock=False)
        if reservation is None:
            raise domain.not_found(checkout_id)
        return reservation

    async def _settle(self, result: Reservation | _Expired) -> Reservation:
        """After the commit: refresh the cache, and refuse the caller if the reservation turned out expired."""
        reservation = result.reservation if isinstance(result, _Expired) else result
        await self._cache.invalidate(_skus(reservation.lines))
        if isinstance(result, _Expired):
            raise domain.expired_error(reservation.checkout_id)
        return reservation

    async def expire_due(self, batch_size: int) -> int:
        """Expires up to `batch_size` reservations past their expiry; returns how many. Safe to run in
        every replica at once: each claims different rows (SKIP LOCKED) and a row leaves ACTIVE once.
        Four statements per batch, whatever its size; product rows are locked last, in SKU order."""

        async def work(tx: InventoryTransaction) -> tuple[int, list[str]]:
            expired = await tx.expire_due(batch_size)
            if not expired:
                return 0, []
            await tx.lock_products_of_reservations(expired)
            return len(expired), await tx.give_back_reserved_lines(expired)

        count, changed = await self._store.run(work)
        await self._cache.invalidate(changed)
        return count

    # Returns

    async def return_stock(self, command: ReturnStock) -> Returned:
        domain.validate_return(command)
        lines = domain.normalised(command.lines)

        async def work(tx: InventoryTransaction) -> Returned:
            sold = await tx.lock_reservation_by_order(command.order_id)
            if sold is None:
                raise domain.order_not_confirmed(command.order_id)
            earlier = await tx.movements_for_request("return", command.order_id)
            if earlier:
                recorded = [Line(m["sku"], m["delta"]) for m in earlier]
                domain.check_return_replay(command, recorded)
                return Returned(command.order_id, domain.normalised(recorded), True, earlier[0]["created_at"])
            domain.check_return(command, sold.lines)
            returned_at = None
            for line in lines:
                _, returned_at = await tx.record_movement(
                    sku=line.sku,
                    delta=line.quantity,
                    kind="return",
                    reason="order_return",
                    note=command.reason,
                    request_key=command.order_id,
                )
            # Product rows last: hot rows stay locked for the shortest part of the transaction.
            await tx.lock_products(_skus(lines))
            for line in lines:
                if not await tx.restock_units(line.sku, line.quantity):
                    raise domain.stock_limit_exceeded(line.sku, (await tx.products([line.sku]))[line.sku].stock_on_hand)
            assert returned_at is not None  # validation guarantees at least one line
            return Returned(command.order_id, lines, False, returned_at)

        result = await self._store.run(work, duplicates_race=True)
        if not result.replayed:
            await self._cache.invalidate(_skus(lines))
        return result


async def _end(
    tx: InventoryTransaction, reservation: Reservation, status: ReservationStatus, reason: str
) -> Reservation:
    """Ends an active reservation as RELEASED or EXPIRED and gives its units back (product rows last)."""
    ended = await tx.mark_ended(reservation, status, reason)
    await tx.lock_products(_skus(reservation.lines))
    for line in reservation.lines:
        await tx.give_back_units(line.sku, line.quantity)
    return ended
