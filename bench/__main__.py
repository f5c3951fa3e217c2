"""`python -m bench [NAME [OPTIONS]]`: runs one benchmark, or all of them with their defaults, and prints
its numbers. `python -m bench NAME --help` lists that benchmark's own options."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from bench import cart, checkout, events, payment, reserve_hot_sku

BENCHMARKS: dict[str, ModuleType] = {
    "cart": cart,
    "checkout": checkout,
    "events": events,
    "payment": payment,
    "reserve-hot-sku": reserve_hot_sku,
}


def _summary(module: ModuleType) -> str:
    return (module.__doc__ or "").strip().splitlines()[0]


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
    parser.add_argument("name", nargs="?", choices=sorted(BENCHMARKS), help="benchmark to run (default: all)")
    if any(argument.startswith("-") and argument not in ("-h", "--help") for argument in arguments):
        parser.error("a benchmark's options go after its name: python -m bench NAME [OPTIONS] (NAME --help lists them)")
    parser.parse_args(arguments)  # --help, or an error for an unknown name
    for name in sorted(BENCHMARKS):
        print(f"== {name}", flush=True)
        run = BENCHMARKS[name].main
        code = run([])
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
