"""Cart use cases: validate, one atomic Redis script, price from the catalogue; history in PostgreSQL.

Who may act: a cart belongs to `current_caller().owner` ("user:<sub>" or "session:<sid>"); anyone
else's cart is NOT_FOUND. A trusted mesh caller (the gateway) may act on any cart, and only it may
convert one.

Round trips: GetCart, AddItem, UpdateItemQuantity, RemoveItem and ClearCart make one Redis call each
(the script that checks, changes and slides the TTL). Prices come from the replica's price cache
(`cart_svc.catalogue.PriceCache`, at most CART_PRICE_CACHE_TTL_SECONDS old): no BatchGetProducts when
every SKU is cached, otherwise one for the missing SKUs (AddItem: one for the new SKU, then one for
lines not cached, if any).
"""

from __future__ import annotations

import asyncio
import logging
import operator
import uuid
from dataclasses import dataclass
from dataclasses import replace as dataclasses_replace
from datetime import UTC, datetime

from cart_svc import domain
from cart_svc.catalogue import PriceCache
from cart_svc.domain import CartStatus, CatalogueEntry, PricedCart, StoredCart
from cart_svc.memo import CART_LINES, Memo
from cart_svc.repository import CartStatements
from cart_svc.store import CartStore, Outcome, Result
from service_runtime.channels import HasDeadline
from service_runtime.errors import Aborted
from service_runtime.identity import current_caller, require_customer, require_trusted
from service_runtime.sql import UnitOfWork

log = logging.getLogger(__name__)

#: How often a call that finds a cart mid-transition (being converted or abandoned) looks again.
_SETTLE_ATTEMPTS = 20
_SETTLE_PAUSE_SECONDS = 0.05


def _scope() -> str:
    """The owner whose carts the caller may act on; "" for a trusted caller (any cart)."""
    caller = current_caller()
    if caller.trusted:
        return ""
    return require_customer().owner


@dataclass(frozen=True)
class Created:
    cart: PricedCart
    created: bool


@dataclass(frozen=True)
class Added:
    cart: PricedCart
    sku: str
    replayed: bool


@dataclass(frozen=True)
class Changed:
    cart: PricedCart
    #: Lines removed by this call.
    removed: int


@dataclass(frozen=True)
class Merged:
    cart: PricedCart
    merged_lines: tuple[domain.MergedLine, ...]
    replayed: bool


@dataclass(frozen=True)
class Converted:
    cart: PricedCart
    replayed: bool


