"""Migrations: applied once, in order, whoever runs them and however many at once."""

from __future__ import annotations

import asyncio
import os
import sys

import psycopg

from inventory_svc.__main__ import SPEC
from service_runtime.migrations import MigrationError, apply_migrations, discover


async def tables_and_versions(database_url: str) -> tuple[list[str], list[int]]:
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        tables = await (
            await connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'inventory' ORDER BY 1"
            )
        ).fetchall()
        versions = await (
            await connection.execute("SELECT version FROM inventory.schema_migrations ORDER BY 1")
        ).fetchall()
    return [t[0] for t in tables], [v[0] for v in versions]


async def test_applying_migrations_twice_changes_nothing_the_second_time(empty_database_url):
    first = await apply_migrations(empty_database_url, schema=SPEC.schema, directory=SPEC.migrations)
    second = await apply_migrations(empty_database_url, schema=SPEC.schema, directory=SPEC.migrations)

    assert first == [m.version for m in discover(SPEC.migrations)]
    assert second == []
    tables, versions = await tables_and_versions(empty_database_url)
    assert {"products", "reservations", "reservation_lines", "stock_movements", "schema_migrations"} <= set(tables)
    assert versions == first


async def test_concurrent_migrators_apply_each_file_exactly_once(empty_database_url):
    results = await asyncio.gather(
        *(apply_migrations(empty_database_url, schema=SPEC.schema, directory=SPEC.migrations) for _ in range(6))
    )

    applied = sorted(version for result in results for version in result)
    assert applied == [m.version for m in discover(SPEC.migrations)]
    _, versions = await tables_and_versions(empty_database_url)
    assert versions == applied


async def test_two_migrate_processes_started_together_leave_one_correct_schema(empty_database_url):
    environment = {**os.environ, "DATABASE_URL": empty_database_url}
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "inventory_svc",
            "migrate",
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [await process.communicate() for process in processes]

    assert [process.returncode for process in processes] == [0, 0], outputs
    _, versions = await tables_and_versions(empty_database_url)
    assert versions == [m.version for m in discover(SPEC.migrations)]


async def test_a_migration_edited_after_it_was_applied_is_refused(empty_database_url, tmp_path):
    for migration in discover(SPEC.migrations):
        (tmp_path / f"{migration.version:04d}_{migration.name}.sql").write_text(migration.sql)
    await apply_migrations(empty_database_url, schema=SPEC.schema, directory=tmp_path)
    edited = sorted(tmp_path.glob("*.sql"))[0]
    edited.write_text(edited.read_text() + "\n-- edited\n")

    try:
        await apply_migrations(empty_database_url, schema=SPEC.schema, directory=tmp_path)
    except MigrationError as error:
        assert "edited after it was applied" in str(error)
    else:
        raise AssertionError("an edited migration was accepted")
