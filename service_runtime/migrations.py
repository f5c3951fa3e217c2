"""Numbered SQL migrations per service, applied once, in order, under an advisory lock.

A service's migrations live in `<service>/migrations/NNNN_description.sql` and own one PostgreSQL
schema. `apply_migrations` is called by `python -m <service> migrate` and at start-up: replicas that
start together serialise on `pg_advisory_lock`, so exactly one applies each file and the others see
it done. A file changed after it was applied is refused (its checksum is recorded).
"""

from __future__ import annotations

import hashlib
import logging
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """Migrations cannot be applied safely (bad file name, edited history, failed statement)."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_description.sql")
        migrations.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(f"{directory}: versions must run 1, 2, 3… without gaps, found {versions}")
    return migrations


def lock_key(schema: str) -> int:
    """A stable advisory-lock key per schema (a 32-bit CRC, well inside PostgreSQL's bigint keys)."""
    return zlib.crc32(f"shop.migrations.{schema}".encode())


async def apply_migrations(database_url: str, *, schema: str, directory: Path) -> list[int]:
    """Applies pending migrations; returns the versions applied by this call."""
    migrations = discover(directory)
    applied_now: list[int] = []
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        await connection.execute("SELECT pg_advisory_lock(%s)", (lock_key(schema),))
        try:
            await connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            await connection.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                ).format(sql.Identifier(schema))
            )
            cursor = await connection.execute(
                sql.SQL("SELECT version, checksum FROM {}.schema_migrations").format(sql.Identifier(schema))
            )
            done: dict[int, str] = dict(await cursor.fetchall())
            for migration in migrations:
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"{schema} migration {migration.version:04d}_{migration.name} "
                            "was edited after it was applied"
                        )
                    continue
                async with connection.transaction():
                    try:
                        await connection.execute(migration.sql)
                    except psycopg.Error as error:
                        raise MigrationError(
                            f"{schema} migration {migration.version:04d}_{migration.name} failed: {error}"
                        ) from error
                    await connection.execute(
                        sql.SQL(
                            "INSERT INTO {}.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)"
                        ).format(sql.Identifier(schema)),
                        (migration.version, migration.name, migration.checksum),
                    )
                applied_now.append(migration.version)
                log.info("applied %s migration %04d_%s", schema, migration.version, migration.name)
        finally:
            await connection.execute("SELECT pg_advisory_unlock(%s)", (lock_key(schema),))
    return applied_now
