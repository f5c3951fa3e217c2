"""Cart's business rules, free of I/O: line limits, merging carts, and totals in integer minor units.

A cart holds at most MAX_LINES lines, one per SKU, in the order they were first added; each line
holds 1..MAX_LINE_QUANTITY units. A cart holds one currency, that of its first line's price.

    ACTIVE ──ConvertCart──▶ CONVERTED    (bought by a checkout)
       │──MergeCarts──▶ MERGED           (a session cart moved into the user's cart at sign-in)
       └──expiry───▶ ABANDONED           (ConvertCart may still convert it for a running checkout)

Money is integer minor units. Within the limits a subtotal is at most 100 lines × 99 units × the
catalogue's largest price (10^11), about 10^15: far inside a signed 64-bit integer.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import replace as dataclasses_replace
from datetime import datetime

from service_runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Violations,
)
from service_runtime.validation import check_id
from service_runtime.values import Money

MAX_LINES = 100
MAX_LINE_QUANTITY = 99


class CartStatus(enum.Enum):
    ACTIVE = "active"
    CONVERTED = "converted"
    ABANDONED = "abandoned"
    MERGED = "merged"


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int


def _find(lines: Sequence[Line], sku: str) -> Line | None:
    return next((line for line in lines if line.sku == sku), None)


def _replace(lines: Sequence[Line], sku: str, quantity: int) -> tuple[Line, ...]:
    return tuple(Line(sku, quantity) if line.sku == sku else line for line in lines)


def add_item(lines: Sequence[Line], sku: str, quantity: int, *, max_lines: int = MAX_LINES) -> tuple[Line, ...]:
    """AddItem: the lines after adding `quantity` units of `sku`, merged into the SKU's line when there is one.

    Unlike a merge of carts, an add never caps: it is refused when the line would exceed the limit.
    """
    if not 1 <= quantity <= MAX_LINE_QUANTITY:
        raise InvalidArgument([FieldViolation("quantity", f"must be between 1 and {MAX_LINE_QUANTITY}")])
    existing = _find(lines, sku)
    if existing is None:
        if len(lines) >= max_lines:
            raise FailedPrecondition(
                f"the cart already has {len(lines)} lines, the most it may hold",
                reason="CART_LINE_LIMIT",
                metadata={"maxLines": str(max_lines)},
            )
        return (*lines, Line(sku, quantity))
    if existing.quantity + quantity > MAX_LINE_QUANTITY:
        max_addable = MAX_LINE_QUANTITY - existing.quantity
        raise FailedPrecondition(
            f"the line for {sku} has {existing.quantity} units; at most {max_addable} more can be added",
            reason="LINE_QUANTITY_LIMIT",
            metadata={"sku": sku, "maxAddable": str(max_addable)},
        )
    return _replace(lines, sku, existing.quantity + quantity)


def set_quantity(lines: Sequence[Line], sku: str, quantity: int) -> tuple[tuple[Line, ...], bool]:
    """UpdateItemQuantity: sets the line's quantity; 0 removes it. Returns the lines and whether it was removed."""
    if not 0 <= quantity <= MAX_LINE_QUANTITY:
        raise InvalidArgument([FieldViolation("quantity", f"must be between 0 and {MAX_LINE_QUANTITY}")])
    if _find(lines, sku) is None:
        raise NotFound(f"the cart has no line for {sku}", reason="LINE_NOT_FOUND", metadata={"sku": sku})
    if quantity == 0:
        return tuple(line for line in lines if line.sku != sku), True
    return _replace(lines, sku, quantity), False


def check_currency(cart_currency: str, product_currency: str) -> None:
    """A product may join a cart only in the cart's currency; an empty cart ("") takes any."""
    if cart_currency and product_currency != cart_currency:
        raise FailedPrecondition(
            f"the cart is in {cart_currency}; this product is priced in {product_currency}",
            reason="CURRENCY_MISMATCH",
            metadata={"cartCurrency": cart_currency, "productCurrency": product_currency},
        )


class MergeOutcome(enum.Enum):
    ADDED = "added"
    COMBINED = "combined"
    CAPPED = "capped"
    DROPPED_LINE_LIMIT = "dropped_line_limit"
    DROPPED_CURRENCY = "dropped_currency"
    DROPPED_UNAVAILABLE = "dropped_unavailable"


