"""Request checks every service makes the same way: ids, free text, money, line items.

Each check adds field violations to a `Violations` collector (service_runtime.errors), so one request
gets one INVALID_ARGUMENT naming every bad field.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from service_runtime.errors import Violations
from service_runtime.values import LineItem, Money

#: Ids the mesh hands around (SKUs, checkout, order and payment ids): 1..64 of [A-Za-z0-9._-].
ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
CURRENCY_PATTERN = re.compile(r"[A-Z]{3}")


def check_id(violations: Violations, value: str, field: str) -> None:
    if not value:
        violations.add(field, "is required")
    elif not ID_PATTERN.fullmatch(value):
        violations.add(field, "must be 1..64 characters of [A-Za-z0-9._-]")


def check_text(violations: Violations, value: str, field: str, *, maximum: int, required: bool) -> None:
    """Free text: required or not, at most `maximum` characters, no NUL (PostgreSQL refuses it)."""
    if required and not value.strip():
        violations.add(field, "is required")
    elif len(value) > maximum:
        violations.add(field, f"must be at most {maximum} characters")
    elif "\x00" in value:
        violations.add(field, "must not contain NUL characters")


#: An e-mail address as an order's mail is sent to it: one "@" with something on each side, and nothing that is
#: whitespace or a control character (a CR/LF in an address is a header injected into the message).
EMAIL_PATTERN = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+")


def check_email(violations: Violations, value: str, field: str) -> None:
    """An optional e-mail address: empty, or at most 254 characters matching EMAIL_PATTERN."""
    if not value:
        return
    if len(value) > 254:
        violations.add(field, "must be at most 254 characters")
    elif not EMAIL_PATTERN.fullmatch(value):
        violations.add(field, "must be an e-mail address (one @, no spaces or control characters)")


def check_money(
    violations: Violations, money: Money | None, field: str, *, maximum_minor: int, currency: str | None = None
) -> None:
    """A required, non-negative amount up to `maximum_minor`, in `currency` when one is given."""
    if money is None:
        violations.add(field, "is required")
        return
    if currency is not None and money.currency_code != currency:
        violations.add(f"{field}.currency_code", f"must be {currency}, the currency this shop sells in")
    elif not CURRENCY_PATTERN.fullmatch(money.currency_code):
        violations.add(f"{field}.currency_code", "must be a 3-letter ISO 4217 code")
    if not 0 <= money.amount_minor <= maximum_minor:
        violations.add(f"{field}.amount_minor", f"must be between 0 and {maximum_minor}")


def check_line_items(
    violations: Violations, lines: Sequence[LineItem], field: str, *, max_lines: int, max_quantity: int
) -> None:
    """1..max_lines lines, each a valid SKU once, with 1..max_quantity units."""
    if not lines:
        violations.add(field, "must have at least one line")
        return
    if len(lines) > max_lines:
        violations.add(field, f"must have at most {max_lines} lines")
        return
    seen: set[str] = set()
    for index, line in enumerate(lines):
        check_id(violations, line.sku, f"{field}[{index}].sku")
        if line.sku in seen:
            violations.add(f"{field}[{index}].sku", f"duplicates an earlier line for {line.sku}")
        seen.add(line.sku)
        if not 1 <= line.quantity <= max_quantity:
            violations.add(f"{field}[{index}].quantity", f"must be between 1 and {max_quantity}")
