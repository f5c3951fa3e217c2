"""Gateway 0007 turned the CHECKs of checkout.checkouts (44) and checkout.saga_steps (14) into one CHECK each that
calls a PL/pgSQL function. These tests write the same rows into a database migrated up to 0006 (the CHECKs as
they were) and into one migrated to the end (the functions), and require the same answer for every row: written,
or refused by the same constraint name (the first broken rule, in name order, as PostgreSQL checks CHECKs)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from gateway.__main__ import SPEC
from gateway.domain import SagaStep
from service_runtime.migrations import apply_migrations, discover

#: The last migration with the CHECKs as they were.
BEFORE_FUNCTIONS = 6

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TODAY = date(2026, 12, 1)
STEPS = [step.value for step in SagaStep]
TEXT = [None, "", "a", "A", "AB_C", "a-b.c_9", "a b", "ä", "a\n", "x" * 32, "x" * 33, "x" * 64, "x" * 65]
LONG_TEXT = [*TEXT, "x" * 128, "x" * 129, "x" * 254, "x" * 255, "x" * 256, "x" * 257, "x" * 500, "x" * 501]
COUNTS = [None, -1, 0, 1, 2, 60, 61]
MONEY = [None, -1, 0, 10, 100, 110, 1000]
STAMPS = [None, NOW]
JSON_VALUES = [Jsonb({}), Jsonb({"a": 1}), Jsonb([]), Jsonb(1), Jsonb(None)]

#: A checkout row every rule accepts, and the values tried for each column.
CHECKOUT = {
    "checkout_id": "co-1",
    "user_id": "u1",
    "cart_id": "c1",
    "status": "quoted",
    "shipping_address": Jsonb({}),
    "shipping_method": "standard",
    "contact_email": "",
    "currency_code": "USD",
    "subtotal_minor": 100,
    "shipping_minor": 10,
    "tax_minor": 0,
    "total_minor": 110,
    "tax_rate_basis_points": 0,
    "free_shipping_applied": False,
    "min_business_days": 1,
    "max_business_days": 3,
    "earliest_delivery_date": TODAY,
    "latest_delivery_date": TODAY + timedelta(days=3),
    "reservation_expires_at": NOW,
    "cart_etag": "e",
    "tax_rate_ppm": 0,
    "shipping_taxed": False,
    "discount_minor": 0,
    "card_brand": "",
    "card_last4": "",
    "shipping_options": b"",
    "recoveries": 0,
    "last_failure_code": "",
    "last_failure_attempt": 0,
    "last_failure_payment": "",
    "traceparent": "",
}
CHECKOUT_VALUES: dict[str, list[Any]] = {
    "checkout_id": ["co-2", "co 3", "x" * 64, "x" * 65, ""],
    "user_id": TEXT,
    "cart_id": TEXT,
    "status": [None, "quoted", "placing", "completed", "failed", "cancelled", "expired", "done", ""],
    "shipping_address": JSON_VALUES,
    "shipping_method": [None, "standard", "express", "overnight", "drone"],
    "contact_email": LONG_TEXT,
    "currency_code": [None, "USD", "EUR", "usd", "US1"],
    "subtotal_minor": MONEY,
    "shipping_minor": MONEY,
    "tax_minor": MONEY,
    "total_minor": MONEY,
    "discount_minor": MONEY,
    "tax_rate_basis_points": [None, -1, 0, 10000, 10001],
    "tax_rate_ppm": [None, -1, 0, 1000000, 1000001],
    "min_business_days": COUNTS,
    "max_business_days": COUNTS,
    "earliest_delivery_date": [None, TODAY, TODAY + timedelta(days=5)],
    "latest_delivery_date": [None, TODAY, TODAY + timedelta(days=3)],
    "place_attempt": COUNTS,
    "recoveries": COUNTS,
    "last_failure_attempt": COUNTS,
    "current_step": [None, *STEPS, "ship_it"],
    "order_id": TEXT,
    "payment_id": TEXT,
    "last_failure_reason": [None, "PAYMENT_DECLINED", "declined", "9X", "A" * 64, "A" * 65],
    "last_failure_message": LONG_TEXT,
    "last_failure_step": [None, *STEPS, "ship_it"],
    "last_failure_at": STAMPS,
    "last_failure_code": [None, "", "DECLINED", "declined", "A" * 32, "A" * 33],
    "last_failure_payment": TEXT,
    "lease_owner": LONG_TEXT,
    "lease_expires_at": STAMPS,
    "ended_at": STAMPS,
    "cart_etag": LONG_TEXT,
    "payment_token": LONG_TEXT,
    "card_brand": TEXT,
    "card_last4": [None, "", "4242", "424", "42424", "abcd"],
    "resolution_action": [None, "order_cancelled", "payment_voided_stock_released", "refunded"],
    "resolution_reason": LONG_TEXT,
    "resolved_by": LONG_TEXT,
    "resolved_at": STAMPS,
}

STEP = {
    "checkout_id": "co-1",
    "attempt": 1,
    "step": "authorize_payment",
    "step_key": "co-1:1:authorize_payment",
    "status": "running",
    "compensation": "/shop.payment.v1.PaymentService/VoidPayment",
    "attempts": 1,
}
STEP_VALUES: dict[str, list[Any]] = {
    "attempt": COUNTS,
    "step": [None, *STEPS, "ship_it"],
    "step_key": [None, "", "k", "co-1:1:x", "a b", "x" * 128, "x" * 129],
    "status": [None, "pending", "running", "succeeded", "failed", "compensating", "compensated", "done"],
    "compensation": [None, "/a.B/C", "/shop.x.v1.S/Undo", "a.B/C", "/a/", "/a b/C"],
    "attempts": COUNTS,
    "attempts_before_retry": COUNTS,
    "last_error_reason": TEXT,
    "last_error_code": [None, "", "UNAVAILABLE", "unavailable", "A" * 32, "A" * 33],
    "payment_id": TEXT,
    "result": JSON_VALUES,
    "ended_at": STAMPS,
}


#: Rows that reach a rule only past others (each breaks one rule and keeps those before it in name order).
CHECKOUT_CRAFTED = [{"status": "failed", "ended_at": NOW}]
STEP_CRAFTED = [{"step": "ship_it", "compensation": None}]
#: Rules that can never be the first one broken: the rule named before them already refuses every row they do.
SHADOWED = {
    "checkouts": {"checkouts_subtotal_minor_check"},  # checkouts_check: 0 <= discount_minor <= subtotal_minor
    "saga_steps": {"saga_steps_attempts_check"},  # retry_budget_within_attempts: 0 <= attempts_before_retry <= attempts
}


def rows(
    base: dict[str, Any], values: dict[str, list[Any]], crafted: list[dict[str, Any]], seed: int, combined: int
) -> list[dict[str, Any]]:
    """The base row; with each value of each column alone; the crafted changes; then `combined` rows changing
    2-5 columns at random."""
    made = [base]
    made += [{**base, column: value} for column, options in values.items() for value in options]
    made += [{**base, **changes} for changes in crafted]
    chooser = random.Random(seed)
    for _ in range(combined):
        changed = chooser.sample(sorted(values), chooser.randint(2, 5))
        made.append({**base, **{column: chooser.choice(values[column]) for column in changed}})
    return made


async def outcome(connection: psycopg.AsyncConnection[Any], table: str, row: dict[str, Any], parent: bool) -> str:
    """'written', the name of the constraint that refused the row, or the class of any other error."""
    async with connection.transaction(force_rollback=True):
        if parent:  # a saga step needs its checkout
            await insert(connection, "checkouts", CHECKOUT)
        try:
            async with connection.transaction():
                await insert(connection, table, row)
        except psycopg.errors.CheckViolation as refused:
            return f"CHECK {refused.diag.constraint_name}"
        except psycopg.Error as error:
            return type(error).__name__
    return "written"


async def insert(connection: psycopg.AsyncConnection[Any], table: str, row: dict[str, Any]) -> None:
    await connection.execute(
        sql.SQL("INSERT INTO checkout.{} ({}) VALUES ({})").format(
            sql.Identifier(table),
            sql.SQL(", ").join(map(sql.Identifier, row)),
            sql.SQL(", ").join(sql.Placeholder() * len(row)),
        ),
        list(row.values()),
    )


@pytest.fixture
async def before_functions(empty_database_url: str, tmp_path: Path) -> str:
    """A database with the gateway's migrations up to the one before the functions: the CHECKs as they were."""
    for migration in discover(SPEC.migrations):
        if migration.version <= BEFORE_FUNCTIONS:
            (tmp_path / f"{migration.version:04d}_{migration.name}.sql").write_text(migration.sql)
    await apply_migrations(empty_database_url, schema=SPEC.schema, directory=tmp_path)
    return empty_database_url


