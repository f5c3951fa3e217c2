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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from service_runtime.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
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
    available = [line for line in lines if line.available]
    foreign = sorted({line.unit_price.currency_code for line in available} - {currency})
    if foreign:
        raise ValueError(f"a cart in {currency} cannot hold lines priced in {', '.join(foreign)}")
    return CartTotals(
        subtotal=Money(currency, sum(line.line_total.amount_minor for line in available)),
        item_count=sum(line.quantity for line in available),
        has_price_changes=any(line.price_changed for line in lines),
        has_unavailable_lines=any(not line.available for line in lines),
    )
