"""`python -m chaos` (`make chaos`): the fault drill. `--short` is the CI form (fewer faults, less load).

Exit codes: 0 every invariant held after every fault; 1 a violation (named with its checkout ids);
2 the mesh could not be started.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from rich.console import Console
from rich.markup import escape

from chaos.cluster import Cluster
from chaos.drill import DrillSettings, run_drill
from chaos.faults import INSIDE, full_drill, short_drill
from chaos.report import print_report
from devstack.errors import DevstackError


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--short", action="store_true", help="the CI form: 5 faults, 2 clients")
    parser.add_argument("--clients", type=int, help="concurrent shoppers (default 4, short 2)")
    parser.add_argument("--max-attempts", type=int, help="bound on checkouts attempted (default 3000, short 600)")
    parser.add_argument("--settle-seconds", type=float, default=60.0, help="how long invariants may take to hold")
    parser.add_argument("--keep-state", action="store_true", help="keep the private servers' folder and logs")
    return parser.parse_args(argv)


async def main(argv: list[str]) -> int:
    options = parse(argv)
    # A pipe or CI log gets the whole table, not an 80-column squeeze.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)
    began = time.monotonic()

    def say(message: str) -> None:
        console.print(f"[dim]{time.monotonic() - began:6.1f}s[/] {escape(message)}", soft_wrap=True)

    faults = short_drill() if options.short else full_drill()
    settings = DrillSettings(
        clients=options.clients or (2 if options.short else 4),
        max_attempts=options.max_attempts or (600 if options.short else 3000),
        steady_seconds=2.0 if options.short else 3.0,
        settle_seconds=options.settle_seconds,
    )
    console.print(
        f"[bold]fault drill[/]: {len(faults)} faults, {settings.clients} shoppers, "
        f"at most {settings.max_attempts} checkouts; private PostgreSQL and Redis"
    )
    say("starting the mesh")
    try:
        cluster = await Cluster.start(say)
    except DevstackError as error:
        console.print(f"[red]the mesh did not start: {error}[/]")
        if error.log_tail:
            console.print(error.log_tail, markup=False)
        return 2
    say(
        f"mesh up on ports {cluster.settings.port_base}+ (logs in {cluster.settings.logs_dir}); "
        + "; ".join(f"{name}: {inside}" for name, inside in INSIDE.items() if inside)
    )
    try:
        result = await run_drill(cluster, faults, settings, say)
    finally:
        say("stopping the mesh")
        await cluster.stop(keep_state=options.keep_state)
    print_report(result, console)
    return 1 if result.violations else 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main(sys.argv[1:])))
    except KeyboardInterrupt:  # the mesh was stopped on the way out
        sys.exit(130)