@dataclass(frozen=True)
class MergedLine:
    sku: str
    source_quantity: int
    #: Units of the SKU in the target after the merge; 0 when dropped and the target had none.
    resulting_quantity: int
    outcome: MergeOutcome


@dataclass(frozen=True)
class Merge:
    lines: tuple[Line, ...]
    currency_code: str
    merged_lines: tuple[MergedLine, ...]


def merge_lines(
    target: Sequence[Line],
    target_currency: str,
    source: Sequence[Line],
    source_currencies: Mapping[str, str],
    *,
    max_lines: int = MAX_LINES,
) -> Merge:
    """MergeCarts: moves a session cart's lines into the user's cart, one source line at a time, in order.

    `source_currencies` maps each source SKU still in the catalogue to its price's currency; a SKU
    missing from it is unavailable. An empty target ("" currency) takes the currency of the first
    line it receives. Quantities of the same SKU are added and capped at MAX_LINE_QUANTITY.
    """
    lines = list(target)
    currency = target_currency
    merged: list[MergedLine] = []
    for line in source:
        existing = _find(lines, line.sku)
        held = existing.quantity if existing else 0
        product_currency = source_currencies.get(line.sku)
        if product_currency is None:
            outcome, resulting = MergeOutcome.DROPPED_UNAVAILABLE, held
        elif currency and product_currency != currency:
            outcome, resulting = MergeOutcome.DROPPED_CURRENCY, held
        elif existing is not None:
            resulting = min(held + line.quantity, MAX_LINE_QUANTITY)
            outcome = MergeOutcome.CAPPED if held + line.quantity > MAX_LINE_QUANTITY else MergeOutcome.COMBINED
            lines = list(_replace(lines, line.sku, resulting))
        elif len(lines) >= max_lines:
            outcome, resulting = MergeOutcome.DROPPED_LINE_LIMIT, 0
        else:
            outcome, resulting = MergeOutcome.ADDED, line.quantity
            lines.append(Line(line.sku, line.quantity))
            currency = currency or product_currency
        merged.append(MergedLine(line.sku, line.quantity, resulting, outcome))
    return Merge(lines=tuple(lines), currency_code=currency, merged_lines=tuple(merged))


@dataclass(frozen=True)
class PricedLine:
    sku: str
    quantity: int
    #: Current catalogue price, or the last known one when the SKU left the catalogue.
    unit_price: Money
    #: Price when the line was first added.
    added_unit_price: Money
    #: False when the SKU is no longer in the catalogue.
    available: bool = True

    @property
    def line_total(self) -> Money:
        return Money(self.unit_price.currency_code, self.unit_price.amount_minor * self.quantity)

    @property
    def price_changed(self) -> bool:
        return self.unit_price != self.added_unit_price


@dataclass(frozen=True)
class CartTotals:
    subtotal: Money
    item_count: int
    has_price_changes: bool
    has_unavailable_lines: bool


def cart_totals(lines: Sequence[PricedLine]) -> CartTotals:
    """Subtotal and item count over the available lines, in the cart's currency (its first line's).

    With no available lines the subtotal is zero in the cart's currency, or in "" for an empty cart.
    Raises ValueError for lines in several currencies: AddItem and MergeCarts never let them in.
    """
    currency = lines[0].added_unit_price.currency_code if lines else ""
    subtotal = item_count = 0
    has_price_changes = has_unavailable_lines = False
    foreign: set[str] = set()
    for line in lines:  # one pass: this runs for every cart a call answers with
        price, added = line.unit_price, line.added_unit_price
        if price is not added and (
            price.amount_minor != added.amount_minor or price.currency_code != added.currency_code
        ):
            has_price_changes = True
        if not line.available:
            has_unavailable_lines = True
            continue
        if price.currency_code != currency:
            foreign.add(price.currency_code)
        subtotal += price.amount_minor * line.quantity
        item_count += line.quantity
    if foreign:
        raise ValueError(f"a cart in {currency} cannot hold lines priced in {', '.join(sorted(foreign))}")
    return CartTotals(Money(currency, subtotal), item_count, has_price_changes, has_unavailable_lines)


# ---- carts as stored, priced, and the requests that change them ------------------------------------

IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass(frozen=True)
class StoredLine:
    sku: str
    quantity: int
    #: Price when the line was first added (its currency is the cart's).
    added_unit_price: Money
    #: Name when the line was first added: shown when the SKU has left the catalogue.
    product_name: str
    add_time: datetime
    update_time: datetime
    #: Last known catalogue price (history only; an ACTIVE cart is priced from the catalogue).
    unit_price: Money | None = None
    unavailable: bool = False


