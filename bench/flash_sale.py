"""Flash sale: one SKU with `--stock` units, `--buyers` concurrent buyers through the whole checkout.

One run starts a private PostgreSQL cluster and the mesh on it (as `python -m bench checkout` does), seeds one
SKU with `--stock` units (default 100), fills one cart per buyer beforehand (default 2000 buyers; not timed:
the shoppers are waiting with full carts), then opens the sale: every buyer at once runs StartCheckout (which
reserves) and, when it got a quote, PlaceOrder with the approving card. Buyers come through one gateway
connection per `--per-connection` (100) of them. A buyer retries what a well-behaved client retries
(UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED, DEADLINE_EXCEEDED, CANCELLED) with the same idempotency key, with
jittered backoff (at least the server's RetryInfo delay), for `--patience` seconds (120) per call; a refusal
(INSUFFICIENT_STOCK…) is final.

When every saga has settled it checks, from the databases and the sandbox PSP's own ledger:
- exactly `--stock` orders, and units sold (the stock ledger) equal to units ordered: zero oversold;
- zero charges without an order: every PSP authorization with money captured (less refunds) belongs to the
  payment of a live order; and no authorization still holds money for a checkout that has no order;
- no checkout left PLACING.
It prints the time to sell out (sale start to the last unit's checkout completed, from the gateway's record),
the refusal rate (buyers without an order) and the outcomes by status, writes JSON to `--out`, and exits 1
when any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import psycopg

from bench.harness import (
    Samples,
    console,
    create_database,
    event_loop_runner,
    letters_id,
    machine,
    machine_line,
    private_postgres,
    start_mesh,
    summary_ms,
    table,
    write_json,
)
from bench.shoppers import Cart, CheckoutRefused, Shoppers
from service_runtime.downstream import DownstreamError

SKU = "FLASH-SALE"
DEFAULT_OUT = Path("bench/results/flash-sale.json")
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
    }
)


#: One message per outcome, for the report (the first seen).
EXAMPLES: dict[str, str] = {}


def _outcome(error: grpc.aio.AioRpcError) -> str:
    failure = DownstreamError.of(error)
    outcome = f"{error.code().name} {failure.reason}".strip()
    EXAMPLES.setdefault(outcome, (error.details() or "")[:200])
    return outcome


class Buyer:
    """One buyer with a full cart: StartCheckout, then PlaceOrder, each retried with its own key."""

    def __init__(self, shoppers: Shoppers, samples: Samples, cart: Cart, patience: float) -> None:
        self._shoppers = shoppers
        self._samples = samples
        self._cart = cart
        self._patience = patience
        self._start_key, self._place_key = letters_id(), letters_id()
        self.finished_at = 0.0

    async def _retrying(self, call: Callable[[], Awaitable[str]]) -> str:
        """`call()` until it answers or is refused; a retryable failure is tried again with the same key
        (jittered exponential backoff, at least the server's RetryInfo delay) for `patience` seconds, then
        raised."""
        give_up_at = time.monotonic() + self._patience
        for attempt in itertools.count(1):
            try:
                return await call()
            except grpc.aio.AioRpcError as error:
                if error.code() not in RETRYABLE or time.monotonic() >= give_up_at:
                    raise
                hinted = DownstreamError.of(error).retry_delay_seconds or 0.0
                await asyncio.sleep(max(hinted, random.uniform(0.5, 1.0) * min(2.0, 0.05 * 2**attempt)))
        raise AssertionError("unreachable")

    async def buy(self) -> str:
        """'ordered', or what refused the buyer (status code and ErrorInfo reason)."""
        shoppers, samples, cart = self._shoppers, self._samples, self._cart
        try:
            checkout_id = await self._retrying(lambda: shoppers.start(samples, cart, key=self._start_key))
            await self._retrying(lambda: shoppers.place(samples, cart, checkout_id, key=self._place_key))
        except grpc.aio.AioRpcError as error:
            return _outcome(error)
        except CheckoutRefused as refused:
            return f"PlaceOrder {str(refused).split(':')[0]}"
        finally:
            self.finished_at = time.perf_counter()
        return "ordered"


async def _settled(database: str, timeout: float) -> int:
    """Waits until no checkout is PLACING (the sagas finished); how many still are at the timeout."""
    deadline = time.monotonic() + timeout
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as connection:
        while True:
            row = await (
                await connection.execute("SELECT count(*) FROM checkout.checkouts WHERE status = 'placing'")
            ).fetchone()
            placing = int(row[0]) if row else 0
            if placing == 0 or time.monotonic() > deadline:
                return placing
            await asyncio.sleep(0.5)


#: The checks, each a query answering one number that must be 0 (what it counts is its name).
CHECKS = {
    "orders beyond the stock": """
        SELECT greatest(0, count(*) - %(stock)s) FROM orders.orders WHERE status <> 'cancelled'""",
    "stock missing from orders (exactly S orders)": """
        SELECT greatest(0, %(stock)s - count(*)) FROM orders.orders WHERE status <> 'cancelled'""",
    "units sold beyond the stock (oversold)": """
        SELECT greatest(0, -coalesce(sum(delta), 0) - %(stock)s)
        FROM inventory.stock_movements WHERE sku = %(sku)s AND kind = 'sale'""",
    "units sold not matching units ordered": """
        SELECT abs((SELECT -coalesce(sum(delta), 0) FROM inventory.stock_movements
                    WHERE sku = %(sku)s AND kind = 'sale')
                 - (SELECT coalesce(sum(i.quantity), 0) FROM orders.order_items i
                    JOIN orders.orders o USING (order_id) WHERE o.status <> 'cancelled' AND i.sku = %(sku)s))""",
    "negative stock on hand": """
        SELECT count(*) FROM inventory.products WHERE sku = %(sku)s AND (stock_on_hand < 0 OR reserved < 0)""",
    "charges without an order (PSP ledger)": """
        SELECT count(*) FROM psp_sandbox.authorizations a
        WHERE a.captured_minor - a.refunded_minor > 0
          AND NOT EXISTS (SELECT 1 FROM payment.payments p JOIN orders.orders o ON o.payment_id = p.payment_id
                          WHERE p.psp_reference = a.authorization_id AND o.status <> 'cancelled')""",
    "holds without an order (PSP ledger, authorized, not voided)": """
        SELECT count(*) FROM psp_sandbox.authorizations a
        WHERE a.status = 'authorized'
          AND NOT EXISTS (SELECT 1 FROM payment.payments p JOIN orders.orders o ON o.payment_id = p.payment_id
                          WHERE p.psp_reference = a.authorization_id AND o.status <> 'cancelled')""",
    "checkouts still placing": "SELECT count(*) FROM checkout.checkouts WHERE status = 'placing'",
}


#: What the ledgers hold after the sale (informative, beside the checks).
FACTS = {
    "orders": "SELECT count(*) FROM orders.orders WHERE status <> 'cancelled'",
    "units sold (stock ledger)": """
        SELECT -coalesce(sum(delta), 0) FROM inventory.stock_movements WHERE sku = %(sku)s AND kind = 'sale'""",
    "PSP authorizations": "SELECT count(*) FROM psp_sandbox.authorizations",
    "PSP authorizations captured": "SELECT count(*) FROM psp_sandbox.authorizations WHERE captured_minor > 0",
    "PSP authorizations voided": "SELECT count(*) FROM psp_sandbox.authorizations WHERE status = 'voided'",
}


async def _last_completion(database: str) -> float | None:
    """When the last checkout completed (epoch seconds), from the gateway's record."""
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as connection:
        row = await (
            await connection.execute(
                "SELECT extract(epoch FROM max(ended_at)) FROM checkout.checkouts WHERE status = 'completed'"
            )
        ).fetchone()
    return float(row[0]) if row and row[0] is not None else None


async def _counts(database: str, queries: dict[str, str], stock: int) -> dict[str, int]:
    found: dict[str, int] = {}
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as connection:
        for name, query in queries.items():
            row = await (await connection.execute(query, {"stock": stock, "sku": SKU})).fetchone()
            found[name] = int(row[0]) if row else -1
    return found


async def run(args: argparse.Namespace) -> dict[str, Any]:
    console.print(f"machine: {machine_line()}")
    results: dict[str, Any] = {"bench": "flash-sale", "options": vars(args) | {"out": str(args.out)}}
    results["machine_before"] = machine()
    async with private_postgres() as server:
        database = await create_database(server.url, "shop_bench")
        async with start_mesh(database) as mesh:
            # One gateway connection per `--per-connection` buyers (a crowd does not share one connection).
            shoppers = Shoppers(mesh, connections=-(-args.buyers // args.per_connection))
            try:
                await shoppers.seed([SKU], args.stock)
                console.print(f"mesh up; filling {args.buyers} carts with one unit of {SKU} ({args.stock} in stock)")
                preparing = Samples()
                semaphore = asyncio.Semaphore(32)

                async def cart(index: int) -> Cart:
                    async with semaphore:
                        user = shoppers.new_user(f"buyer{index}")
                        return await shoppers.fill_cart(preparing, user, [SKU], lane=index)

                carts = await asyncio.gather(*(cart(index) for index in range(args.buyers)))
                samples = Samples()
                buyers = [Buyer(shoppers, samples, cart, args.patience) for cart in carts]
                console.print(f"sale opens: {args.buyers} buyers at once")
                opened, opened_wall = time.perf_counter(), time.time()
                answers = await asyncio.gather(*(buyer.buy() for buyer in buyers))
                ended = time.perf_counter()
                outcomes = Counter(answers)
                ordered_at = [b.finished_at - opened for b, a in zip(buyers, answers, strict=True) if a == "ordered"]
            finally:
                await shoppers.close()
            placing = await _settled(database, args.settle_seconds)
            checks = await _counts(database, CHECKS, args.stock)
            last_order_at = await _last_completion(database)
            facts = await _counts(database, FACTS, args.stock)
    results["machine_after"] = machine()
    results["outcomes"] = dict(outcomes)
    results["outcome_examples"] = dict(EXAMPLES)
    results["rpcs"] = samples.summaries()
    results["errors"] = dict(samples.errors)
    results["sale_seconds"] = round(ended - opened, 3)
    # Sold out when the last unit's order completed (None when not every unit sold).
    # Sold out when the last unit's checkout completed (from the gateway's own record: a buyer answered
    # PLACING gets the order a little later); None when not every unit sold.
    sold_out = facts["orders"] >= args.stock and last_order_at is not None
    results["sell_out_seconds"] = round(last_order_at - opened_wall, 3) if sold_out and last_order_at else None
    # Refused: every buyer without an order (out of stock, or gave up while the mesh was saturated).
    results["refusal_rate"] = round((args.buyers - facts["orders"]) / args.buyers, 4)
    results["order_latency"] = summary_ms(ordered_at)
    results["checks"] = checks
    results["ledgers"] = facts
    results["placing_after_settle"] = placing
    return results


def report(results: dict[str, Any]) -> bool:
    examples = results["outcome_examples"]
    table(
        "outcomes",
        ["outcome", "buyers", "message (first seen)"],
        [[o, n, examples.get(o, "")] for o, n in sorted(results["outcomes"].items(), key=lambda item: -item[1])],
    )
    table(
        "RPCs during the sale",
        ["RPC", "calls", "p50 ms", "p95 ms", "p99 ms", "max ms"],
        [[n, s["count"], s["p50_ms"], s["p95_ms"], s["p99_ms"], s["max_ms"]] for n, s in results["rpcs"].items()],
    )
    if results["errors"]:
        table(
            "errors by status code (retried ones included)", ["RPC: code", "count"], sorted(results["errors"].items())
        )
    table("ledgers after the sale", ["what", "count"], list(results["ledgers"].items()))
    table("checks (each must be 0)", ["check", "found", "ok"], [[n, v, v == 0] for n, v in results["checks"].items()])
    sell_out = results["sell_out_seconds"]
    console.print(
        f"sale: {results['options']['buyers']} buyers for {results['options']['stock']} units; "
        f"sold out in {sell_out:.2f} s"
        if sell_out is not None
        else "not sold out",
    )
    console.print(
        f"refusal rate {results['refusal_rate']:.1%}; all buyers answered in {results['sale_seconds']:.2f} s; "
        f"machine after: {results['machine_after']}"
    )
    return all(value == 0 for value in results["checks"].values())


def parser() -> argparse.ArgumentParser:
    command = argparse.ArgumentParser(
        prog="python -m bench flash-sale", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    command.add_argument("--stock", type=int, default=100, help="units of the SKU on sale (default 100)")
    command.add_argument("--buyers", type=int, default=2000, help="concurrent buyers (default 2000)")
    command.add_argument(
        "--per-connection",
        type=int,
        default=100,
        help="buyers per gateway connection (default 100)",
    )
    command.add_argument(
        "--patience", type=float, default=120.0, help="seconds a buyer keeps retrying one call (default 120)"
    )
    command.add_argument(
        "--settle-seconds", type=float, default=60.0, help="longest wait for sagas to finish before checking (60)"
    )
    command.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    return command


def main(argv: Sequence[str]) -> int:
    command = parser()
    args = command.parse_args(argv)
    if args.stock < 1 or args.buyers < args.stock or args.patience < 0 or args.per_connection < 1:
        command.error("--stock >= 1, --buyers >= --stock, --patience >= 0, --per-connection >= 1")
    results = event_loop_runner()(run(args))
    ok = report(results)
    results["ok"] = ok
    write_json(args.out, results)
    console.print("flash sale: every check passed" if ok else "flash sale: A CHECK FAILED (see the table)")
    return 0 if ok else 1