class CartHandlers:
    def __init__(
        self,
        store: CartStore,
        catalogue: PriceCache,
        work: UnitOfWork[CartStatements],
        *,
        max_lines: int,
    ) -> None:
        self._store = store
        self._catalogue = catalogue
        self._work = work
        self._max_lines = max_lines
        #: cart id → its last (stored lines, their catalogue entries, priced lines, names): see `_priced`.
        self._priced_carts: Memo[
            str,
            tuple[
                tuple[domain.StoredLine, ...],
                tuple[CatalogueEntry | None, ...],
                tuple[domain.PricedLine, ...],
                dict[str, str],
            ],
        ] = Memo(CART_LINES, lambda entry: 1 + len(entry[0]))

    # ---- reads -------------------------------------------------------------------------------------

    async def create(self, user_id: str, session_id: str, deadline: HasDeadline | None) -> Created:
        domain.validate_owner(user_id, session_id)
        owner = f"user:{user_id}" if user_id else f"session:{session_id}"
        caller = current_caller()
        if not caller.trusted and require_customer().owner != owner:
            raise domain.owner_mismatch()
        cart_id, created = await self._store.create(uuid.uuid4().hex, owner, user_id, session_id)
        result = await self._store.read(cart_id, owner)
        return Created(await self._active(cart_id, result, deadline), created)

    async def get(self, cart_id: str, deadline: HasDeadline | None) -> PricedCart:
        domain.validate_cart_id(cart_id)
        owner = _scope()
        result = await self._store.read(cart_id, owner)
        if result.outcome is Outcome.OK:
            return await self._active(cart_id, result, deadline)
        if result.outcome is Outcome.EXPIRED:
            await self.abandon(cart_id)
        recorded = await self._settled(cart_id, owner)
        return self.as_recorded(recorded)

    # ---- changes -----------------------------------------------------------------------------------

    async def add(
        self, cart_id: str, sku: str, quantity: int, idempotency_key: str, deadline: HasDeadline | None
    ) -> Added:
        domain.validate_add(cart_id, sku, quantity, idempotency_key)
        owner = _scope()
        # The new SKU's price first (from the price cache, usually), then the add script checks everything
        # in one round trip; the response's other lines are priced from the cache too.
        entry = (await self._catalogue.entries((sku,), deadline)).get(sku)
        if entry is None:
            raise domain.product_not_found(sku)
        result = await self._store.add(
            cart_id,
            owner,
            sku=sku,
            quantity=quantity,
            max_lines=self._max_lines,
            price=entry.price,
            name=entry.name,
            key=idempotency_key,
        )
        if result.outcome is Outcome.LINE_QUANTITY:
            raise domain.line_quantity_limit(sku, int(result.detail))
        if result.outcome is Outcome.LINE_LIMIT:
            raise domain.line_limit(self._max_lines)
        if result.outcome is Outcome.CURRENCY:
            domain.check_currency(result.detail, entry.price.currency_code)
        if result.outcome is Outcome.KEY_REUSED:
            raise domain.idempotency_key_reused(idempotency_key)
        await self._refuse_unless_ok(cart_id, owner, result)
        priced = await self._priced(cart_id, result, {}, deadline)
        return Added(priced, sku, result.outcome is Outcome.REPLAYED)

    async def set_quantity(self, cart_id: str, sku: str, quantity: int | None, deadline: HasDeadline | None) -> Changed:
        domain.validate_set_quantity(cart_id, sku, quantity)
        assert quantity is not None
        owner = _scope()
        result = await self._store.set_quantity(cart_id, owner, sku, quantity)
        if result.outcome is Outcome.NO_LINE:
            raise domain.line_not_found(sku)
        await self._refuse_unless_ok(cart_id, owner, result)
        return Changed(await self._active(cart_id, result, deadline), int(result.detail or 0))

    async def remove(self, cart_id: str, sku: str, deadline: HasDeadline | None) -> Changed:
        domain.validate_sku_on_cart(cart_id, sku)
        owner = _scope()
        result = await self._store.remove(cart_id, owner, sku)
        await self._refuse_unless_ok(cart_id, owner, result)
        return Changed(await self._active(cart_id, result, deadline), int(result.detail or 0))

    async def clear(self, cart_id: str, deadline: HasDeadline | None) -> Changed:
        domain.validate_cart_id(cart_id)
        owner = _scope()
        result = await self._store.clear(cart_id, owner)
        await self._refuse_unless_ok(cart_id, owner, result)
        return Changed(await self._active(cart_id, result, deadline), int(result.detail or 0))

    # ---- leaving ACTIVE ----------------------------------------------------------------------------

    async def convert(self, cart_id: str, checkout_id: str, order_id: str, deadline: HasDeadline | None) -> Converted:
        """Claims the cart in Redis (no change can follow), records it CONVERTED in PostgreSQL, then drops
        it from Redis. A retry after any step finds the claim or the record and finishes the same way."""
        require_trusted()
        domain.validate_convert(cart_id, checkout_id, order_id)
        recorded = await self._work.read(lambda tx: tx.cart(cart_id))
        fresh = False
        if recorded is None:
            claimed = await self._store.claim(cart_id, "", f"converting:{checkout_id}", which="any")
            if claimed.outcome is Outcome.OK and claimed.cart is not None:
                catalogue = await self._catalogue.entries((line.sku for line in claimed.cart.lines), deadline)
                cart = dataclasses_replace(
                    claimed.cart,
                    status=CartStatus.CONVERTED,
                    checkout_id=checkout_id,
                    order_id=order_id,
                    lines=domain.recorded_lines(claimed.cart.lines, catalogue),
                )
                fresh = await self._record(cart)
                await self._store.drop(cart_id)
            elif claimed.outcome is Outcome.STATUS and claimed.detail.startswith("converting:"):
                raise domain.already_converted(claimed.detail.removeprefix("converting:"))
            # otherwise it is gone, or being abandoned or merged right now: its record tells
            recorded = await self._settled(cart_id, "")
        if recorded.status is CartStatus.ABANDONED:
            await self._work.run(lambda tx: tx.convert_abandoned(cart_id, checkout_id, order_id))
            return Converted(self.as_recorded(await self._settled(cart_id, "")), False)
        if recorded.status is CartStatus.MERGED:
            raise domain.cart_not_active(cart_id, CartStatus.MERGED)
        if recorded.checkout_id != checkout_id:
            raise domain.already_converted(recorded.checkout_id)
        return Converted(self.as_recorded(recorded), not fresh)

    async def merge(self, source_cart_id: str, user_id: str, deadline: HasDeadline | None) -> Merged:
        """Moves a session cart's lines into the user's ACTIVE cart (created when missing).

        Steps, each safe to repeat: claim the source (`merging:user:<id>`: no change can follow), write the
        merged lines into the target with one script (refused if the target changed since it was read,
        then recomputed; a marker makes a repeat a no-op), record the source MERGED, drop it from Redis.
        """
        domain.validate_merge(source_cart_id, user_id)
        caller = current_caller()
        if caller.trusted:
            source_owner = ""
        else:
            customer = require_customer()
            if customer.owner != f"user:{user_id}":
                raise domain.owner_mismatch()
            source_owner = f"session:{customer.session}" if customer.session else "session:"
        user_owner = f"user:{user_id}"

        recorded = await self._work.read(lambda tx: tx.cart(source_cart_id))
        if recorded is not None:
            return await self._merged_already(recorded, source_owner, user_owner, deadline)
        source = await self._store.read(source_cart_id, source_owner)
        await self._refuse_unless_ok(source_cart_id, source_owner, source)  # before anything is created
        if source.cart is not None and source.cart.user_id:
            raise domain.source_not_anonymous(source_cart_id)
        target_id, _ = await self._store.create(uuid.uuid4().hex, user_owner, user_id, "")
        # claimed for the user, not for one cart of hers, so a retry finds its own claim even when her
        # ACTIVE cart changed in between (e.g. it was converted)
        claimed = await self._store.claim(source_cart_id, source_owner, f"merging:{user_owner}", which="live")
        if claimed.outcome is not Outcome.OK or claimed.cart is None:
            await self._refuse_unless_ok(source_cart_id, source_owner, claimed)
            raise AssertionError("unreachable")
        source_cart = claimed.cart
        if source_cart.user_id:
            raise domain.source_not_anonymous(source_cart_id)

        for _ in range(_SETTLE_ATTEMPTS):
            target = await self._store.read(target_id, user_owner)
            await self._refuse_unless_ok(target_id, user_owner, target)
            assert target.cart is not None
            catalogue = await self._catalogue.entries(
                [*(line.sku for line in source_cart.lines), *(line.sku for line in target.cart.lines)], deadline
            )
            plan = domain.merge_lines(
                [domain.Line(line.sku, line.quantity) for line in target.cart.lines],
                target.cart.currency_code,
                [domain.Line(line.sku, line.quantity) for line in source_cart.lines],
                {sku: entry.price.currency_code for sku, entry in catalogue.items()},
                max_lines=self._max_lines,
            )
            written = await self._store.replace_lines(
                target_id,
                user_owner,
                target.cart.update_time,
                plan.currency_code,
                domain.merged_stored_lines(target.cart.lines, plan, catalogue, datetime.now(UTC)),
                source_cart_id,
            )
            if written.outcome is Outcome.MOVED:
                continue
            await self._refuse_unless_ok(target_id, user_owner, written)
            merged_cart = dataclasses_replace(
                source_cart,
                status=CartStatus.MERGED,
                merged_into_cart_id=target_id,
                lines=domain.recorded_lines(source_cart.lines, catalogue),
            )
            await self._record(merged_cart)
            await self._store.drop(source_cart_id)
            if written.outcome is Outcome.REPLAYED:
                return Merged(
                    await self._active(target_id, await self._store.read(target_id, user_owner), deadline), (), True
                )
            return Merged(await self._priced(target_id, written, catalogue, deadline), plan.merged_lines, False)
        raise Aborted(
            "the user's cart kept changing during the merge; retry", reason="CONFLICT", retry_after_seconds=0.2
        )

    async def _merged_already(
        self, recorded: StoredCart, source_owner: str, user_owner: str, deadline: HasDeadline | None
    ) -> Merged:
        if source_owner and recorded.owner != source_owner:
            raise domain.cart_not_found(recorded.cart_id)
        if recorded.user_id:
            raise domain.source_not_anonymous(recorded.cart_id)
        if recorded.status is not CartStatus.MERGED:
            raise domain.cart_not_active(recorded.cart_id, recorded.status)
        target = await self._store.read(recorded.merged_into_cart_id, user_owner)
        if target.outcome is not Outcome.OK:
            # merged into a cart that is no longer the user's ACTIVE one (or someone else's)
            raise domain.cart_not_active(recorded.cart_id, CartStatus.MERGED)
        return Merged(await self._active(recorded.merged_into_cart_id, target, deadline), (), True)

    async def abandon(self, cart_id: str) -> bool:
        """Records an expired cart ABANDONED and drops it from Redis (the sweeper, or a read that finds it
        expired first). False when the cart is not expired or someone else is recording it."""
        claimed = await self._store.claim(cart_id, "", "abandoning", which="expired")
        if claimed.outcome is Outcome.MISSING:
            await self._store.drop(cart_id)  # its index entry outlived it
            return False
        if claimed.outcome is not Outcome.OK or claimed.cart is None:
            return False
        try:
            catalogue = await self._catalogue.entries((line.sku for line in claimed.cart.lines), None)
        except Exception:
            log.warning("cart %s abandoned without current prices: inventory unreachable", cart_id)
            catalogue = {line.sku: _entry(line) for line in claimed.cart.lines}
        cart = dataclasses_replace(
            claimed.cart,
            status=CartStatus.ABANDONED,
            lines=domain.recorded_lines(claimed.cart.lines, catalogue),
        )
        await self._record(cart)
        await self._store.drop(cart_id)
        return True

    # ---- helpers -----------------------------------------------------------------------------------

    async def _record(self, cart: StoredCart) -> bool:
        subtotal = sum(
            (line.unit_price or line.added_unit_price).amount_minor * line.quantity
            for line in cart.lines
            if not line.unavailable
        )
        return await self._work.run(lambda tx: tx.record(cart, subtotal))

    async def _settled(self, cart_id: str, owner: str) -> StoredCart:
        """The cart's history record, waiting briefly for one that is being written right now."""
        for _ in range(_SETTLE_ATTEMPTS):
            recorded = await self._work.read(lambda tx: tx.cart(cart_id))
            if recorded is not None:
                if owner and recorded.owner != owner:
                    raise domain.cart_not_found(cart_id)
                return recorded
            live_owner = await self._store.owner_of(cart_id)
            if not live_owner or (owner and live_owner != owner):
                raise domain.cart_not_found(cart_id)
            await asyncio.sleep(_SETTLE_PAUSE_SECONDS)
        raise Aborted("the cart is changing state; retry", reason="CONFLICT", retry_after_seconds=0.2)

    async def _refuse_unless_ok(self, cart_id: str, owner: str, result: Result) -> None:
        if result.outcome in (Outcome.OK, Outcome.REPLAYED):
            return
        if result.outcome is Outcome.MISSING:
            recorded = await self._work.read(lambda tx: tx.cart(cart_id))
            if recorded is not None and (not owner or recorded.owner == owner):
                raise domain.cart_not_active(cart_id, recorded.status)
            raise domain.cart_not_found(cart_id)
        if result.outcome is Outcome.EXPIRED:
            await self.abandon(cart_id)
            raise domain.cart_not_active(cart_id, CartStatus.ABANDONED)
        if result.outcome is Outcome.STATUS:
            recorded = await self._settled(cart_id, owner)
            raise domain.cart_not_active(cart_id, recorded.status)
        raise AssertionError(f"unexpected store outcome {result.outcome}")

    async def _active(self, cart_id: str, result: Result, deadline: HasDeadline | None) -> PricedCart:
        assert result.cart is not None
        return await self._priced(cart_id, result, {}, deadline)

    async def _priced(
        self, cart_id: str, result: Result, known: dict[str, CatalogueEntry], deadline: HasDeadline | None
    ) -> PricedCart:
        cart = result.cart
        assert cart is not None
        lines = cart.lines
        catalogue = known
        if any(line.sku not in known for line in lines):
            catalogue = await self._catalogue.entries((line.sku for line in lines), deadline)
        # The same stored lines (the store hands back the same tuple while a cart's items are unchanged)
        # with the same catalogue entries (the price cache hands back the same objects until it asks
        # inventory again) price the same: each cart's last priced lines and names are remembered (bounded
        # memo), and a line that did not change keeps its priced line (AddItem changes one line of many).
        entries = tuple(map(catalogue.get, [line.sku for line in lines]))
        last = self._priced_carts.get(cart_id)
        if last is not None and last[0] is lines and all(map(operator.is_, last[1], entries)):
            return PricedCart(cart, last[2], last[3])
        before = {} if last is None else {old[0].sku: old for old in zip(last[0], last[1], last[2], strict=True)}
        priced = []
        for line, entry in zip(lines, entries, strict=True):
            old = before.get(line.sku)
            priced.append(
                old[2] if old is not None and old[0] is line and old[1] is entry else domain.price_line(line, entry)
            )
        names = {
            line.sku: entry.name if entry is not None else line.product_name
            for line, entry in zip(lines, entries, strict=True)
        }
        priced_lines = tuple(priced)
        self._priced_carts.put(cart_id, (lines, entries, priced_lines, names))
        return PricedCart(cart, priced_lines, names)

    @staticmethod
    def as_recorded(cart: StoredCart) -> PricedCart:
        """A cart from history, as last recorded (not repriced)."""
        catalogue = {
            line.sku: CatalogueEntry(line.sku, line.product_name, line.unit_price or line.added_unit_price)
            for line in cart.lines
            if not line.unavailable
        }
        return PricedCart(
            cart,
            domain.price_lines(cart.lines, catalogue),
            {line.sku: line.product_name for line in cart.lines},
        )


def _entry(line: domain.StoredLine) -> CatalogueEntry:
    return CatalogueEntry(line.sku, line.product_name, line.added_unit_price)
