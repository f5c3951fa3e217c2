"""Test harness: real PostgreSQL and Redis, isolated per test, and real grpc.aio servers on port 0.

- Each test that asks for `database_url` gets its own database, copied from a template database that
  has every service's migrations applied once per session (`CREATE DATABASE … TEMPLATE …`).
- Each test gets its own Redis key prefix (`redis_prefix`), whose keys are deleted afterwards.
- `start_service(spec, **env)` runs a service in-process on 127.0.0.1:0 against both and waits until
  its health is SERVING; it is stopped when the test ends.

PostgreSQL and Redis come from DATABASE_URL / REDIS_URL (set by `make test`), else the default local ports.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis.asyncio as redis
from psycopg import sql

from service_runtime.migrations import apply_migrations
from service_runtime.server import RunningService
from service_runtime.server import start_service as host_start_service
from service_runtime.spec import ServiceSpec

#: Every service package of the mesh; each exposes its ServiceSpec as `<package>.__main__.SPEC`.
SERVICE_PACKAGES = (
    "inventory_svc",
    "cart_svc",
    "payment_svc",
    "order_svc",
    "shipping_svc",
    "notification_svc",
    "gateway",
)


def service_specs() -> list[ServiceSpec[Any]]:
    return [importlib.import_module(f"{package}.__main__").SPEC for package in SERVICE_PACKAGES]


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@pytest.fixture(scope="session")
def server_url() -> str:
    """URL of the PostgreSQL server under test, pointing at its maintenance database."""
    return _with_database(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/shop"), "postgres")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


async def _admin(server_url: str, *statements: sql.Composed | sql.SQL) -> None:
    async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as connection:
        for statement in statements:
            await connection.execute(statement)


@pytest.fixture(scope="session")
async def template_database(server_url: str) -> AsyncIterator[str]:
    """A database with every service's migrations applied; tests copy it."""
    name = f"shop_template_{uuid.uuid4().hex[:10]}"
    await _admin(server_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _with_database(server_url, name)
    for spec in service_specs():
        await apply_migrations(url, schema=spec.schema, directory=spec.migrations)
    yield name
    await _admin(server_url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
async def database_url(server_url: str, template_database: str) -> AsyncIterator[str]:
    """A fresh, fully migrated database for this test alone."""
    name = f"shop_test_{uuid.uuid4().hex[:12]}"
    await _admin(
        server_url,
        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template_database)),
    )
    yield _with_database(server_url, name)
    await _admin(server_url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
async def empty_database_url(server_url: str) -> AsyncIterator[str]:
    """A fresh database with no migrations applied."""
    name = f"shop_empty_{uuid.uuid4().hex[:12]}"
    await _admin(server_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield _with_database(server_url, name)
    await _admin(server_url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix no other test uses; its keys are removed after the test."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


StartService = Callable[..., Awaitable[RunningService]]


@pytest.fixture
async def start_service(database_url: str, redis_url: str, redis_prefix: str) -> AsyncIterator[StartService]:
    """Starts services in-process on port 0 against this test's database and Redis prefix."""
    running: list[RunningService] = []

    async def start(spec: ServiceSpec[Any], **env: str) -> RunningService:
        environ = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": redis_prefix,
            "GRPC_LISTEN_ADDRESS": "127.0.0.1:0",
            "GRPC_SHUTDOWN_GRACE_SECONDS": "0.5",
            "DB_POOL_MAX_SIZE": "20",
            **env,
        }
        service = await host_start_service(spec, spec.load_settings(environ))
        running.append(service)
        await service.wait_ready(timeout=20)
        return service

    yield start
    await asyncio.gather(*(service.stop() for service in running))
