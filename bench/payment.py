"""Authorize+capture pairs through the payment service against the same two PSP calls made directly.

One run starts the sandbox PSP (`python -m psp_sandbox`, approve token, zero added latency) and a payment
service (`python -m payment_svc`) as their own processes on free ports, against a fresh database, and then
runs `--rounds` rounds (default 3). Each round has two phases of `--seconds` (which goes first alternates
from round to round), each with `--clients` concurrent clients on the same client event loop:

1. service: AuthorizePayment then CapturePayment through gRPC, as a trusted mesh caller (a new checkout
   each pair): everything the service adds (validation, card-number scan, PostgreSQL writes of the payment,
   its events and its pending capture, the PSP calls over HTTP, the reconciler running beside it);
2. direct: the same two PSP HTTP calls (POST /v1/authorizations, POST /v1/authorizations/{id}/capture,
   each with an Idempotency-Key) from the bench itself.

The service's settings come from the environment plus `--service-env KEY=VALUE` (e.g. OTEL_SDK_DISABLED=true
for the service without tracing; by default it traces every request and exports nothing).

It prints each round's pair rates and the CPU time each process spent per pair (`postgresql`: the backends of
the bench database, which serve both the service and the sandbox; the server's shared background processes are
not counted), the median of the rounds per phase, the ratio service/direct of the medians (the target is
>= 0.5), each round's own ratio with their median (on a shared, noisy machine the per-round ratio compares
phases run seconds apart), and the CPU all the processes spent per pair in each phase (median of the rounds)
with its ratio, the least noisy figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence

import aiohttp
import grpc
import psycopg
from psycopg import sql

from bench import harness
from bench.harness import closed_loop, cpu_seconds, free_port, start_psp, stop_process, wait_serving
from payment_svc.__main__ import SPEC
from service_runtime.identity import SERVICE_TOKEN, ServiceTokens
from service_runtime.migrations import apply_migrations
from service_runtime.settings import CommonSettings, EnvReader
from shop.payment.v1 import payment_service_pb2 as pb
from shop.payment.v1 import payment_service_pb2_grpc as pb_grpc
from shop.type.v1 import money_pb2

_LISTENING = "psp_sandbox listening on "


def backends_cpu(database: str) -> float:
    """CPU seconds used so far by the live PostgreSQL backends serving `database` (their process title names
    it); a backend that exits mid-phase takes its time with it (the pools here keep theirs)."""
    total = 0.0
    for pid in harness.postgres_backends(database):
        with contextlib.suppress(OSError):  # it ended meanwhile
            total += cpu_seconds(pid)
    return total


async def run(clients: int, seconds: float, rounds: int, service_env: dict[str, str]) -> dict[str, list[float]]:
    server_url = harness.server_url()
    name = f"shop_bench_{uuid.uuid4().hex[:8]}"
    database_url = harness.database_url(server_url, name)
    async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    processes: list[subprocess.Popen[bytes]] = []
    rates: dict[str, list[float]] = {"service": [], "direct": [], "service cpu": [], "direct cpu": []}
    try:
        await apply_migrations(database_url, schema=SPEC.schema, directory=SPEC.migrations)
        psp, base_url = await start_psp(database_url)
        processes.append(psp)
        for attempt in range(3):  # a free port found by probing may be taken by another run before we bind it
            address = f"127.0.0.1:{free_port()}"
            environment = {
                **os.environ,
                "DATABASE_URL": database_url,
                "GRPC_LISTEN_ADDRESS": address,
                "REDIS_KEY_PREFIX": f"bench:{name}:",
                "PSP_BASE_URL": base_url,
                "LOG_LEVEL": "WARNING",
                **service_env,
            }
            service = subprocess.Popen([sys.executable, "-m", "payment_svc"], env=environment)
            processes.append(service)
            try:
                await wait_serving(address, service)
                break
            except RuntimeError as error:
                if attempt == 2:
                    raise
                print(f"{error}; starting it again on another port", flush=True)
        print(f"sandbox PSP pid {psp.pid} at {base_url}; payment service pid {service.pid} at {address}; db {name}")
        if service_env:
            print(f"  --service-env {' '.join(f'{key}={value}' for key, value in service_env.items())}")
        print(f"{clients} clients, {rounds} rounds of 2 x {seconds:g} s", flush=True)
        tokens = ServiceTokens(CommonSettings.from_env(EnvReader({}), service_name="bench", default_port=0).identity)
        amount = money_pb2.Money(currency_code="USD", amount_minor=4999)
        async with grpc.aio.insecure_channel(address) as channel, aiohttp.ClientSession() as http:
            stub = pb_grpc.PaymentServiceStub(channel)

            async def through_service(checkout: str) -> None:
                metadata = ((SERVICE_TOKEN, tokens.current()),)
                authorized = await stub.AuthorizePayment(
                    pb.AuthorizePaymentRequest(
                        checkout_id=checkout, amount=amount, payment_token="tok_visa", idempotency_key="a"
                    ),
                    metadata=metadata,
                    timeout=10,
                )
                await stub.CapturePayment(
                    pb.CapturePaymentRequest(
                        payment_id=authorized.payment.payment_id, order_id=checkout, idempotency_key="c"
                    ),
                    metadata=metadata,
                    timeout=10,
                )

            async def direct(checkout: str) -> None:
                async with http.post(
                    f"{base_url}/v1/authorizations",
                    json={"amount_minor": 4999, "currency": "USD", "token": "tok_visa"},
                    headers={"Idempotency-Key": f"{checkout}:authorize"},
                ) as response:
                    authorization = await response.json()
                    assert response.status == 201, authorization
                async with http.post(
                    f"{base_url}/v1/authorizations/{authorization['id']}/capture",
                    json={"amount_minor": 4999},
                    headers={"Idempotency-Key": f"{checkout}:capture"},
                ) as response:
                    assert response.status == 200, await response.text()

            pids = {"service": service.pid, "psp": psp.pid, "bench": os.getpid()}
            for number in range(1, rounds + 1):
                phases = [("service", through_service), ("direct", direct)]
                for phase, pair in phases if number % 2 else reversed(phases):  # alternate which goes first
                    before = {party: cpu_seconds(pid) for party, pid in pids.items()}
                    before["postgresql"] = backends_cpu(name)

                    async def one(client: int, pair: Callable[[str], Awaitable[None]] = pair) -> None:
                        await pair(f"b{client}-{uuid.uuid4().hex[:12]}")

                    loop = await closed_loop(phase, clients, seconds, one, quiet=True)
                    if loop.failed:
                        raise RuntimeError(f"{loop.failed} {phase} pairs failed")
                    done, elapsed = loop.done, loop.seconds
                    after = {party: cpu_seconds(pid) for party, pid in pids.items()}
                    after["postgresql"] = backends_cpu(name)
                    cpu = {party: (after[party] - before[party]) * 1000 / max(done, 1) for party in after}
                    rates[phase].append(done / elapsed)
                    rates[f"{phase} cpu"].append(sum(cpu.values()))
                    print(
                        f"round {number} {phase:<8} {done:>6} pairs {done / elapsed:8.1f} pairs/s   CPU ms/pair: "
                        + ", ".join(f"{party} {ms:.2f}" for party, ms in cpu.items() if ms or party != "service")
                        + f", total {sum(cpu.values()):.2f}",
                        flush=True,
                    )
        return rates
    finally:
        for process in reversed(processes):
            stop_process(process)
        async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as admin:
            await admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench payment", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients in each phase (default 16)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both phases (default 3)")
    harness.add_service_env(parser, "the payment service process")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or args.rounds < 1:
        parser.error("--clients and --rounds must be >= 1 and --seconds > 0")
    try:
        import uvloop

        runner: Callable[..., dict[str, list[float]]] = uvloop.run
    except ImportError:
        runner = asyncio.run
    rates = runner(run(args.clients, args.seconds, args.rounds, dict(args.service_env)))
    service, direct = statistics.median(rates["service"]), statistics.median(rates["direct"])
    per_round = [s / d for s, d in zip(rates["service"], rates["direct"], strict=True)]
    print()
    print(f"median of {args.rounds}: service {service:.1f} pairs/s, direct PSP {direct:.1f} pairs/s")
    print(
        f"ratio service/direct {service / direct:.2f} (target >= 0.5); per round",
        ", ".join(f"{r:.2f}" for r in per_round),
    )
    print(f"median of the per-round ratios {statistics.median(per_round):.2f}")
    service_cpu, direct_cpu = statistics.median(rates["service cpu"]), statistics.median(rates["direct cpu"])
    print(
        f"CPU per pair, all processes (median of the rounds): service phase {service_cpu:.2f} ms, direct phase "
        f"{direct_cpu:.2f} ms; direct/service {direct_cpu / service_cpu:.2f} (the ratio a machine whose cores "
        "the pairs keep busy would give)"
    )
    return 0
