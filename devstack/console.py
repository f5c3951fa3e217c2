"""What devstack prints: step headers, detail lines, warnings, errors and tables.

Everything goes out line by line (flushed), so progress shows while devstack waits, also through a
pipe or `make`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def step(message: str) -> None:
    """A step header: `==> starting services`."""
    print(f"==> {message}", flush=True)


def detail(message: str) -> None:
    """A line under the current step."""
    print(f"    {message}", flush=True)


def warn(message: str) -> None:
    print(f"devstack: warning: {message}", file=sys.stderr, flush=True)


def error(message: str) -> None:
    print(f"devstack: error: {message}", file=sys.stderr, flush=True)


def block(title: str, text: str) -> None:
    """An indented block, e.g. the last lines of a log."""
    print(f"---- {title} ----", file=sys.stderr)
    for line in text.splitlines():
        print(f"  | {line}", file=sys.stderr)
    print("----", file=sys.stderr, flush=True)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A left-aligned table with a header line."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        print("  " + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    sys.stdout.flush()
