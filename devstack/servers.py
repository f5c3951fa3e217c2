"""PostgreSQL and Redis for the mesh: the ones named in the environment, local ones, or private ones.

Order of preference, for each server separately:
1. DATABASE_URL / REDIS_URL when set;
2. a server on its default local port (127.0.0.1:5432 / 127.0.0.1:6379) when one answers;
3. a private server that devstack starts on a free loopback port (see `embedded`), stopped again when
   devstack exits.
DEVSTACK_EMBEDDED=1 skips 1 and 2.
"""

from __future__ import annotations

import asyncio
import contextlib

import psycopg
import redis
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import make_conninfo

from devstack import console
from devstack.embedded import start_private_postgres, start_private_redis
from devstack.endpoints import LOOPBACK, Server, database_of, port_is_open, postgres_url, redact
from devstack.errors import DevstackError, one_line
from devstack.processes import ProcessGroup
from devstack.settings import DevstackSettings

LOCAL_POSTGRES_PORT = 5432
LOCAL_REDIS_PORT = 6379


async def provide_postgres(group: ProcessGroup, settings: DevstackSettings, *, database_name: str) -> Server:
    """A reachable PostgreSQL holding database `database_name` (created if missing)."""
    if settings.embedded:
        if settings.database_url:
            console.detail("DEVSTACK_EMBEDDED=1: ignoring DATABASE_URL")
        server = await start_private_postgres(group, settings, database_name=database_name)
    elif settings.database_url:
        server = Server("postgresql", settings.database_url, "DATABASE_URL")
        console.detail(f"PostgreSQL: using DATABASE_URL ({redact(server.url)})")
    elif port_is_open(LOCAL_POSTGRES_PORT):
        server = Server("postgresql", postgres_url(LOCAL_POSTGRES_PORT, database_name), "local")
        console.detail(f"PostgreSQL: using the local server on {server.address}")
    else:
        console.detail(f"PostgreSQL: nothing answers on {LOOPBACK}:{LOCAL_POSTGRES_PORT}; starting a private one")
        server = await start_private_postgres(group, settings, database_name=database_name)
    if await asyncio.to_thread(ensure_database, server):
        console.detail(f"PostgreSQL: created database {database_of(server.url)!r}")
    return server


async def provide_redis(
    group: ProcessGroup, settings: DevstackSettings, *, database_number: int, durable: bool = False
) -> Server:
    """A reachable Redis; `database_number` picks the logical database when devstack chooses the URL, and a
    private one is `durable` (append-only file) when asked."""
    if settings.embedded:
        if settings.redis_url:
            console.detail("DEVSTACK_EMBEDDED=1: ignoring REDIS_URL")
        return await start_private_redis(group, settings, database_number=database_number, durable=durable)
    if settings.redis_url:
        server = Server("redis", settings.redis_url, "REDIS_URL")
        console.detail(f"Redis: using REDIS_URL ({redact(server.url)})")
        await asyncio.to_thread(check_redis, server)
        return server
    if port_is_open(LOCAL_REDIS_PORT):
        server = Server("redis", f"redis://{LOOPBACK}:{LOCAL_REDIS_PORT}/{database_number}", "local")
        console.detail(f"Redis: using the local server on {server.address}")
        await asyncio.to_thread(check_redis, server)
        return server
    console.detail(f"Redis: nothing answers on {LOOPBACK}:{LOCAL_REDIS_PORT}; starting a private one")
    return await start_private_redis(group, settings, database_number=database_number, durable=durable)


def ensure_database(server: Server) -> bool:
    """Creates the server's database if it does not exist; True when it was created."""
    name = database_of(server.url)
    maintenance = make_conninfo(server.url, dbname="postgres", connect_timeout=5)
    try:
        with psycopg.connect(maintenance, autocommit=True) as connection:
            if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return False
            with contextlib.suppress(pg_errors.DuplicateDatabase):  # another devstack created it meanwhile
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                return True
            return False
    except psycopg.OperationalError as error:
        raise DevstackError(
            f"cannot use PostgreSQL at {server.address} ({server.origin}): {one_line(error)}\n  {_advice(server)}"
        ) from None


def drop_database(server: Server) -> None:
    name = database_of(server.url)
    maintenance = make_conninfo(server.url, dbname="postgres", connect_timeout=5)
    with psycopg.connect(maintenance, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def delete_keys(server: Server, prefix: str) -> int:
    client = redis.Redis.from_url(server.url, socket_connect_timeout=2, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        return int(client.delete(*keys)) if keys else 0
    finally:
        client.close()


def check_redis(server: Server) -> None:
    client = redis.Redis.from_url(server.url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        raise DevstackError(
            f"cannot use Redis at {server.address} ({server.origin}): {one_line(error)}\n  {_advice(server)}"
        ) from None
    finally:
        client.close()


def _advice(server: Server) -> str:
    variable = "DATABASE_URL" if server.name == "postgresql" else "REDIS_URL"
    if server.origin == variable:
        return f"Fix {variable} or unset it (devstack then finds a local server or starts a private one)."
    return f"Set {variable} to a server you can use, or DEVSTACK_EMBEDDED=1 for a private one."