@dataclass(frozen=True)
class StoredCart:
    cart_id: str
    user_id: str
    session_id: str
    status: CartStatus
    lines: tuple[StoredLine, ...]
    create_time: datetime
    update_time: datetime
    #: ACTIVE only: when it expires unless touched again.
    expire_time: datetime | None
    #: "" when the cart has no lines.
    currency_code: str = ""
    checkout_id: str = ""
    order_id: str = ""
    convert_time: datetime | None = None
    merged_into_cart_id: str = ""

    @property
    def owner(self) -> str:
        """As `service_runtime.identity.Caller.owner`: "user:<id>" or "session:<id>"."""
        return f"user:{self.user_id}" if self.user_id else f"session:{self.session_id}"


def etag(cart_id: str, lines: Sequence[StoredLine]) -> str:
    """The cart's version: a digest of its lines (SKU, quantity, price when added), so it changes with
    every change to them, and two reads with equal etags saw equal lines."""
    text = "".join(
        [
            cart_id,
            *(
                f"|{line.sku}:{line.quantity}:{line.added_unit_price.currency_code}{line.added_unit_price.amount_minor}"
                for line in lines
            ),
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class CatalogueEntry:
    """What the cart needs of a product: its name and current price."""

    sku: str
    name: str
    price: Money


@dataclass(frozen=True)
class PricedCart:
    cart: StoredCart
    lines: tuple[PricedLine, ...]
    product_names: Mapping[str, str] = field(default_factory=dict)

    @property
    def totals(self) -> CartTotals:
        return cart_totals(self.lines)


def price_lines(lines: Sequence[StoredLine], catalogue: Mapping[str, CatalogueEntry]) -> tuple[PricedLine, ...]:
    """Prices lines from current catalogue prices; a SKU missing from the catalogue is unavailable and
    keeps its last known price (the price when added, for an ACTIVE cart)."""
    return tuple(price_line(line, catalogue.get(line.sku)) for line in lines)


def price_line(line: StoredLine, entry: CatalogueEntry | None) -> PricedLine:
    """One line of `price_lines`: `entry` is the SKU's catalogue entry, None when it is not sold."""
    if entry is None:
        return PricedLine(
            line.sku, line.quantity, line.unit_price or line.added_unit_price, line.added_unit_price, False
        )
    return PricedLine(line.sku, line.quantity, entry.price, line.added_unit_price, True)


def recorded_lines(lines: Sequence[StoredLine], catalogue: Mapping[str, CatalogueEntry]) -> tuple[StoredLine, ...]:
    """Lines as history records them: with the price and name they had when the cart left ACTIVE."""
    recorded = []
    for line in lines:
        entry = catalogue.get(line.sku)
        if entry is None:
            recorded.append(dataclasses_replace(line, unit_price=line.added_unit_price, unavailable=True))
        else:
            recorded.append(dataclasses_replace(line, unit_price=entry.price, product_name=entry.name))
    return tuple(recorded)


def merged_stored_lines(
    target: Sequence[StoredLine], plan: Merge, catalogue: Mapping[str, CatalogueEntry], now: datetime
) -> tuple[StoredLine, ...]:
    """The target cart's lines after a merge: its own lines first (quantities as merged, times kept unless
    the quantity changed), then the lines the merge added, priced now from the catalogue."""
    held = {line.sku: line for line in target}
    lines = []
    for line in plan.lines:
        existing = held.get(line.sku)
        if existing is not None:
            lines.append(
                existing
                if existing.quantity == line.quantity
                else dataclasses_replace(existing, quantity=line.quantity, update_time=now)
            )
        else:
            entry = catalogue[line.sku]
            lines.append(StoredLine(line.sku, line.quantity, entry.price, entry.name, now, now))
    return tuple(lines)


def validate_cart_id(cart_id: str) -> None:
    violations = Violations()
    check_id(violations, cart_id, "cart_id")
    violations.raise_if_any()


def validate_add(cart_id: str, sku: str, quantity: int, idempotency_key: str) -> None:
    violations = Violations()
    check_id(violations, cart_id, "cart_id")
    check_id(violations, sku, "sku")
    violations.check(1 <= quantity <= MAX_LINE_QUANTITY, "quantity", f"must be between 1 and {MAX_LINE_QUANTITY}")
    if not idempotency_key:
        violations.add("idempotency_key", "is required")
    elif not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        violations.add("idempotency_key", "must be 1..128 characters of [A-Za-z0-9._:-]")
    violations.raise_if_any()


def validate_set_quantity(cart_id: str, sku: str, quantity: int | None) -> None:
    violations = Violations()
    check_id(violations, cart_id, "cart_id")
    check_id(violations, sku, "sku")
    if quantity is None:
        violations.add("quantity", "is required (0 removes the line)")
    else:
        violations.check(0 <= quantity <= MAX_LINE_QUANTITY, "quantity", f"must be between 0 and {MAX_LINE_QUANTITY}")
    violations.raise_if_any()


def validate_sku_on_cart(cart_id: str, sku: str) -> None:
    violations = Violations()
    check_id(violations, cart_id, "cart_id")
    check_id(violations, sku, "sku")
    violations.raise_if_any()


def validate_owner(user_id: str, session_id: str) -> None:
    violations = Violations()
    if not user_id and not session_id:
        violations.add("owner", "exactly one of user_id or session_id is required")
    elif user_id:
        check_id(violations, user_id, "user_id")
    else:
        check_id(violations, session_id, "session_id")
    violations.raise_if_any()


def validate_merge(source_cart_id: str, user_id: str) -> None:
    violations = Violations()
    check_id(violations, source_cart_id, "source_cart_id")
    check_id(violations, user_id, "user_id")
    violations.raise_if_any()


def validate_convert(cart_id: str, checkout_id: str, order_id: str) -> None:
    violations = Violations()
    check_id(violations, cart_id, "cart_id")
    check_id(violations, checkout_id, "checkout_id")
    if order_id:
        check_id(violations, order_id, "order_id")
    violations.raise_if_any()


# ---- refusals ---------------------------------------------------------------------------------------

_STATUS_NAMES = {
    CartStatus.ACTIVE: "CART_STATUS_ACTIVE",
    CartStatus.CONVERTED: "CART_STATUS_CONVERTED",
    CartStatus.ABANDONED: "CART_STATUS_ABANDONED",
    CartStatus.MERGED: "CART_STATUS_MERGED",
}


def cart_not_found(cart_id: str) -> NotFound:
    return NotFound(f"cart {cart_id} was not found", reason="CART_NOT_FOUND", metadata={"cartId": cart_id})


def cart_not_active(cart_id: str, status: CartStatus) -> FailedPrecondition:
    return FailedPrecondition(
        f"cart {cart_id} is {status.value}, not active",
        reason="CART_NOT_ACTIVE",
        metadata={"cartId": cart_id, "status": _STATUS_NAMES[status]},
    )


def product_not_found(sku: str) -> NotFound:
    return NotFound(f"product {sku} is not in the catalogue", reason="PRODUCT_NOT_FOUND", metadata={"sku": sku})


def line_limit(max_lines: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"the cart already has {max_lines} lines, the most it may hold",
        reason="CART_LINE_LIMIT",
        metadata={"maxLines": str(max_lines)},
    )


def line_quantity_limit(sku: str, max_addable: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"the line for {sku} may take at most {max_addable} more units",
        reason="LINE_QUANTITY_LIMIT",
        metadata={"sku": sku, "maxAddable": str(max_addable)},
    )


def line_not_found(sku: str) -> NotFound:
    return NotFound(f"the cart has no line for {sku}", reason="LINE_NOT_FOUND", metadata={"sku": sku})


def idempotency_key_reused(key: str) -> AlreadyExists:
    return AlreadyExists(
        "this idempotency key was used for a different AddItem on this cart",
        reason="IDEMPOTENCY_KEY_REUSED",
        metadata={"idempotencyKey": key},
    )


def owner_mismatch() -> PermissionDenied:
    return PermissionDenied("the owner named is not the caller named by the token", reason="OWNER_MISMATCH")


def already_converted(checkout_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        "the cart was converted by another checkout",
        reason="CART_ALREADY_CONVERTED",
        metadata={"checkoutId": checkout_id},
    )


def source_not_anonymous(cart_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"cart {cart_id} belongs to a user, not an anonymous session",
        reason="SOURCE_NOT_ANONYMOUS",
        metadata={"cartId": cart_id},
    )
