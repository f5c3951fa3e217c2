"""Hot-SKU reservations: the whole ReserveInventory RPC against two floors issued directly through psycopg.

Three phases in one run, against the same PostgreSQL and on the same client event loop (uvloop unless
--loop asyncio), each with `--clients` concurrent clients for `--seconds` in all. They run in turns of
`--interleave` seconds (1 by default; the order rotates every round), so that load from other processes
on a shared machine falls on all three alike and the ratios stay meaningful; `--interleave 0` runs them
one after the other.

1. grpc: ReserveInventory of one SKU (quantity 1, a new checkout id each call) on an inventory service
   started as its own process. Its settings come from the environment plus `--service-env KEY=VALUE`;
   the database pool size is the service's own default unless one of those sets DB_POOL_MAX_SIZE.
2. statement: the service's full reserve statement (`reserve_all_or_nothing` in inventory_svc/queries.sql,
   loaded through the service's own query loader) for one reservation, one autocommit statement per
   call, a new checkout id each call.
3. update: the conditional UPDATE a reservation is built on (`reserved = reserved + 1 WHERE stock_on_hand
   - reserved >= 1`), one autocommit statement per call.

The two floors borrow their connections from one psycopg_pool of as many connections as the service's
own database pool (`--floor-connections` to change it), as the service's requests do: with one
connection per client, 32 connections queueing on one row cost PostgreSQL more CPU per update than
the service's pool of 10 does, and the floors were slower than the same statements through a pool.

It prints completed operations, rate and p50/p99 latency per phase, the throughput ratios
gRPC/UPDATE (everything a reservation costs over the bare row update), gRPC/statement (the service around
its statement: gRPC, Python, pool, tracing) and statement/UPDATE (the statement itself: reservation row,
lines, the lock, the foreign keys), and, on Linux, the CPU each party used: the clients, the service, the
bench database's PostgreSQL backends, and the rest of the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from bench import harness
from bench.harness import free_port, machine_line, stop_process, wait_serving
from inventory_svc.__main__ import SPEC
from inventory_svc.repository import InventoryStatements
from service_runtime.identity import SERVICE_TOKEN, ServiceTokens
from service_runtime.migrations import apply_migrations
from service_runtime.settings import CommonSettings, EnvReader
from shop.inventory.v1 import inventory_service_pb2 as pb
from shop.inventory.v1 import inventory_service_pb2_grpc as pb_grpc
from shop.type.v1 import line_item_pb2, money_pb2

HOT_SKU = "HOT-SKU"
INITIAL_STOCK = 1_000_000  # the most one AdjustStock adds; far more than any phase reserves
PHASES = ("grpc", "statement", "update")
LABELS = {
    "grpc": "ReserveInventory (gRPC)",
    "statement": "reserve statement (psycopg)",
    "update": "conditional UPDATE (psycopg)",
}
CONDITIONAL_UPDATE = (
    "UPDATE inventory.products SET reserved = reserved + 1, updated_at = now() "
    "WHERE sku = %s AND stock_on_hand - reserved >= 1 RETURNING sku"
)
PROGRESS_EVERY_SECONDS = 2.0


@dataclass
class Result:
    phase: str
    latencies: list[float]
    seconds: float
    #: Cores each party kept busy during the phase (client, service, PostgreSQL, everything else), if known.
    cores: Mapping[str, float] | None = None

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies) * 1000


@dataclass(frozen=True)
class ServiceSetup:
    """What the benchmarked service process runs with, as the bench reports it."""

    environment: Mapping[str, str]
    pool_max_size: int
    pool_source: str
    tracing: str
    reservation_ttl_seconds: float


class CpuMeter:
    """CPU time, from /proc (Linux), of the bench's clients (this process), the service process, the
    PostgreSQL backends of the bench database, and the rest of the machine, so a phase's cost can be read
    per operation and a busy machine is visible in the numbers. Backends that exit mid-phase are missed."""

    PARTIES = ("client", "service", "PostgreSQL", "other processes")

    def __init__(self, service_pid: int, database_name: str) -> None:
        self._service_pid = service_pid
        self._database = database_name
        self._tick = os.sysconf("SC_CLK_TCK")

    @staticmethod
    def available() -> bool:
        return os.path.exists("/proc/stat") and hasattr(os, "sysconf")

    def _ticks(self, pid: int | str) -> int:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime

    def _backends(self) -> dict[str, int]:
        ticks: dict[str, int] = {}
        for pid in harness.postgres_backends(self._database):
            with contextlib.suppress(OSError):  # the process ended meanwhile
                ticks[str(pid)] = self._ticks(pid)
        return ticks

    @staticmethod
    def _machine_busy_ticks() -> int:
        with open("/proc/stat") as stat:
            values = [int(value) for value in stat.readline().split()[1:]]
        return sum(values) - values[3] - values[4]  # all but idle and iowait

    def sample(self) -> tuple[float, float, dict[str, int], int]:
        return (
            time.process_time(),
            self._ticks(self._service_pid) / self._tick,
            self._backends(),
            self._machine_busy_ticks(),
        )

    def cpu_seconds(self, before: tuple[float, float, dict[str, int], int]) -> dict[str, float]:
        """CPU seconds each party used since `before` (a `sample()`)."""
        after = self.sample()
        client = after[0] - before[0]
        service = after[1] - before[1]
        database = sum(ticks - before[2].get(pid, 0) for pid, ticks in after[2].items()) / self._tick
        machine = (after[3] - before[3]) / self._tick
        other = max(0.0, machine - client - service - database)
        return dict(zip(self.PARTIES, (client, service, database, other), strict=True))


def service_setup(database_url: str, address: str, prefix: str, overrides: Mapping[str, str]) -> ServiceSetup:
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "GRPC_LISTEN_ADDRESS": address,
        "REDIS_KEY_PREFIX": prefix,
        "LOG_LEVEL": "WARNING",
        **overrides,
    }
    settings = SPEC.load_settings(environment)  # the service's own reading of its settings, defaults included
    if "DB_POOL_MAX_SIZE" in overrides:
        source = "--service-env"
    elif "DB_POOL_MAX_SIZE" in os.environ:
        source = "DB_POOL_MAX_SIZE in the environment"
    else:
        source = "the service's default"
    if environment.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        tracing = "off (OTEL_SDK_DISABLED=true)"
    elif environment.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        tracing = f"on, exported to {environment['OTEL_EXPORTER_OTLP_ENDPOINT']}"
    else:
        tracing = "on (spans created, not exported)"
    return ServiceSetup(
        environment=environment,
        pool_max_size=settings.common.db_pool_max_size,
        pool_source=source,
        tracing=tracing,
        reservation_ttl_seconds=settings.default_reservation_ttl_seconds,
    )


class Phase:
    """One path under test: `clients` concurrent clients repeating `operation`, run in one or more slices;
    latencies, time and CPU add up over the slices."""

    def __init__(
        self, name: str, clients: int, operation: Callable[[int, int], Awaitable[None]], meter: CpuMeter | None
    ) -> None:
        self.name = name
        self._clients = clients
        self._operation = operation
        self._meter = meter
        self._sequences = [0] * clients
        self.latencies: list[float] = []
        self.seconds = 0.0
        self._cpu = dict.fromkeys(CpuMeter.PARTIES, 0.0)

    async def run_for(self, seconds: float) -> None:
        cpu_before = self._meter.sample() if self._meter else None
        began = time.perf_counter()
        stop_at = began + seconds

        async def client(index: int) -> None:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                await self._operation(index, self._sequences[index])
                self.latencies.append(time.perf_counter() - started)
                self._sequences[index] += 1

        await asyncio.gather(*(client(index) for index in range(self._clients)))
        self.seconds += time.perf_counter() - began
        if self._meter and cpu_before:
            for party, cpu in self._meter.cpu_seconds(cpu_before).items():
                self._cpu[party] += cpu

    def result(self) -> Result:
        cores = {party: cpu / self.seconds for party, cpu in self._cpu.items()} if self._meter else None
        return Result(self.name, self.latencies, self.seconds, cores)


def _tokens() -> ServiceTokens:
    """Mesh service tokens (inventory's writes and reservations are for trusted callers only), signed
    with SERVICE_TOKEN_SECRET as the service under test has it (the development default unless set)."""
    settings = CommonSettings.from_env(EnvReader(os.environ), service_name="bench", default_port=0)
    return ServiceTokens(settings.identity)


async def _seed(address: str) -> None:
    """The hot product and its stock, through the API (so the ledger agrees)."""
    trusted = ((SERVICE_TOKEN, _tokens().current()),)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.InventoryServiceStub(channel)
        await stub.UpsertProduct(
            pb.UpsertProductRequest(
                sku=HOT_SKU, name="Hot", price=money_pb2.Money(currency_code="USD", amount_minor=100), weight_grams=1
            ),
            metadata=trusted,
        )
        await stub.AdjustStock(
            pb.AdjustStockRequest(
                sku=HOT_SKU, delta=INITIAL_STOCK, reason=pb.STOCK_ADJUSTMENT_REASON_RECEIVED, idempotency_key="bench"
            ),
            metadata=trusted,
        )


async def _run_phases(phases: Sequence[Phase], seconds: float, slice_seconds: float) -> None:
    """Runs every phase for `seconds` in all: one after the other when `slice_seconds` is 0, else in turns
    of `slice_seconds`, rotating the order each round, so that load from elsewhere on the machine falls on
    all phases alike."""
    if not slice_seconds or slice_seconds >= seconds:
        for number, phase in enumerate(phases, start=1):
            print(f"phase {number}/{len(phases)}: {LABELS[phase.name]}", flush=True)
            await _with_progress(phase, phase.run_for(seconds), seconds)
        return
    rounds = math.ceil(seconds / slice_seconds - 1e-9)
    print(f"phases in turns of {slice_seconds:g} s, {rounds} rounds, order rotating each round", flush=True)
    for round_number in range(rounds):
        length = min(slice_seconds, seconds - round_number * slice_seconds)
        shift = round_number % len(phases)
        for phase in [*phases[shift:], *phases[:shift]]:
            await phase.run_for(length)
        if (round_number + 1) % max(
            1, round(PROGRESS_EVERY_SECONDS / slice_seconds)
        ) == 0 or round_number + 1 == rounds:
            rates = ", ".join(f"{phase.name} {len(phase.latencies) / phase.seconds:.0f}/s" for phase in phases)
            print(f"  round {round_number + 1}/{rounds}: {rates}", flush=True)


async def _with_progress(phase: Phase, running: Awaitable[None], seconds: float) -> None:
    began = time.perf_counter()

    async def progress() -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_SECONDS)
            elapsed = time.perf_counter() - began
            done = len(phase.latencies)
            print(f"  {phase.name}: {elapsed:4.1f}/{seconds:g} s, {done} done, {done / elapsed:.0f}/s", flush=True)

    reporter = asyncio.create_task(progress())
    try:
        await running
    finally:
        reporter.cancel()


async def run(
    clients: int,
    seconds: float,
    port: int,
    service_env: Mapping[str, str],
    phases: Sequence[str],
    slice_seconds: float,
    floor_connections: int,
) -> dict[str, Result]:
    server_url = harness.server_url()
    name = f"shop_bench_{uuid.uuid4().hex[:8]}"
    database_url = harness.database_url(server_url, name)
    address = f"127.0.0.1:{port or free_port()}"
    setup = service_setup(database_url, address, f"bench:{name}:", service_env)
    async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    service: subprocess.Popen[bytes] | None = None
    results: dict[str, Result] = {}
    try:
        await apply_migrations(database_url, schema=SPEC.schema, directory=SPEC.migrations)
        service = subprocess.Popen([sys.executable, "-m", "inventory_svc"], env=dict(setup.environment))
        await wait_serving(address, service, timeout=30)
        print(f"inventory service: pid {service.pid} on {address}, database {name}")
        print(f"  database pool max size {setup.pool_max_size} ({setup.pool_source}); tracing {setup.tracing}")
        if service_env:
            print(f"  --service-env {' '.join(f'{key}={value}' for key, value in service_env.items())}")
        connection_count = floor_connections or setup.pool_max_size
        print(f"{clients} clients, {seconds:g} s per phase; phases: {', '.join(phases)}", flush=True)
        print(f"  the floors share a pool of {connection_count} connections", flush=True)
        await _seed(address)
        meter = CpuMeter(service.pid, name) if CpuMeter.available() else None
        async with contextlib.AsyncExitStack() as resources:
            channel = await resources.enter_async_context(grpc.aio.insecure_channel(address))
            stub = pb_grpc.InventoryServiceStub(channel)
            line = [line_item_pb2.LineItem(sku=HOT_SKU, quantity=1)]
            statement = InventoryStatements.queries["reserve_all_or_nothing"]
            ttl_seconds = setup.reservation_ttl_seconds
            # One pool for both floors (the phases never overlap), as large as the service's.
            pool: AsyncConnectionPool = await resources.enter_async_context(
                AsyncConnectionPool(
                    database_url,
                    min_size=connection_count,
                    max_size=connection_count,
                    kwargs={"autocommit": True},
                    open=False,
                )
            )
            await pool.wait(timeout=30)

            tokens = _tokens()  # renewed before it expires; the service verifies each one once

            async def reserve_rpc(client: int, sequence: int) -> None:
                await stub.ReserveInventory(
                    pb.ReserveInventoryRequest(checkout_id=f"g{client}-{sequence}", items=line),
                    metadata=((SERVICE_TOKEN, tokens.current()),),
                    timeout=10,
                )

            async def reserve_statement(client: int, sequence: int) -> None:
                async with pool.connection() as connection:
                    cursor = await connection.execute(
                        statement,
                        {
                            "checkout_ids": [f"s{client}-{sequence}"],
                            "ttl_seconds": [ttl_seconds],
                            "line_requests": [1],
                            "skus": [HOT_SKU],
                            "quantities": [1],
                        },
                    )
                    assert await cursor.fetchone() is not None

            async def conditional_update(client: int, sequence: int) -> None:
                async with pool.connection() as connection:
                    cursor = await connection.execute(CONDITIONAL_UPDATE, (HOT_SKU,))
                    assert await cursor.fetchone() is not None

            operations = {"grpc": reserve_rpc, "statement": reserve_statement, "update": conditional_update}
            runs = [Phase(phase, clients, operations[phase], meter) for phase in phases]
            await _run_phases(runs, seconds, slice_seconds)
            results = {phase.name: phase.result() for phase in runs}
        return results
    finally:
        try:
            if service is not None:
                stop_process(service)
        finally:
            async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as admin:
                await admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def report(results: Mapping[str, Result]) -> None:
    print()
    print(f"{'path':<30} {'ops':>8} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for phase in PHASES:
        if phase in results:
            result = results[phase]
            print(
                f"{LABELS[phase]:<30} {len(result.latencies):>8} {result.rate:>9.0f} "
                f"{result.percentile(0.5):>8.2f} {result.percentile(0.99):>8.2f}"
            )
    print()
    for top, bottom, meaning in (
        ("grpc", "update", "everything a reservation costs over the bare UPDATE"),
        ("grpc", "statement", "the service around its statement"),
        ("statement", "update", "the statement over the bare UPDATE"),
    ):
        if top in results and bottom in results:
            throughput = results[top].rate / results[bottom].rate
            latency = results[top].median_ms / results[bottom].median_ms
            label = f"{top}/{bottom}".replace("grpc", "gRPC").replace("update", "UPDATE")
            print(f"ratio {label:<17} throughput {throughput:5.2f}   median latency x{latency:5.2f}   ({meaning})")
    measured = [phase for phase in PHASES if phase in results and results[phase].cores]
    if measured:
        print("\nCPU, in cores kept busy during the phase (and CPU ms per operation):")
        print(f"{'path':<30} " + " ".join(f"{party:>21}" for party in CpuMeter.PARTIES))
        for phase in measured:
            result = results[phase]
            assert result.cores is not None
            cells = []
            for party in CpuMeter.PARTIES:
                cores = result.cores[party]
                per_op = "" if party == "other processes" else f" ({cores * 1000 / result.rate:.2f} ms)"
                cells.append(f"{cores:.2f}{per_op}".rjust(21))
            print(f"{LABELS[phase]:<30} " + " ".join(cells))


def _event_loop_runner(name: str) -> tuple[str, Callable[[Coroutine[Any, Any, dict[str, Result]]], dict[str, Result]]]:
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            return "asyncio (uvloop is not installed)", asyncio.run
        return "uvloop", uvloop.run
    return "asyncio", asyncio.run


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench reserve-hot-sku",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients in each phase (default 32)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase (default 10)")
    parser.add_argument(
        "--port", type=int, default=0, help="port for the benchmarked service (default: a free loopback port)"
    )
    harness.add_service_env(parser, "the service process (DB_POOL_MAX_SIZE=16, say)")
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated subset of {','.join(PHASES)}, run in that order (default: all three)",
    )
    parser.add_argument(
        "--interleave",
        metavar="SECONDS",
        type=float,
        default=1.0,
        help="run the phases in turns of this many seconds, rotating, until each has had --seconds, so that "
        "load from other processes falls on all of them alike; 0 runs them one after the other (default 1)",
    )
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop of the bench's clients, the same for every phase (default uvloop)",
    )
    parser.add_argument(
        "--floor-connections",
        type=int,
        default=0,
        help="connections in the floors' pool (default: the service's database pool size)",
    )
    args = parser.parse_args(argv)
    if args.floor_connections < 0:
        parser.error("--floor-connections must be >= 0")
    if args.clients < 1 or args.seconds <= 0 or args.interleave < 0:
        parser.error("--clients must be >= 1, --seconds > 0 and --interleave >= 0")
    phases = [phase.strip() for phase in args.phases.split(",") if phase.strip()]
    unknown = [phase for phase in phases if phase not in PHASES]
    if unknown or not phases or len(set(phases)) != len(phases):
        parser.error(f"--phases takes distinct names from {', '.join(PHASES)}")
    loop_name, runner = _event_loop_runner(args.loop)
    print(f"machine: {machine_line()}")
    print(f"client event loop: {loop_name}; Python {sys.version.split()[0]}", flush=True)
    results = runner(
        run(
            args.clients,
            args.seconds,
            args.port,
            dict(args.service_env),
            phases,
            args.interleave,
            args.floor_connections,
        )
    )
    report(results)
    print(f"\nmachine at the end: {machine_line()}")
    return 0