@pytest.mark.parametrize(
    ("table", "base", "values", "crafted", "parent"),
    [
        ("checkouts", CHECKOUT, CHECKOUT_VALUES, CHECKOUT_CRAFTED, False),
        ("saga_steps", STEP, STEP_VALUES, STEP_CRAFTED, True),
    ],
)
async def test_the_rule_function_refuses_exactly_what_the_checks_it_replaced_did(
    before_functions: str,
    database_url: str,
    table: str,
    base: dict[str, Any],
    values: dict[str, list[Any]],
    crafted: list[dict[str, Any]],
    parent: bool,
) -> None:
    tried = rows(base, values, crafted, seed=7, combined=400)
    async with (
        await psycopg.AsyncConnection.connect(before_functions, autocommit=True) as old,
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as new,
    ):
        rules = [
            await (
                await connection.execute(
                    "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'c'",
                    (f"checkout.{table}",),
                )
            ).fetchall()
            for connection in (old, new)
        ]
        answers = [(await outcome(old, table, row, parent), await outcome(new, table, row, parent)) for row in tried]

    checks_before, checks_now = ({name for (name,) in found} for found in rules)
    assert len(checks_before) == {"checkouts": 44, "saga_steps": 14}[table]
    assert len(checks_now) == 1  # the function's CHECK is the table's only one
    disagreements = [(row, was, now) for row, (was, now) in zip(tried, answers, strict=True) if was != now]
    assert disagreements == []
    assert answers[0] == ("written", "written")  # the base row is valid
    # Every old rule that can be the first broken one refused some row, so each was compared; NOT NULLs too.
    refused_by = {was.removeprefix("CHECK ") for was, _ in answers if was.startswith("CHECK ")}
    assert refused_by == checks_before - SHADOWED[table]
    assert any(was == "NotNullViolation" for was, _ in answers)
