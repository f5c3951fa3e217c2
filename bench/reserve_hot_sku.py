"""Hot-SKU reservations: the whole ReserveInventory RPC versus its core conditional UPDATE.

Both run in the same process run, against the same PostgreSQL, one after the other:

1. gRPC: `--clients` concurrent clients call ReserveInventory for one SKU (quantity 1, a new checkout
   each call) on an inventory service started as its own process, for `--seconds`.
2. SQL floor: the same number of concurrent psycopg connections issue the conditional UPDATE that a
   reservation is built on (`reserved = reserved + 1 WHERE stock_on_hand - reserved >= 1`), one
   autocommit transaction each, for `--seconds`.

It prints completed operations, rate, p50/p99 latency for each, and the ratio gRPC / SQL: the cost of
everything a reservation adds (checkout idempotency row, lines, the RPC, cache invalidation).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import grpc
import psycopg
from grpc_health.v1 import health_pb2_grpc
from psycopg import sql

from devstack.mesh import health_of
from inventory_svc.__main__ import SPEC
from service_runtime.migrations import apply_migrations
from shop.inventory.v1 import inventory_service_pb2 as pb
from shop.inventory.v1 import inventory_service_pb2_grpc as pb_grpc
from shop.type.v1 import line_item_pb2, money_pb2

HOT_SKU = "HOT-SKU"
STOCK = 1_000_000_000


@dataclass
class Result:
    name: str
    latencies: list[float]
    seconds: float

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


def _database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def _drive(name: str, clients: int, seconds: float, operation: Callable[[int, int], Awaitable[None]]) -> Result:
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def client(index: int) -> None:
        sequence = 0
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            await operation(index, sequence)
            latencies.append(time.perf_counter() - started)
            sequence += 1

    async def progress() -> None:
        while time.perf_counter() < stop_at:
            await asyncio.sleep(2)
            print(f"  {name}: {len(latencies)} done", flush=True)

    began = time.perf_counter()
    reporter = asyncio.create_task(progress())
    await asyncio.gather(*(client(i) for i in range(clients)))
    reporter.cancel()
    return Result(name, latencies, time.perf_counter() - began)


async def _wait_serving(address: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if await health_of(health) == "SERVING":
                return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"inventory service at {address} did not become SERVING in {timeout} s")


async def run(clients: int, seconds: float, port: int) -> tuple[Result, Result]:
    server_url = _database(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/shop"), "postgres")
    name = f"shop_bench_{uuid.uuid4().hex[:8]}"
    database_url = _database(server_url, name)
    async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    service = None
    try:
        await apply_migrations(database_url, schema=SPEC.schema, directory=SPEC.migrations)
        address = f"127.0.0.1:{port}"
        environment = {
            **os.environ,
            "DATABASE_URL": database_url,
            "GRPC_LISTEN_ADDRESS": address,
            "REDIS_KEY_PREFIX": f"bench:{name}:",
            "DB_POOL_MAX_SIZE": str(max(4, clients)),
            "LOG_LEVEL": "WARNING",
        }
        service = subprocess.Popen([sys.executable, "-m", "inventory_svc"], env=environment)
        await _wait_serving(address, timeout=30)
        print(f"inventory service up on {address} (database {name}); {clients} clients, {seconds:g} s per phase")

        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.InventoryServiceStub(channel)
            await stub.UpsertProduct(
                pb.UpsertProductRequest(
                    sku=HOT_SKU,
                    name="Hot",
                    price=money_pb2.Money(currency_code="USD", amount_minor=100),
                    weight_grams=1,
                )
            )
            await stub.AdjustStock(
                pb.AdjustStockRequest(
                    sku=HOT_SKU,
                    delta=1_000_000,
                    reason=pb.STOCK_ADJUSTMENT_REASON_RECEIVED,
                    idempotency_key="bench-stock",
                )
            )
            line = [line_item_pb2.LineItem(sku=HOT_SKU, quantity=1)]

            async def reserve(client: int, sequence: int) -> None:
                await stub.ReserveInventory(
                    pb.ReserveInventoryRequest(checkout_id=f"b{client}-{sequence}", items=line), timeout=10
                )

            print("phase 1/2: ReserveInventory over gRPC")
            via_grpc = await _drive("grpc", clients, seconds, reserve)

        connections = [await psycopg.AsyncConnection.connect(database_url, autocommit=True) for _ in range(clients)]
        try:
            statement = (
                "UPDATE inventory.products SET reserved = reserved + 1, updated_at = now() "
                "WHERE sku = %s AND stock_on_hand - reserved >= 1 RETURNING sku"
            )

            async def conditional_update(client: int, sequence: int) -> None:
                cursor = await connections[client].execute(statement, (HOT_SKU,))
                assert await cursor.fetchone() is not None

            print("phase 2/2: the conditional UPDATE through psycopg")
            via_sql = await _drive("sql", clients, seconds, conditional_update)
        finally:
            for connection in connections:
                await connection.close()
        return via_grpc, via_sql
    finally:
        if service is not None:
            service.terminate()
            service.wait(timeout=15)
        async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as admin:
            await admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench reserve-hot-sku",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients in each phase (default 32)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase (default 10)")
    parser.add_argument("--port", type=int, default=50152, help="port for the benchmarked service (default 50152)")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0:
        parser.error("--clients must be >= 1 and --seconds > 0")
    via_grpc, via_sql = asyncio.run(run(args.clients, args.seconds, args.port))
    print()
    print(f"{'path':<34} {'ops':>8} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for result, label in ((via_grpc, "ReserveInventory (gRPC)"), (via_sql, "conditional UPDATE (psycopg)")):
        print(
            f"{label:<34} {len(result.latencies):>8} {result.rate:>9.0f} "
            f"{result.percentile(0.5):>8.2f} {result.percentile(0.99):>8.2f}"
        )
    print(
        f"\nratio gRPC / SQL throughput: {via_grpc.rate / via_sql.rate:.2f}"
        f"   (median latency ratio {statistics.median(via_grpc.latencies) / statistics.median(via_sql.latencies):.2f})"
    )
    return 0
