"""How a checkout's cost grows with work: cart size (lines) and concurrency (shoppers), drawn as charts.

One run starts a private PostgreSQL cluster and the mesh on it (as `python -m bench checkout` does), seeds
100 products, and runs two sweeps of closed-loop whole checkouts (CreateCart, AddItem per line,
StartCheckout, PlaceOrder; a new user and keys each time):

1. cart size: `--lines` (default 1 10 50 100 lines) at `--clients` shoppers (default 4), `--seconds` each;
2. concurrency: `--concurrency` (default 1 2 4 8 16 32 64 128 256 shoppers) with one-line carts,
   `--seconds` each.

For each point it reports checkouts/s and p50/p99 of the whole checkout and of StartCheckout+PlaceOrder (the
checkout proper, without filling the cart), and per sweep the growth exponent between the first and last
point (latency ∝ size^k: k near 1 is linear, above 1 worse than linear). Writes JSON and two PNG charts
(matplotlib) into `--out-dir` (default bench/results/).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness import (
    Samples,
    closed_loop,
    console,
    create_database,
    event_loop_runner,
    line_chart,
    machine,
    machine_line,
    private_postgres,
    start_mesh,
    summary_ms,
    table,
    write_json,
)
from bench.shoppers import CHECKOUT_PROPER, Shoppers

SKUS = [f"SCALE-{index:03d}" for index in range(100)]
DEFAULT_OUT_DIR = Path("bench/results")


def _point(loop_rate: float, samples: Samples, whole: list[float], **where: int) -> dict[str, Any]:
    proper = samples.latencies.get(CHECKOUT_PROPER, [])
    return {
        **where,
        "checkouts_per_s": round(loop_rate, 2),
        "whole": summary_ms(whole),
        "start_and_place": summary_ms(proper),
        "add_item": summary_ms(samples.latencies.get("AddItem", [])),
        "errors": dict(samples.errors),
    }


def exponent(points: Sequence[dict[str, Any]], axis: str, measure: str) -> float | None:
    """k in latency ∝ axis^k between the first and the last point (log-log slope)."""
    first, last = points[0], points[-1]
    x0, x1 = first[axis], last[axis]
    y0, y1 = first[measure]["p50_ms"], last[measure]["p50_ms"]
    if x0 <= 0 or x1 <= x0 or y0 <= 0 or y1 <= 0:
        return None
    return round(math.log(y1 / y0) / math.log(x1 / x0), 2)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    console.print(f"machine: {machine_line()}")
    results: dict[str, Any] = {"bench": "scaling", "options": vars(args) | {"out_dir": str(args.out_dir)}}
    results["machine_before"] = machine()
    by_lines: list[dict[str, Any]] = []
    by_concurrency: list[dict[str, Any]] = []
    async with private_postgres() as server:
        database = await create_database(server.url, "shop_bench")
        async with start_mesh(database) as mesh:
            most = max([args.clients, *args.concurrency])
            shoppers = Shoppers(mesh, connections=-(-most // Shoppers.PER_CONNECTION))
            try:
                await shoppers.seed(SKUS, 1_000_000)
                if args.warm_up_seconds > 0:
                    warm = Samples()
                    await closed_loop(
                        "warm-up", 2, args.warm_up_seconds, lambda _c: shoppers.checkout(warm, SKUS[:1]), quiet=True
                    )
                for lines in args.lines:
                    samples = Samples()

                    async def checkout(client: int, samples: Samples = samples, lines: int = lines) -> None:
                        await shoppers.checkout(samples, SKUS[:lines], lane=client)

                    label = f"{lines} lines, {args.clients} shoppers"
                    loop = await closed_loop(label, args.clients, args.seconds, checkout)
                    by_lines.append(_point(loop.rate, samples, loop.latencies, lines=lines, clients=args.clients))
                for clients in args.concurrency:
                    samples = Samples()

                    async def one_line(client: int, samples: Samples = samples) -> None:
                        await shoppers.checkout(samples, SKUS[:1], lane=client)

                    loop = await closed_loop(f"1 line, {clients} shoppers", clients, args.seconds, one_line)
                    by_concurrency.append(_point(loop.rate, samples, loop.latencies, lines=1, clients=clients))
            finally:
                await shoppers.close()
    results["machine_after"] = machine()
    results["by_lines"] = by_lines
    results["by_concurrency"] = by_concurrency
    if len(by_lines) > 1:
        results["lines_exponent"] = {
            "whole": exponent(by_lines, "lines", "whole"),
            "start_and_place": exponent(by_lines, "lines", "start_and_place"),
        }
    if len(by_concurrency) > 1:
        results["concurrency_exponent"] = {"whole": exponent(by_concurrency, "clients", "whole")}
    return results


def report(results: dict[str, Any], out_dir: Path) -> None:
    columns = ["lines", "shoppers", "checkouts/s", "whole p50", "whole p99", "start+place p50", "AddItem p50", "errors"]

    def rows(points: list[dict[str, Any]]) -> list[list[Any]]:
        return [
            [
                p["lines"],
                p["clients"],
                p["checkouts_per_s"],
                p["whole"]["p50_ms"],
                p["whole"]["p99_ms"],
                p["start_and_place"]["p50_ms"],
                p["add_item"]["p50_ms"],
                sum(p["errors"].values()),
            ]
            for p in points
        ]

    table("cart size (latencies in ms)", columns, rows(results["by_lines"]))
    table("concurrency (latencies in ms)", columns, rows(results["by_concurrency"]))
    for name in ("lines_exponent", "concurrency_exponent"):
        if name in results:
            console.print(f"{name}: p50 ∝ size^k with k = {results[name]} (1 is linear)")
    lines = results["by_lines"]
    if lines:
        xs = [p["lines"] for p in lines]
        line_chart(
            out_dir / "scaling-lines.png",
            f"Checkout cost by cart size ({lines[0]['clients']} shoppers)",
            "cart lines",
            {
                "whole checkout p50": (xs, [p["whole"]["p50_ms"] for p in lines]),
                "StartCheckout+PlaceOrder p50": (xs, [p["start_and_place"]["p50_ms"] for p in lines]),
            },
            "latency (ms)",
            second=("checkouts/s", {"checkouts/s": (xs, [p["checkouts_per_s"] for p in lines])}),
        )
    concurrency = results["by_concurrency"]
    if concurrency:
        xs = [p["clients"] for p in concurrency]
        line_chart(
            out_dir / "scaling-concurrency.png",
            "Checkout throughput and latency by concurrency (1-line carts)",
            "concurrent shoppers",
            {
                "whole checkout p50": (xs, [p["whole"]["p50_ms"] for p in concurrency]),
                "whole checkout p99": (xs, [p["whole"]["p99_ms"] for p in concurrency]),
            },
            "latency (ms)",
            second=("checkouts/s", {"checkouts/s": (xs, [p["checkouts_per_s"] for p in concurrency])}),
            log_x=True,
        )
    console.print(f"machine after: {results['machine_after']}")


def parser() -> argparse.ArgumentParser:
    command = argparse.ArgumentParser(
        prog="python -m bench scaling", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    command.add_argument("--lines", type=int, nargs="*", default=[1, 10, 50, 100], help="cart sizes (1 10 50 100)")
    command.add_argument(
        "--concurrency",
        type=int,
        nargs="*",
        default=[1, 2, 4, 8, 16, 32, 64, 128, 256],
        help="shoppers at once (1 2 4 … 256)",
    )
    command.add_argument("--clients", type=int, default=4, help="shoppers in the cart-size sweep (default 4)")
    command.add_argument("--seconds", type=float, default=5.0, help="length of each point (default 5)")
    command.add_argument("--warm-up-seconds", type=float, default=2.0, help="untimed checkouts first (default 2)")
    command.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="JSON and charts (bench/results)")
    return command


def main(argv: Sequence[str]) -> int:
    command = parser()
    args = command.parse_args(argv)
    if any(not 1 <= n <= 100 for n in args.lines) or any(c < 1 for c in args.concurrency) or args.seconds <= 0:
        command.error("--lines in 1..100, --concurrency >= 1, --seconds > 0")
    results = event_loop_runner()(run(args))
    report(results, args.out_dir)
    write_json(args.out_dir / "scaling.json", results)
    return 0
