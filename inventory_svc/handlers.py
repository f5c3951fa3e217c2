"""Inventory use cases: validate the command, run one transaction, tell the cache what changed.

Every use case that touches several products locks them in SKU order (`normalised`), so two requests
over the same SKUs in opposite orders queue instead of deadlocking; conflicts PostgreSQL still reports
are retried a bounded number of times by `InventoryStore.run`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn, TypeVar

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
    ReserveStock,
    ReturnStock,
    Transition,
    UpsertProduct,
)
from inventory_svc.product_cache import ProductCache
from inventory_svc.repository import InventoryStore, InventoryTransaction
from service_runtime.errors import FieldViolation, InvalidArgument

T = TypeVar("T")


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
    released_line_count: int


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

    checkout_id: str
    skus: tuple[str, ...]

    @classmethod
    def of(cls, reservation: Reservation) -> _Expired:
        return cls(reservation.checkout_id, tuple(line.sku for line in reservation.lines))


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
        domain.validate_upsert(command, shop_currency=self._shop_currency)
        assert command.price is not None

        async def work(tx: InventoryTransaction) -> tuple[Product, bool]:
            return await tx.upsert_product(command.sku, command.name, command.price, command.weight_grams)  # type: ignore[arg-type]

        result = await self._store.run(work)
        await self._cache.invalidate([command.sku])
        return result

    async def get_product(self, sku: str) -> Product:
        domain.validate_skus([sku], "sku")
        found = await self.batch_get_products([sku])
        if not found:
            raise domain.product_not_found(sku)
        return found[0]

    async def batch_get_products(self, skus: Sequence[str]) -> list[Product]:
        """Products in request order, from the cache where fresh; missing SKUs are left out."""
        domain.validate_skus(skus, "skus")
        cached = await self._cache.get_many(skus)
        missing = [sku for sku in skus if sku not in cached]
        if missing:
            async with self._store.transaction() as tx:
                loaded = await tx.products(missing)
            await self._cache.put_many(loaded.values())
            cached.update(loaded)
        return [cached[sku] for sku in skus if sku in cached]

    async def list_products(self, page_size: int, page_token: str, in_stock_only: bool) -> ProductPage:
        limit = domain.page_size(page_size)
        after = _decode_page_token(page_token, in_stock_only)
        async with self._store.transaction() as tx:
            products = await tx.list_products(after, in_stock_only, limit + 1)
        has_more = len(products) > limit
        products = products[:limit]
        token = _encode_page_token(products[-1].sku, in_stock_only) if has_more else ""
        return ProductPage(products, token)

    # Stock

    async def adjust_stock(self, command: AdjustStock) -> Adjusted:
        domain.validate_adjustment(command)
        assert command.reason is not None

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
                reason=command.reason.value,  # type: ignore[union-attr]
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
            products = await tx.products([line.sku for line in lines])
        domain.unknown_skus(lines, set(products))
        return [Availability(line.sku, line.quantity, products[line.sku].available) for line in lines]

    # Reservations

    async def reserve(self, command: ReserveStock) -> Reserved:
        domain.validate_reserve(command)
        ttl = command.ttl_seconds if command.ttl_seconds is not None else self._default_ttl_seconds
        lines = domain.normalised(command.lines)

        async def attempt() -> Reserved:
            async with self._store.autocommit() as statement:
                made = await statement.reserve_all_or_nothing(command.checkout_id, lines, ttl)
            if made is not None:
                return Reserved(made, replayed=False)
            return await self._store.run(explain)

        async def explain(tx: InventoryTransaction) -> Reserved:
            """The reservation was not made: replay an existing one, or say why not."""
            existing = await tx.reservation(command.checkout_id, lock=False)
            if existing is not None:
                domain.check_replay(existing, command.lines)
                return Reserved(existing, replayed=True)
            await _refuse_reserve(tx, command.lines, lines)

        result = await _retry_race(lambda: self._store.run_conflicts(attempt))
        if not result.replayed:
            await self._cache.invalidate(line.sku for line in lines)
        return result

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
                return _Expired.of(await _end(tx, reservation, ReservationStatus.EXPIRED, "expired"))
            confirmed = await tx.mark_confirmed(command.checkout_id, command.order_id)
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
            await tx.lock_products([line.sku for line in reservation.lines])
            for line in reservation.lines:
                await tx.sell_units(line.sku, line.quantity)
            return confirmed

        result = await self._store.run(work)
        return await self._settle(result)

    async def release(self, command: ReleaseReservation) -> Released:
        domain.validate_release(command)

        async def work(tx: InventoryTransaction) -> Released:
            reservation = await tx.reservation(command.checkout_id, lock=True)
            if reservation is None:
                marker = await tx.insert_released_marker(command.checkout_id, command.reason)
                if marker is None:  # a reserve committed in between: start again and release it
                    raise _RaceLost()
                return Released(marker, 0)
            if domain.decide_release(reservation) is Transition.ALREADY_DONE:
                return Released(reservation, 0)
            return Released(
                await _end(tx, reservation, ReservationStatus.RELEASED, command.reason), len(reservation.lines)
            )

        result = await _retry_race(lambda: self._store.run(work))
        if result.released_line_count:
            await self._cache.invalidate(line.sku for line in result.reservation.lines)
        return result

    async def extend(self, command: ExtendReservation) -> Reservation:
        domain.validate_extend(command)
        assert command.ttl_seconds is not None

        async def work(tx: InventoryTransaction) -> Reservation | _Expired:
            reservation = await tx.reservation(command.checkout_id, lock=True)
            if reservation is None:
                raise domain.not_found(command.checkout_id)
            if domain.decide_extend(reservation) is Transition.EXPIRE_FIRST:
                return _Expired.of(await _end(tx, reservation, ReservationStatus.EXPIRED, "expired"))
            return await tx.extend(command.checkout_id, command.ttl_seconds)  # type: ignore[arg-type]

        return await self._settle(await self._store.run(work))

    async def get_reservation(self, checkout_id: str) -> Reservation:
        domain.validate_checkout_id(checkout_id)
        async with self._store.transaction() as tx:
            reservation = await tx.reservation(checkout_id, lock=False)
        if reservation is None:
            raise domain.not_found(checkout_id)
        return reservation

    async def _settle(self, result: Reservation | _Expired) -> Reservation:
        if isinstance(result, _Expired):
            await self._cache.invalidate(result.skus)
            raise domain.expired_error(result.checkout_id)
        await self._cache.invalidate(line.sku for line in result.lines)
        return result

    async def expire_due(self, batch_size: int) -> int:
        """Expires up to `batch_size` reservations past their expiry; returns how many. Safe to run in
        every replica at once: each claims different rows (SKIP LOCKED) and a row leaves ACTIVE once."""

        async def work(tx: InventoryTransaction) -> list[Reservation]:
            claimed = await tx.claim_expired(batch_size)
            reservations = [r for r in [await tx.reservation(c, lock=False) for c in claimed] if r is not None]
            await tx.lock_products(sorted({line.sku for r in reservations for line in r.lines}))
            for reservation in reservations:
                for line in reservation.lines:
                    await tx.give_back_units(line.sku, line.quantity)
                await tx.mark_ended(reservation.checkout_id, ReservationStatus.EXPIRED, "expired")
            return reservations

        expired = await self._store.run(work)
        await self._cache.invalidate(line.sku for r in expired for line in r.lines)
        return len(expired)

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
            await tx.lock_products([line.sku for line in lines])
            returned_at = None
            for line in lines:
                await tx.change_stock(line.sku, line.quantity)
                _, returned_at = await tx.record_movement(
                    sku=line.sku,
                    delta=line.quantity,
                    kind="return",
                    reason=command.reason,
                    note=f"order {command.order_id}",
                    request_key=command.order_id,
                )
            assert returned_at is not None
            return Returned(command.order_id, lines, False, returned_at)

        result = await self._store.run(work, duplicates_race=True)
        if not result.replayed:
            await self._cache.invalidate(line.sku for line in lines)
        return result

    # Checks

    async def invariant_violations(self) -> list[dict[str, object]]:
        async with self._store.transaction() as tx:
            return [dict(row) for row in await tx.invariant_violations()]


async def _end(
    tx: InventoryTransaction, reservation: Reservation, status: ReservationStatus, reason: str
) -> Reservation:
    """Gives an active reservation's units back and ends it as RELEASED or EXPIRED (product rows last,
    so hot rows stay locked for the shortest part of the transaction)."""
    ended = await tx.mark_ended(reservation.checkout_id, status, reason)
    await tx.lock_products([line.sku for line in reservation.lines])
    for line in reservation.lines:
        await tx.give_back_units(line.sku, line.quantity)
    return ended


async def _refuse_reserve(tx: InventoryTransaction, requested: Sequence[Line], lines: Sequence[Line]) -> NoReturn:
    """Raises why a reserve did not fit: INVALID_ARGUMENT for unknown SKUs, else INSUFFICIENT_STOCK
    naming every short line."""
    products = await tx.products([line.sku for line in requested])
    domain.unknown_skus(requested, set(products))
    shortages = [
        Availability(line.sku, line.quantity, max(products[line.sku].available, 0))
        for line in lines
        if products[line.sku].available < line.quantity
    ]
    if not shortages:
        raise _RaceLost()  # units came back between the reserve and this read: try the reserve again
    raise domain.InsufficientStock(shortages)


class _RaceLost(Exception):
    """A concurrent request changed what this transaction saw; run it again from the start."""


async def _retry_race(call: Callable[[], Awaitable[T]], attempts: int = 5) -> T:
    for _ in range(attempts - 1):
        try:
            return await call()
        except _RaceLost:
            continue
    return await call()


def _encode_page_token(last_sku: str, in_stock_only: bool) -> str:
    return base64.urlsafe_b64encode(f"v1|{int(in_stock_only)}|{last_sku}".encode()).decode().rstrip("=")


def _decode_page_token(token: str, in_stock_only: bool) -> str:
    if not token:
        return ""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        version, flag, last_sku = raw.split("|", 2)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgument([FieldViolation("page_token", "is not a token this service issued")]) from None
    if version != "v1" or flag != str(int(in_stock_only)):
        raise InvalidArgument([FieldViolation("page_token", "was issued for a different query")])
    return last_sku
