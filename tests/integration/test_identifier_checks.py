"""Identifier CHECKs: none uses a bounded regex repetition, and the cheaper form accepts exactly what the old did.

PostgreSQL evaluates every CHECK of a table on every write of a row; `'^[A-Za-z0-9._-]{1,64}$'` costs tens of
microseconds per evaluation where `'^[A-Za-z0-9._-]+$' AND char_length(x) <= 64` costs about two (the
`*_cheaper_identifier_checks.sql` migrations say more).
"""

from __future__ import annotations

import re

import psycopg
import pytest

BOUNDED_REPETITION = r"\{[0-9]+,[0-9]+\}"

#: (the old CHECK's pattern, the new CHECK's pattern, its char_length bounds): every form the migrations rewrote.
REWRITES = [
    ("^[A-Za-z0-9._-]{1,64}$", "^[A-Za-z0-9._-]+$", 0, 64),
    ("^[A-Za-z0-9._:-]{1,128}$", "^[A-Za-z0-9._:-]+$", 0, 128),
    ("^[A-Za-z0-9._-]{0,64}$", "^[A-Za-z0-9._-]*$", 0, 64),
    ("^[A-Z_]{0,32}$", "^[A-Z_]*$", 0, 32),
    ("^[A-Z][A-Z0-9_]{0,63}$", "^[A-Z][A-Z0-9_]*$", 0, 64),
    ("^[a-z][a-z0-9_]{0,63}$", "^[a-z][a-z0-9_]*$", 0, 64),
    ("^[A-Z0-9-]{8,40}$", "^[A-Z0-9-]+$", 8, 40),
]

HOSTILE_VALUES = [
    "",
    "a",
    "A",
    "_",
    "-",
    ":",
    ".",
    "a b",
    "a\n",
    "\na",
    "ä",
    "A:B",
    "a-b_c.d",
    "ORDER_SHIPPED",
    "order_shipped",
    "1ABC",
    "Z" * 7,
    "Z" * 8,
    "Z" * 40,
    "Z" * 41,
    "a" * 32,
    "A" * 33,
    "a" * 63,
    "a" * 64,
    "a" * 65,
    "a" * 128,
    "a" * 129,
    "a" * 64 + ":",
    "x" * 200,
    "a%",
    "a'b",
    "a\\b",
    "🙂",
    "a\x7f",
]


async def test_no_check_constraint_uses_a_bounded_regex_repetition(database_url):
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        rows = await (
            await connection.execute(
                "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c"
                " WHERE c.contype = 'c' AND pg_get_constraintdef(c.oid) ~ %s",
                (BOUNDED_REPETITION,),
            )
        ).fetchall()
        identifier_checks = await (
            await connection.execute(
                "SELECT count(*) FROM pg_constraint c WHERE c.contype = 'c'"
                " AND pg_get_constraintdef(c.oid) LIKE '%%char_length%%'"
            )
        ).fetchone()

    assert rows == [], f"CHECKs with a bounded repetition (slow on every row write): {rows}"
    assert identifier_checks is not None and identifier_checks[0] >= 40  # the rewritten ones are still there


@pytest.mark.parametrize(("old", "new", "shortest", "longest"), REWRITES)
async def test_the_cheaper_check_accepts_exactly_what_the_old_one_did(database_url, old, new, shortest, longest):
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        rows = await (
            await connection.execute(
                "SELECT v, v ~ %(old)s, v ~ %(new)s AND char_length(v) BETWEEN %(shortest)s AND %(longest)s"
                " FROM unnest(%(values)s::text[]) AS v",
                {"old": old, "new": new, "shortest": shortest, "longest": longest, "values": HOSTILE_VALUES},
            )
        ).fetchall()

    disagreements = [value for value, by_old, by_new in rows if by_old != by_new]
    assert disagreements == []
    assert any(by_old for _, by_old, _ in rows) and not all(by_old for _, by_old, _ in rows)
    assert all(re.fullmatch(old.strip("^$"), value) is not None or not accepted for value, accepted, _ in rows)


@pytest.mark.parametrize(
    ("function", "schema", "table", "least_columns"),
    [
        ("payment.payment_rules", "payment", "payments", 20),  # payment 0006
        ("checkout.checkout_rules", "checkout", "checkouts", 40),  # gateway 0007
        ("checkout.saga_step_rules", "checkout", "saga_steps", 10),  # gateway 0007
    ],
)
async def test_a_rules_function_names_only_columns_its_table_has_and_no_bounded_repetition(
    database_url, function, schema, table, least_columns
):
    """A table's rules as one CHECK calling PL/pgSQL are no longer tied by PostgreSQL to the columns they read:
    a later migration that renamed or dropped a column would make every write of the table fail (42703,
    answered INTERNAL) instead of being refused. This keeps each function and its table in step."""
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        source = await (
            await connection.execute(
                "SELECT prosrc FROM pg_proc WHERE oid = %s::regprocedure", (f"{function}({schema}.{table})",)
            )
        ).fetchone()
        columns = await (
            await connection.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
                (schema, table),
            )
        ).fetchall()
    assert source is not None
    named = set(re.findall(r"\br\.([a-z_][a-z0-9_]*)", source[0]))
    assert len(named) >= least_columns  # the rules are there
    assert named - {column for (column,) in columns} == set()
    assert re.search(BOUNDED_REPETITION, source[0]) is None
