"""Cart AddItem and GetCart (20 lines) through gRPC, against the grpc.aio echo floor of the same run.

Starts, as their own processes on free loopback ports, an inventory service (20 products), a cart service
pricing from it, and a bare grpc.aio echo server; then, from one client event loop (uvloop when
installed) with `--clients` concurrent clients for `--seconds` each, runs three phases:

1. echo: a unary call the echo server answers with its request (the floor: a gRPC round trip, no work).
   Then cart-health: Health/Check on the cart process, i.e. its server stack (the runtime's interceptors
   and tracing span, but not the token check, which health calls skip) with no work.
2. add-item: AddItem of one unit, a new idempotency key each call, each client on its own customer's
   cart (20 SKUs in rotation, so the cart grows to 20 lines and its lines fill towards 99 units).
3. get-cart: GetCart of a cart holding 20 lines, each client its own customer's cart.

Before the cart phases, batch-get calls inventory's BatchGetProducts of the 20 SKUs directly: what a
cart call costs when its price cache misses (CART_PRICE_CACHE_TTL_SECONDS, default 2 s; pass
`--service-env CART_PRICE_CACHE_TTL_SECONDS=0` to make every cart call ask inventory).

Each cart call is a customer's (a verified JWT) and makes one Redis script call; prices come from the
cart's price cache, refreshed from inventory (which serves from its product cache) at most once per TTL
per SKU. It prints rate and p50/p99 per phase, each cart phase's rate as a ratio to the echo floor, the
load average, and the cart's Redis round trips per operation, counted with Redis' INFO commandstats
(the cart's EVALSHA, EVAL and HKEYS calls; inventory's cache uses other commands).

`--profile DIR` also samples the cart process with py-spy (`--gil`: where its Python time goes) during
cart-health, add-item and get-cart, and prints each phase's functions with most samples of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psycopg
import redis.asyncio as redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg import sql

from bench import harness, profile
from bench.floor import echo_command
from bench.harness import cpu_seconds, wait_serving
from cart_svc.__main__ import SPEC as CART
from devstack.endpoints import free_port
from inventory_svc.__main__ import SPEC as INVENTORY
from service_runtime.identity import AUTHORIZATION, SERVICE_TOKEN, ServiceTokens, mint_customer_token
from service_runtime.migrations import apply_migrations
from service_runtime.settings import CommonSettings, EnvReader
from shop.cart.v1 import cart_service_pb2 as pb
from shop.cart.v1 import cart_service_pb2_grpc as pb_grpc
from shop.inventory.v1 import inventory_service_pb2 as inventory_pb
from shop.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shop.type.v1 import money_pb2

SKUS = [f"BENCH-{index:02d}" for index in range(20)]
ECHO_METHOD = "/bench.Echo/Echo"
PHASES = ("echo", "cart-health", "batch-get", "add-item", "get-cart")


@dataclass
class Result:
    phase: str
    latencies: list[float]
    seconds: float
    redis_per_call: float | None = None
    #: CPU seconds each serving process ("cart", "inventory", "echo") used during the phase.
    cpu: dict[str, float] = field(default_factory=dict)

    def cpu_us_per_call(self, process: str) -> float:
        return self.cpu.get(process, 0.0) / max(1, len(self.latencies)) * 1e6

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile_ms(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


def _trusted() -> tuple[tuple[str, str], ...]:
    """A mesh service's token: inventory's catalogue writes are for trusted callers only."""
    settings = CommonSettings.from_env(EnvReader(os.environ), service_name="bench", default_port=0)
    return ((SERVICE_TOKEN, ServiceTokens(settings.identity).current()),)


def _token(user: str) -> tuple[tuple[str, str], ...]:
    settings = CommonSettings.from_env(EnvReader(os.environ), service_name="bench", default_port=0)
    token = mint_customer_token(settings.identity, sub=user, lifetime_seconds=3600)
    return ((AUTHORIZATION, f"Bearer {token}"),)


async def _drive(
    phase: str,
    clients: int,
    seconds: float,
    operation: Callable[[int, int], Awaitable[None]],
    pids: dict[str, int] | None = None,
    profile_into: Path | None = None,
) -> Result:
    """`clients` closed loops of `operation` for `seconds`; with `profile_into`, py-spy samples the cart
    process (`pids["cart"]`) meanwhile, from 0.5 s in to 0.5 s before the end, into `<dir>/<phase>/`."""
    pids = pids or {}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    async def client(index: int) -> None:
        sequence = 0
        while time.monotonic() < stop:
            started = time.perf_counter()
            await operation(index, sequence)
            latencies.append(time.perf_counter() - started)
            sequence += 1

    async def sample() -> None:
        if profile_into is not None and "cart" in pids and seconds >= 2:
            await asyncio.sleep(0.5)
            await profile.record({"cart": pids["cart"]}, seconds - 1, profile_into / phase)

    started = time.monotonic()
    await asyncio.gather(sample(), *(client(index) for index in range(clients)))
    elapsed = time.monotonic() - started
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    return Result(phase, latencies, elapsed, cpu=cpu)


async def _script_calls(client: redis.Redis) -> int:
    stats: dict[str, Any] = await client.info("commandstats")
    commands = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_hkeys")
    return sum(int(stats.get(name, {}).get("calls", 0)) for name in commands)


async def run(
    clients: int, seconds: float, service_env: dict[str, str], profile_into: Path | None = None
) -> dict[str, Result]:
    server_url = harness.server_url()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    name = f"bench_cart_{uuid.uuid4().hex[:8]}"
    database_url = harness.database_url(server_url, name)
    prefix = f"bench:{name}:"
    ports = {"inventory": free_port(), "cart": free_port(), "echo": free_port()}
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "LOG_LEVEL": "WARNING",
        **service_env,
    }
    processes: list[subprocess.Popen[bytes]] = []
    admin = await psycopg.AsyncConnection.connect(server_url, autocommit=True)
    await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    monitor = redis.Redis.from_url(redis_url)
    results: dict[str, Result] = {}
    try:
        for spec in (INVENTORY, CART):
            await apply_migrations(database_url, schema=spec.schema, directory=spec.migrations)
        addresses = {service: f"127.0.0.1:{port}" for service, port in ports.items()}
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "inventory_svc"],
                env={**environment, "GRPC_LISTEN_ADDRESS": addresses["inventory"]},
            )
        )
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "cart_svc"],
                env={
                    **environment,
                    "GRPC_LISTEN_ADDRESS": addresses["cart"],
                    "INVENTORY_TARGET": addresses["inventory"],
                },
            )
        )
        processes.append(subprocess.Popen(echo_command(ports["echo"])))
        pids = {"inventory": processes[0].pid, "cart": processes[1].pid, "echo": processes[2].pid}
        await wait_serving(addresses["inventory"], processes[0])
        await wait_serving(addresses["cart"], processes[1])
        print(f"inventory {addresses['inventory']}, cart {addresses['cart']}, echo {addresses['echo']}")

        async with (
            grpc.aio.insecure_channel(addresses["inventory"]) as inventory_channel,
            grpc.aio.insecure_channel(addresses["cart"]) as cart_channel,
            grpc.aio.insecure_channel(addresses["echo"]) as echo_channel,
        ):
            inventory = inventory_grpc.InventoryServiceStub(inventory_channel)
            for index, sku in enumerate(SKUS):
                await inventory.UpsertProduct(
                    inventory_pb.UpsertProductRequest(
                        sku=sku,
                        name=f"Bench product {index}",
                        price=money_pb2.Money(currency_code="USD", amount_minor=1000 + index),
                        weight_grams=100,
                    ),
                    metadata=_trusted(),
                )
            cart = pb_grpc.CartServiceStub(cart_channel)

            async def customer_cart(user: str) -> tuple[str, tuple[tuple[str, str], ...]]:
                metadata = _token(user)
                created = await cart.CreateCart(pb.CreateCartRequest(user_id=user), metadata=metadata)
                return created.cart.cart_id, metadata

            # echo floor
            echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = echo_channel.unary_unary(ECHO_METHOD)
            payload = pb.GetCartRequest(cart_id=uuid.uuid4().hex).SerializeToString()

            async def echo_once(client: int, sequence: int) -> None:
                await echo(payload)

            await echo(payload, wait_for_ready=True, timeout=30)  # the echo process may still be starting
            for _ in range(100):  # warm up the channel
                await echo(payload)
            results["echo"] = await _drive("echo", clients, seconds, echo_once, pids)
            print(f"  echo: {results['echo'].rate:,.0f}/s", flush=True)

            # the cart process's own server stack (interceptors, tracing span) with no work: Health/Check
            cart_health: Any = health_pb2_grpc.HealthStub(cart_channel)  # the stub is untyped
            health_request = health_pb2.HealthCheckRequest(service="")

            async def health_once(client: int, sequence: int) -> None:
                await cart_health.Check(health_request)

            results["cart-health"] = await _drive("cart-health", clients, seconds, health_once, pids, profile_into)
            print(f"  cart-health: {results['cart-health'].rate:,.0f}/s", flush=True)

            # the inventory call a cart call makes when its price cache misses, alone
            batch_request = inventory_pb.BatchGetProductsRequest(skus=SKUS)

            async def batch_once(client: int, sequence: int) -> None:
                await inventory.BatchGetProducts(batch_request)

            results["batch-get"] = await _drive("batch-get", clients, seconds, batch_once, pids)
            print(f"  batch-get: {results['batch-get'].rate:,.0f}/s", flush=True)

            # AddItem
            add_carts = [await customer_cart(f"adder-{index}") for index in range(clients)]

            async def add_once(client: int, sequence: int) -> None:
                cart_id, metadata = add_carts[client]
                if sequence and sequence % (len(SKUS) * 99) == 0:
                    await cart.ClearCart(pb.ClearCartRequest(cart_id=cart_id), metadata=metadata)
                await cart.AddItem(
                    pb.AddItemRequest(
                        cart_id=cart_id,
                        sku=SKUS[sequence % len(SKUS)],
                        quantity=1,
                        idempotency_key=f"{client}-{sequence}",
                    ),
                    metadata=metadata,
                )

            for client in range(clients):  # warm up: every cart has its 20 lines
                for sequence in range(len(SKUS)):
                    await add_once(client, sequence + 10_000_000)
            before = await _script_calls(monitor)
            results["add-item"] = await _drive("add-item", clients, seconds, add_once, pids, profile_into)
            calls = len(results["add-item"].latencies)
            results["add-item"].redis_per_call = (await _script_calls(monitor) - before) / calls
            print(f"  add-item: {results['add-item'].rate:,.0f}/s", flush=True)

            # GetCart of 20 lines
            get_carts = add_carts
            for cart_id, metadata in get_carts:
                got = await cart.GetCart(pb.GetCartRequest(cart_id=cart_id), metadata=metadata)
                assert len(got.cart.lines) == len(SKUS), len(got.cart.lines)

            async def get_once(client: int, sequence: int) -> None:
                cart_id, metadata = get_carts[client]
                await cart.GetCart(pb.GetCartRequest(cart_id=cart_id), metadata=metadata)

            before = await _script_calls(monitor)
            results["get-cart"] = await _drive("get-cart", clients, seconds, get_once, pids, profile_into)
            calls = len(results["get-cart"].latencies)
            results["get-cart"].redis_per_call = (await _script_calls(monitor) - before) / calls
            print(f"  get-cart: {results['get-cart'].rate:,.0f}/s", flush=True)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        keys = [key async for key in monitor.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await monitor.delete(*keys)
        await monitor.aclose()
        await admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        await admin.close()
    return results


def report(results: dict[str, Result], clients: int) -> None:
    floor = results["echo"].rate
    print(f"\n{clients} concurrent clients")
    print(
        f"{'phase':<10} {'ops':>8} {'rate/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'/echo':>7} {'redis/op':>9}"
        f" {'CPU us/op: server':>18} {'cart':>6} {'inv':>6}"
    )
    serving = {"echo": "echo", "cart-health": "cart", "batch-get": "inventory", "add-item": "cart", "get-cart": "cart"}
    for phase in PHASES:
        result = results[phase]
        scripts = f"{result.redis_per_call:.2f}" if result.redis_per_call is not None else "-"
        print(
            f"{phase:<10} {len(result.latencies):>8} {result.rate:>9,.0f} {result.percentile_ms(0.5):>8.2f}"
            f" {result.percentile_ms(0.99):>8.2f} {result.rate / floor:>7.2f} {scripts:>9}"
            f" {result.cpu_us_per_call(serving[phase]):>18,.0f} {result.cpu_us_per_call('cart'):>6,.0f}"
            f" {result.cpu_us_per_call('inventory'):>6,.0f}"
        )
    print(
        "CPU us/op: CPU time the serving process (echo server, inventory, cart) spent per call during the phase;"
        " a CPU-bound server's rate is about 1e6 / that (on a free core)"
    )
    print(f"BatchGetProducts(20) alone (what a price cache miss costs): {results['batch-get'].rate / floor:.2f}")
    print(f"load average (1, 5, 15 min): {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
    print(
        f"ratios to the echo floor: AddItem {results['add-item'].rate / floor:.2f} (target >= 0.5), "
        f"GetCart {results['get-cart'].rate / floor:.2f} (target >= 0.4)"
    )


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench cart", description=__doc__)
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per phase (default 10)")
    harness.add_service_env(parser, "the cart and inventory processes")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy (--gil, raw) of the cart process during cart-health, add-item and get-cart, into DIR/<phase>/",
    )
    args = parser.parse_args(argv)
    if args.profile is not None and profile.available() is None:
        parser.error("--profile needs py-spy (pip install py-spy)")
    service_env = dict(args.service_env)
    results: dict[str, Result] = harness.event_loop_runner()(run(args.clients, args.seconds, service_env, args.profile))
    report(results, args.clients)
    if args.profile is not None:
        for phase in ("cart-health", "add-item", "get-cart"):
            path = args.profile / phase / "cart.txt"
            if path.exists():
                found = profile.top(path, 12)
                calls = len(results[phase].latencies)
                print(f"\nprofile of the cart process, {phase}: {found.samples} busy samples (--gil), {calls} calls")
                for function, samples in found.own:
                    print(f"  self {100 * samples / max(1, found.samples):5.1f}%  {function}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
