"""Inventory's use cases that change state: one verb each, taking its command, returning its result.

Each validates its command (domain rules), runs one unit of work (`service_runtime.sql.UnitOfWork`:
commit on return, roll back on raise, `CommitThenRaise` to keep a change and refuse the caller,
conflicts retried by the one retry policy), and then does what follows a commit (the product cache).
Read-only queries live in `views.py`; the expiry sweeper's job in `sweeper.py`.

Every use case here is for trusted callers only (the mesh's services and operator tools: a service
token or an mTLS client certificate, service_runtime.identity): `require_trusted()` comes first, before
the command is validated, so a customer learns nothing from what it sent (PERMISSION_DENIED
TRUSTED_CALLER_REQUIRED) and a caller with no identity gets UNAUTHENTICATED (AUTH_TOKEN_MISSING).

Lock order, in every use case that touches product rows: the reservation row first, then the product
rows in SKU order (`lock_products`, FOR NO KEY UPDATE), and only then the rows that reference a
product (stock movements, reservation lines), whose foreign keys take KEY SHARE locks on it. Requests
over the same SKUs queue on the product rows instead of deadlocking (docs/design.md).

The product cache is invalidated after catalogue changes and stock adjustments. Reservations, sales,
returns and expiries change only the stock figures, which GetProduct may show up to the cache's TTL
late by contract; invalidating on them would empty the cache of exactly the hot SKUs under load.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from inventory_svc.domain import refusals, rules
from inventory_svc.domain.commands import (
    AdjustStock,
    ConfirmReservation,
    ExtendReservation,
    ReleaseReservation,
    ReserveInventory,
    ReturnStock,
    UpsertProduct,
)
from inventory_svc.domain.model import MovementKind, Product, Reservation, ReservationRequest, ReservationStatus
from inventory_svc.domain.rules import Transition
from inventory_svc.product_cache import ProductCache
from inventory_svc.repository import InventoryStatements
from inventory_svc.reserve_batcher import ReserveBatcher
from service_runtime.identity import require_trusted
from service_runtime.sql import CommitThenRaise, RaceLost, UnitOfWork
from service_runtime.values import LineItem

Work = UnitOfWork[InventoryStatements]


@dataclass(frozen=True)
class Upserted:
    product: Product
    created: bool


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


@dataclass(frozen=True)
class Returned:
    order_id: str
    lines: tuple[LineItem, ...]
    replayed: bool
    returned_at: datetime


class InventoryHandlers:
    def __init__(
        self,
        work: Work,
        cache: ProductCache,
        reserver: ReserveBatcher,
        *,
        shop_currency: str,
        default_ttl_seconds: float,
    ) -> None:
        self._work = work
        self._cache = cache
        self._reserver = reserver
        self._shop_currency = shop_currency
        self._default_ttl_seconds = default_ttl_seconds

    async def upsert_product(self, command: UpsertProduct) -> Upserted:
        require_trusted()
        price = rules.validate_upsert(command, shop_currency=self._shop_currency)

        async def work(tx: InventoryStatements) -> Upserted:
            product, created = await tx.upsert_product(command.sku, command.name, price, command.weight_grams)
            return Upserted(product, created)

        result = await self._work.run(work)
        await self._cache.invalidate([command.sku])
        return result

    async def discontinue_product(self, sku: str) -> Upserted:
        """Takes a product out of the catalogue; `created` is whether this call did (False on a repeat)."""
        require_trusted()
        rules.validate_sku(sku)
        discontinued = await self._work.run(lambda tx: tx.discontinue_product(sku))
        if discontinued is None:
            raise refusals.product_not_found(sku)
        await self._cache.invalidate([sku])
        return Upserted(*discontinued)

    async def adjust_stock(self, command: AdjustStock) -> Adjusted:
        require_trusted()
        reason = rules.validate_adjustment(command)

        async def work(tx: InventoryStatements) -> Adjusted:
            earlier = await tx.movements_for_request(MovementKind.ADJUSTMENT, command.idempotency_key)
            if earlier:
                rules.check_adjustment_replay(command, earlier[0])
                current = await tx.products([earlier[0].sku])
                return Adjusted(current[earlier[0].sku], earlier[0].movement_id, replayed=True)
            product = await tx.change_stock(command.sku, command.delta)
            if product is None:
                existing = (await tx.products([command.sku])).get(command.sku)
                if existing is None:
                    raise refusals.product_not_found(command.sku)
                raise refusals.adjustment_refused(existing, command.delta)
            movement = await tx.record_movement(
                sku=command.sku,
                delta=command.delta,
                kind=MovementKind.ADJUSTMENT,
                reason=reason.value,
                note=command.note,
                request_key=command.idempotency_key,
            )
            return Adjusted(product, movement.movement_id, replayed=False)

        result = await self._work.run(work, retry_duplicates=True)
        if not result.replayed:
            await self._cache.invalidate([command.sku])
        return result

    async def reserve(self, command: ReserveInventory) -> Reserved:
        """One autocommit statement makes the reservation, shared with the reservations that arrive
        meanwhile (`ReserveBatcher`); only when it refused does a read-only transaction explain why (a
        replay, an unknown SKU, a shortage, or a race to retry). A retry goes alone, so no other
        request of a batch can be what refuses it again."""
        require_trusted()
        rules.validate_reserve(command)
        ttl = command.ttl_seconds if command.ttl_seconds is not None else self._default_ttl_seconds
        request = ReservationRequest(command.checkout_id, rules.normalised(command.lines), ttl)
        first_attempt = True

        async def alone(tx: InventoryStatements) -> Reservation | None:
            [made] = await tx.reserve_all_or_nothing([request])
            return made

        async def explain(tx: InventoryStatements) -> Reserved:
            existing = await tx.reservation(command.checkout_id, lock=False)
            if existing is not None:
                rules.check_replay(existing, command.lines)
                return Reserved(existing, replayed=True)
            products = await tx.products([line.sku for line in request.lines])
            rules.check_known_skus(command.lines, set(products))
            rules.check_not_discontinued(
                request.lines, {sku for sku, p in products.items() if p.discontinued_at is not None}
            )
            short = rules.shortages(request.lines, {sku: product.available for sku, product in products.items()})
            if short:
                raise refusals.InsufficientStock(short)
            raise RaceLost  # the units that were short came back (or a concurrent replay ended): again

        async def attempt() -> Reserved:
            nonlocal first_attempt
            if first_attempt:
                first_attempt = False
                made = await self._reserver.reserve(request)
            else:
                made = await self._work.statement(alone)
            if made is not None:
                return Reserved(made, replayed=False)
            return await self._work.read(explain)

        return await self._work.attempts(attempt)

    async def confirm(self, command: ConfirmReservation) -> Reservation:
        require_trusted()
        rules.validate_confirm(command)

        async def work(tx: InventoryStatements) -> Reservation:
            reservation = await tx.reservation(command.checkout_id, lock=True)
            if reservation is None:
                raise refusals.reservation_not_found(command.checkout_id)
            decision = rules.decide_confirm(reservation, command.order_id)
            if decision is Transition.ALREADY_DONE:
                return reservation
            if decision is Transition.EXPIRE_FIRST:
                await _end(tx, reservation, ReservationStatus.EXPIRED, "expired")
                raise CommitThenRaise(refusals.reservation_expired(command.checkout_id))
            confirmed = await tx.mark_confirmed(reservation, command.order_id)
            if confirmed is None:
                raise refusals.order_id_in_use(command.order_id)
            await tx.lock_products(reservation.skus)
            for line in reservation.lines:
                await tx.sell_units(line.sku, line.quantity)
            for line in reservation.lines:
                await tx.record_movement(
                    sku=line.sku,
                    delta=-line.quantity,
                    kind=MovementKind.SALE,
                    reason="order_confirmed",
                    note=f"order {command.order_id}",
                    request_key=command.checkout_id,
                )
            return confirmed

        return await self._work.run(work)

    async def release(self, command: ReleaseReservation) -> Released:
        require_trusted()
        rules.validate_release(command)

        async def work(tx: InventoryStatements) -> Released:
            reservation = await tx.reservation(command.checkout_id, lock=True)
            if reservation is None:
                marker = await tx.insert_released_marker(command.checkout_id, command.reason)
                if marker is None:
                    raise RaceLost  # a reserve landed since the lookup: release that instead
                return Released(marker, 0)
            decision = rules.decide_release(reservation)
            if decision is Transition.ALREADY_DONE:
                return Released(reservation, 0)
            if decision is Transition.EXPIRE_FIRST:
                return Released(await _end(tx, reservation, ReservationStatus.EXPIRED, "expired"), 0)
            released = await _end(tx, reservation, ReservationStatus.RELEASED, command.reason)
            return Released(released, len(released.lines))

        return await self._work.run(work)

    async def extend(self, command: ExtendReservation) -> Reservation:
        require_trusted()
        ttl = rules.validate_extend(command)

        async def work(tx: InventoryStatements) -> Reservation:
            reservation = await tx.reservation(command.checkout_id, lock=True)
            if reservation is None:
                raise refusals.reservation_not_found(command.checkout_id)
            if rules.decide_extend(reservation) is Transition.EXPIRE_FIRST:
                await _end(tx, reservation, ReservationStatus.EXPIRED, "expired")
                raise CommitThenRaise(refusals.reservation_expired(command.checkout_id))
            return await tx.extend(reservation, ttl)

        return await self._work.run(work)

    async def return_stock(self, command: ReturnStock) -> Returned:
        require_trusted()
        rules.validate_return(command)
        lines = rules.normalised(command.lines)

        async def work(tx: InventoryStatements) -> Returned:
            sold = await tx.lock_reservation_by_order(command.order_id)
            if sold is None:
                raise refusals.order_not_confirmed(command.order_id)
            earlier = await tx.movements_for_request(MovementKind.RETURN, command.order_id)
            if earlier:
                rules.check_return_replay(command, earlier)
                recorded = rules.normalised([LineItem(m.sku, m.delta) for m in earlier])
                return Returned(command.order_id, recorded, True, earlier[0].created_at)
            rules.check_return(command, sold.lines)
            await tx.lock_products([line.sku for line in lines])
            for line in lines:
                if not await tx.restock_units(line.sku, line.quantity):
                    on_hand = (await tx.products([line.sku]))[line.sku].stock_on_hand
                    raise refusals.stock_limit_exceeded(line.sku, on_hand)
            movements = [
                await tx.record_movement(
                    sku=line.sku,
                    delta=line.quantity,
                    kind=MovementKind.RETURN,
                    reason="order_return",
                    note=command.reason,
                    request_key=command.order_id,
                )
                for line in lines
            ]
            return Returned(command.order_id, lines, False, movements[-1].created_at)

        return await self._work.run(work, retry_duplicates=True)


async def _end(
    tx: InventoryStatements, reservation: Reservation, status: ReservationStatus, reason: str
) -> Reservation:
    """Ends a locked active reservation as RELEASED or EXPIRED and gives its units back."""
    ended = await tx.mark_ended(reservation, status, reason)
    await tx.lock_products(reservation.skus)
    for line in reservation.lines:
        await tx.give_back_units(line.sku, line.quantity)
    return ended
