"""Whole checkouts through the mesh (closed and open loop) against the database and RPC floors of the same run.

One run starts a private PostgreSQL cluster (default settings: fsync and synchronous_commit on), and on it
the mesh as processes (sandbox PSP, inventory, cart, payment, order, shipping, gateway) on free loopback
ports, seeds `--lines` products, and then:

1. capture: one checkout with PostgreSQL's statement log on: every SQL statement all services issue for it
   (bench.floor; printed: statements and commits, per service);
2. closed loop: `--clients` simulated shoppers, each doing whole checkouts back to back for `--seconds`:
   CreateCart, AddItem per line, StartCheckout, PlaceOrder (tok_visa), a new user and new keys each time.
   The maximum throughput, and p50/p95/p99/max of each RPC and of the whole checkout, errors by code, and
   the CPU time per checkout of every process and of PostgreSQL;
3. database floor: the captured statements replayed from one process through psycopg at the same
   concurrency (fresh ids each replay) for `--floor-seconds`. Closed loop and floor run in turns
   (`--rounds`, order alternating), so that load from elsewhere on the machine falls on both alike;
4. RPC floor: a grpc.aio echo round trip (a separate echo server process), and one hop through the runtime
   (shipping ValidateAddress as a trusted caller: interceptors, token check, protobuf, no I/O), at the same
   concurrency;
5. one at a time: checkout, database floor, echo and the hop with one client each (`--single-seconds`,
   `--echo-seconds`): the per-hop overhead is the hop's p50 against the echo's;
6. open loop: checkouts started at `--rate` per second (default half the closed loop's throughput) for
   `--open-seconds`, latency from each one's scheduled start (no coordinated omission).

It prints the machine's cores and load, tables, and the ratios against the targets (checkout/database
floor >= 0.5; open-loop p99 < 100 ms at half the maximum; one hop <= 1.5x echo), and writes JSON to `--out`
(default bench/results/checkout.json). Tracing is off (OTEL_SDK_DISABLED=true) and no metrics port is set.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from bench import floor, profile
from bench.harness import (
    CpuMeter,
    LoopResult,
    Samples,
    closed_loop,
    console,
    create_database,
    event_loop_runner,
    free_port,
    machine,
    machine_line,
    migrate,
    open_loop,
    private_postgres,
    start_mesh,
    stop_process,
    summary_ms,
    table,
    write_json,
)
from bench.shoppers import ADDRESS, CHECKOUT_RPCS, Shoppers
from shop.shipping.v1 import shipping_service_pb2 as shipping_pb
from shop.shipping.v1 import shipping_service_pb2_grpc as shipping_grpc

TARGETS = {"throughput_vs_db_floor": 0.5, "open_loop_p99_ms": 100.0, "per_hop_vs_echo": 1.5}
DEFAULT_OUT = Path("bench/results/checkout.json")


def _add(total: dict[str, float], more: dict[str, float]) -> None:
    for name, value in more.items():
        total[name] = total.get(name, 0.0) + value


def _skus(lines: int) -> list[str]:
    return [f"BENCH-{index:03d}" for index in range(lines)]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    console.print(f"machine: {machine_line()}")
    results: dict[str, Any] = {"bench": "checkout", "options": vars(args) | {"out": str(args.out)}}
    results["machine_before"] = machine()
    skus = _skus(args.lines)
    async with private_postgres() as server:
        mesh_db = await create_database(server.url, "shop_bench")
        async with start_mesh(mesh_db) as mesh:
            console.print(f"mesh up on PostgreSQL {server.version} (private cluster): {len(mesh.processes)} processes")
            shoppers = Shoppers(mesh, connections=-(-args.clients // Shoppers.PER_CONNECTION))
            echo_port = free_port()
            echo_process = subprocess.Popen(floor.echo_command(echo_port))
            try:
                await shoppers.seed(skus, 1_000_000)
                if args.warm_up_seconds > 0:
                    warm = Samples()
                    await closed_loop(
                        "warm-up",
                        min(args.clients, 4),
                        args.warm_up_seconds,
                        lambda client: shoppers.checkout(warm, skus, lane=client),
                        quiet=True,
                    )

                # 1. capture
                captured = await floor.capture(server, lambda: shoppers.checkout(Samples(), skus), idle_seconds=1.5)
                floor_db = await create_database(server.url, "shop_bench_floor")
                await migrate(floor_db, ("inventory_svc", "cart_svc", "payment_svc", "order_svc", "gateway"))
                await migrate(floor_db, ("shipping_svc", "psp_sandbox"))
                await floor.copy_catalogue(mesh_db, floor_db)
                captured = await floor.validate(floor_db, captured)
                console.print(
                    f"one checkout's SQL: {captured.statements} statements, {len(captured.units)} commits "
                    f"({captured.transactions} transactions); by kind {captured.kinds()}; left out: "
                    f"{captured.dropped_idle} the idle mesh also issues, {captured.batch_statements} of background "
                    f"batches (outbox relay), {captured.dropped_failing} failing on replay"
                )
                results["capture"] = {
                    "statements": captured.statements,
                    "commits": len(captured.units),
                    "transactions": captured.transactions,
                    "kinds": captured.kinds(),
                    "by_service": captured.by_service(),
                    "dropped_idle": captured.dropped_idle,
                    "batch_statements": captured.batch_statements,
                    "dropped_failing": captured.dropped_failing,
                    "failures": captured.failures,
                }
                for failure in captured.failures:
                    console.print(f"  not replayed: {failure}")

                # 2, 3. closed loop and database floor at the same concurrency, in turns (`--rounds`, the order
                # alternating) so that load from elsewhere on a shared machine falls on both alike; the CPU time
                # of every process is counted over each one's turns.
                meter = CpuMeter(
                    {**mesh.pids, "bench": os.getpid()},
                    {"postgresql": server.cpu_seconds},
                )
                samples = Samples()
                closed_turns: list[LoopResult] = []
                floor_turns: list[LoopResult] = []
                cpu_closed: dict[str, float] = {}
                cpu_floor: dict[str, float] = {}
                async with floor.SqlFloor(floor_db, captured, args.clients) as replay:
                    for turn in range(args.rounds):
                        for phase in ("closed", "floor") if turn % 2 == 0 else ("floor", "closed"):
                            meter.start()
                            if phase == "closed":
                                closed_turns.append(
                                    await closed_loop(
                                        f"closed loop, {args.clients} shoppers ({turn + 1}/{args.rounds})",
                                        args.clients,
                                        args.seconds / args.rounds,
                                        lambda client: shoppers.checkout(samples, skus, lane=client),
                                    )
                                )
                                _add(cpu_closed, meter.stop())
                            else:
                                floor_turns.append(
                                    await closed_loop(
                                        f"database floor, {args.clients} connections ({turn + 1}/{args.rounds})",
                                        args.clients,
                                        args.floor_seconds / args.rounds,
                                        replay.checkout,
                                    )
                                )
                                _add(cpu_floor, meter.stop())
                closed = LoopResult.merged(f"closed loop, {args.clients} shoppers", closed_turns)
                db_floor = LoopResult.merged(f"database floor, {args.clients} connections", floor_turns)
                results["cpu_ms_per_checkout"] = {
                    name: round(seconds * 1000 / max(closed.done, 1), 2)
                    for name, seconds in sorted(cpu_closed.items(), key=lambda item: -item[1])
                }
                results["cpu_ms_per_floor_checkout"] = {
                    name: round(cpu_floor[name] * 1000 / max(db_floor.done, 1), 2) for name in ("postgresql", "bench")
                }
                results["turns"] = {
                    "closed_per_s": [round(t.rate, 2) for t in closed_turns],
                    "floor_per_s": [round(t.rate, 2) for t in floor_turns],
                }

                if args.profile is not None:
                    results["profile"] = await _profiled(args, mesh.pids, shoppers, skus)

                async with (
                    grpc.aio.insecure_channel(mesh.addresses["shipping_svc"]) as shipping_channel,
                    grpc.aio.insecure_channel(f"127.0.0.1:{echo_port}") as echo_channel,
                ):
                    shipping = shipping_grpc.ShippingServiceStub(shipping_channel)
                    echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = echo_channel.unary_unary(floor.ECHO_METHOD)
                    await echo(b"x" * 64, wait_for_ready=True, timeout=30)

                    async def echo_once(_client: int) -> None:
                        await echo(b"x" * 64, timeout=10)

                    request = shipping_pb.ValidateAddressRequest(address=ADDRESS)

                    async def hop_once(_client: int) -> None:
                        await shipping.ValidateAddress(request, metadata=shoppers.trusted(), timeout=10)

                    seconds = args.echo_seconds
                    echo_floor = await closed_loop(
                        f"echo floor, {args.clients} clients", args.clients, seconds, echo_once
                    )
                    hop = await closed_loop(f"one hop, {args.clients} clients", args.clients, seconds, hop_once)

                    # 5. one at a time
                    single_samples = Samples()
                    single = await closed_loop(
                        "checkout, 1 shopper",
                        1,
                        args.single_seconds,
                        lambda client: shoppers.checkout(single_samples, skus, lane=client),
                    )
                    async with floor.SqlFloor(floor_db, captured, 1) as replay:
                        db_single = await closed_loop(
                            "database floor, 1 connection", 1, args.single_seconds, replay.checkout
                        )
                    echo_single = await closed_loop("echo, 1 client", 1, seconds, echo_once)
                    hop_single = await closed_loop("one hop, 1 client", 1, seconds, hop_once)

                # 6. open loop
                rate = args.rate or max(0.5, closed.rate / 2)
                open_samples = Samples()
                opened = await open_loop(
                    f"open loop, {rate:.1f}/s",
                    rate,
                    args.open_seconds,
                    lambda sequence: shoppers.checkout(open_samples, skus, lane=sequence),
                )
            finally:
                stop_process(echo_process)
                await shoppers.close()
    results["machine_after"] = machine()
    results["phases"] = {
        loop.name: loop.as_dict()
        for loop in (closed, db_floor, echo_floor, hop, single, db_single, echo_single, hop_single, opened)
    }
    results["rpcs"] = {name: samples.summaries().get(name) for name in CHECKOUT_RPCS}
    results["open_loop_rpcs"] = {name: open_samples.summaries().get(name) for name in CHECKOUT_RPCS}
    results["errors"] = dict(samples.errors)
    results["open_loop_errors"] = dict(open_samples.errors)
    results["open_loop_rate"] = rate
    echo_p50, hop_p50 = summary_ms(echo_single.latencies)["p50_ms"], summary_ms(hop_single.latencies)["p50_ms"]
    results["ratios"] = {
        "throughput_vs_db_floor": round(closed.rate / db_floor.rate, 3) if db_floor.rate else None,
        "open_loop_p99_ms": summary_ms(opened.latencies)["p99_ms"],
        "hop_p50_ms": hop_p50,
        "echo_p50_ms": echo_p50,
        "per_hop_vs_echo": round(hop_p50 / echo_p50, 2) if echo_p50 else None,
        "hop_rate_vs_echo": round(hop.rate / echo_floor.rate, 3) if echo_floor.rate else None,
        "single_checkout_vs_db_floor_p50": round(
            summary_ms(single.latencies)["p50_ms"] / max(summary_ms(db_single.latencies)["p50_ms"], 1e-9), 2
        ),
    }
    return results


async def _profiled(args: argparse.Namespace, pids: dict[str, int], shoppers: Shoppers, skus: list[str]) -> Any:
    """Another closed loop like the measured one, with py-spy sampling every process of the mesh: where the
    busy time goes, per process (samples are of busy time: idle waits are left out)."""
    samples = Samples()
    load = asyncio.ensure_future(
        closed_loop(
            f"profiled closed loop, {args.clients} shoppers",
            args.clients,
            args.profile_seconds + 1,
            lambda client: shoppers.checkout(samples, skus, lane=client),
        )
    )
    await asyncio.sleep(0.5)
    paths = await profile.record(pids, args.profile_seconds, args.profile)
    loop = await load
    found: dict[str, Any] = {"checkouts": loop.done, "seconds": round(loop.seconds, 2), "processes": {}}
    for name, path in sorted(paths.items()):
        top = profile.top(path, 10)
        found["processes"][name] = {
            "samples": top.samples,
            "samples_per_checkout": round(top.samples / max(loop.done, 1), 2),
            "self": [[function, round(100 * n / max(top.samples, 1), 1)] for function, n in top.own],
            "inclusive": [[function, round(100 * n / max(top.samples, 1), 1)] for function, n in top.inclusive],
        }
    return found


def report_profile(found: dict[str, Any]) -> None:
    rate = 100  # py-spy --rate: samples per second of busy time
    table(
        f"profile: busy CPU per process during {found['checkouts']} checkouts",
        ["process", "busy samples", "busy ms per checkout"],
        [
            [name, p["samples"], round(p["samples_per_checkout"] * 1000 / rate, 2)]
            for name, p in sorted(found["processes"].items(), key=lambda item: -item[1]["samples"])
        ],
    )
    for name, p in sorted(found["processes"].items(), key=lambda item: -item[1]["samples"])[:3]:
        table(f"profile {name}: most self time (% of busy samples)", ["function", "%"], p["self"][:8])


def report(results: dict[str, Any]) -> bool:
    """Prints the tables and the ratios; True when every target is met."""
    phases = results["phases"]
    table(
        "phases",
        ["phase", "done", "failed", "per s", "p50 ms", "p95 ms", "p99 ms", "max ms"],
        [
            [name, p["done"], p["failed"], p["rate_per_s"], p["p50_ms"], p["p95_ms"], p["p99_ms"], p["max_ms"]]
            for name, p in phases.items()
        ],
    )
    table(
        "closed loop, per RPC",
        ["RPC", "calls", "p50 ms", "p95 ms", "p99 ms", "max ms"],
        [
            [name, s["count"], s["p50_ms"], s["p95_ms"], s["p99_ms"], s["max_ms"]]
            for name, s in results["rpcs"].items()
            if s
        ],
    )
    table(
        "one checkout's SQL, per service",
        ["service", "statements", "commits"],
        [[name, c["statements"], c["commits"]] for name, c in results["capture"]["by_service"].items()],
    )
    table("CPU ms per checkout (closed loop; /proc)", ["process", "ms"], list(results["cpu_ms_per_checkout"].items()))
    errors = {**results["errors"], **{f"open loop {k}": v for k, v in results["open_loop_errors"].items()}}
    if errors:
        table("errors by status code", ["RPC: code", "count"], sorted(errors.items()))
    if "profile" in results:
        report_profile(results["profile"])
    ratios = results["ratios"]
    verdict = {
        "throughput_vs_db_floor": (ratios["throughput_vs_db_floor"] or 0) >= TARGETS["throughput_vs_db_floor"],
        "open_loop_p99_ms": ratios["open_loop_p99_ms"] < TARGETS["open_loop_p99_ms"],
        "per_hop_vs_echo": (ratios["per_hop_vs_echo"] or 99) <= TARGETS["per_hop_vs_echo"],
    }
    table(
        "against the targets (same run)",
        ["measure", "value", "target", "met"],
        [
            [
                "checkouts/s ÷ database floor",
                f"{ratios['throughput_vs_db_floor'] or 0:.2f}",
                "≥ 0.5",
                verdict["throughput_vs_db_floor"],
            ],
            [
                f"open-loop p99 ms at {results['open_loop_rate']:.1f}/s",
                ratios["open_loop_p99_ms"],
                "< 100",
                verdict["open_loop_p99_ms"],
            ],
            [
                f"one hop ÷ echo, p50 at 1 client ({ratios['hop_p50_ms']:.2f} ms / {ratios['echo_p50_ms']:.2f} ms)",
                f"{ratios['per_hop_vs_echo']:.2f}",
                "≤ 1.5",
                verdict["per_hop_vs_echo"],
            ],
        ],
    )
    console.print(f"machine after: {results['machine_after']}")
    return all(verdict.values())


def parser() -> argparse.ArgumentParser:
    command = argparse.ArgumentParser(
        prog="python -m bench checkout", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    command.add_argument("--clients", type=int, default=16, help="concurrent shoppers and floor clients (default 16)")
    command.add_argument("--seconds", type=float, default=20.0, help="closed-loop phase length (default 20)")
    command.add_argument("--lines", type=int, default=1, help="cart lines per checkout, 1-100 (default 1)")
    command.add_argument(
        "--rounds", type=int, default=2, help="turns the closed loop and the database floor take in (default 2)"
    )
    command.add_argument("--floor-seconds", type=float, default=10.0, help="database floor phase (default 10)")
    command.add_argument("--echo-seconds", type=float, default=4.0, help="echo floor phase (default 4)")
    command.add_argument("--single-seconds", type=float, default=5.0, help="each one-client phase (default 5)")
    command.add_argument("--open-seconds", type=float, default=20.0, help="open-loop phase length (default 20)")
    command.add_argument(
        "--rate", type=float, default=0.0, help="open-loop checkouts per second (default: half the closed loop's)"
    )
    command.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="also profile every mesh process with py-spy during an extra closed loop; raw profiles into DIR",
    )
    command.add_argument("--profile-seconds", type=float, default=10.0, help="length of the profiled loop (10)")
    command.add_argument("--warm-up-seconds", type=float, default=2.0, help="untimed checkouts first (default 2)")
    command.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    return command


def main(argv: Sequence[str]) -> int:
    command = parser()
    args = command.parse_args(argv)
    if args.clients < 1 or not 1 <= args.lines <= 100 or min(args.seconds, args.floor_seconds, args.open_seconds) <= 0:
        command.error("--clients >= 1, --lines 1..100, phase lengths > 0")
    if args.rounds < 1:
        command.error("--rounds >= 1")
    if args.profile is not None and profile.available() is None:
        command.error("--profile needs py-spy (pip install py-spy)")
    results = event_loop_runner()(run(args))
    met = report(results)
    write_json(args.out, results)
    console.print("targets: all met" if met else "targets: not all met (see the table)")
    return 0
