"""`python -m bench [NAME [OPTIONS]]`: runs one benchmark and prints its numbers; with no NAME, the checkout
suite (checkout with its floors, flash-sale, scaling) with their defaults, as `make bench` does; `all` runs
every benchmark with its defaults. `python -m bench NAME --help` lists that benchmark's own options."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from bench import cart, checkout, events, flash_sale, payment, reserve_hot_sku, saga, scaling, telemetry

BENCHMARKS: dict[str, ModuleType] = {
    "cart": cart,
    "checkout": checkout,
    "events": events,
    "flash-sale": flash_sale,
    "payment": payment,
    "reserve-hot-sku": reserve_hot_sku,
    "saga": saga,
    "scaling": scaling,
    "telemetry": telemetry,
}
#: What `python -m bench` (and `make bench`) runs: the whole checkout against its floors, the flash sale, scaling.
SUITE = ("checkout", "flash-sale", "scaling")


def _summary(module: ModuleType) -> str:
    return (module.__doc__ or "").strip().splitlines()[0]


def _run_each(names: Sequence[str]) -> int:
    failed = 0
    for name in names:
        print(f"== python -m bench {name}", flush=True)
        run: Callable[[Sequence[str]], int] = BENCHMARKS[name].main
        code = run([])
        if code:
            print(f"== {name} exited {code}", flush=True)
            failed = failed or code
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in BENCHMARKS:
        run: Callable[[Sequence[str]], int] = BENCHMARKS[arguments[0]].main
        return run(arguments[1:])
    listing = "\n".join(f"  {name:<18} {_summary(module)}" for name, module in sorted(BENCHMARKS.items()))
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        epilog=f"benchmarks:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "name", nargs="?", choices=[*sorted(BENCHMARKS), "all"], help="benchmark to run (default: the checkout suite)"
    )
    if any(argument.startswith("-") and argument not in ("-h", "--help") for argument in arguments):
        parser.error("a benchmark's options go after its name: python -m bench NAME [OPTIONS] (NAME --help lists them)")
    chosen = parser.parse_args(arguments).name  # --help, or an error for an unknown name
    return _run_each(sorted(BENCHMARKS) if chosen == "all" else SUITE)


if __name__ == "__main__":
    sys.exit(main())
