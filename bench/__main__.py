"""`python -m bench [name] [options]`: runs one benchmark (default: all) and prints its numbers."""

from __future__ import annotations

import argparse
import sys

from bench import reserve_hot_sku

BENCHMARKS = {"reserve-hot-sku": reserve_hot_sku}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("name", nargs="?", choices=sorted(BENCHMARKS), help="benchmark to run (default: all)")
    args, rest = parser.parse_known_args(argv)
    names = [args.name] if args.name else sorted(BENCHMARKS)
    for name in names:
        code = BENCHMARKS[name].main(rest)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
