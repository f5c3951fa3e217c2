"""`checkoutctl trace <checkout_id>`: a checkout's trace as a waterfall, read from the JSON-lines span
file the local mesh writes (`TRACE_SPANS_FILE`, `<state dir>/spans.jsonl` under `make up`).

A checkout's traces are those holding a span with `shop.checkout.id` = the checkout (its saga's spans):
the PlaceOrder trace with its asynchronous tail, and a trace of a saga the recovery worker resumed
(linked to the first). Each is printed as one table: service, span (indented under its parent), start
offset, duration, status and a bar on the trace's time axis.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rich.bar import Bar
from rich.console import Console
from rich.table import Table
from rich.text import Text

from checkoutctl.failures import CtlError

CHECKOUT_ATTRIBUTE = "shop.checkout.id"
BAR_WIDTH = 40


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    service: str
    kind: str
    start: float
    end: float
    status: str
    description: str
    attributes: dict[str, object]
    links: list[str]
    children: list[Span] = field(default_factory=list)


def parse(line: str) -> Span | None:
    """One line of the span file (`service_runtime.telemetry.span_record`), or None when it is not one."""
    try:
        raw = json.loads(line)
        return Span(
            trace_id=str(raw["trace_id"]),
            span_id=str(raw["span_id"]),
            parent_id=raw.get("parent_id"),
            name=str(raw["name"]),
            service=str(raw.get("service") or "?"),
            kind=str(raw.get("kind", "")),
            start=int(raw["start"]) / 1e9,
            end=int(raw["end"]) / 1e9,
            status=str(raw.get("status", "UNSET")),
            description=str(raw.get("description") or ""),
            attributes=dict(raw.get("attributes") or {}),
            links=[str(link["trace_id"]) for link in raw.get("links") or []],
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def read_spans(path: Path) -> Iterator[Span]:
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            span = parse(line)
            if span is not None:
                yield span


def traces_of(spans: Iterable[Span], checkout_id: str) -> list[list[Span]]:
    """The traces holding a span of `checkout_id`, oldest first, plus any trace linked to one of them."""
    by_trace: dict[str, list[Span]] = {}
    wanted: set[str] = set()
    for span in spans:
        by_trace.setdefault(span.trace_id, []).append(span)
        if span.attributes.get(CHECKOUT_ATTRIBUTE) == checkout_id:
            wanted.add(span.trace_id)
    linked = {t for t, members in by_trace.items() if any(link in wanted for s in members for link in s.links)}
    chosen = [by_trace[t] for t in wanted | linked]
    return sorted(chosen, key=lambda members: min(s.start for s in members))


def _tree(spans: list[Span]) -> list[Span]:
    """The roots of a trace (spans whose parent is not in it), children attached and ordered by start."""
    ids = {span.span_id: span for span in spans}
    for span in spans:
        span.children = []
    roots = []
    for span in sorted(spans, key=lambda s: s.start):
        parent = ids.get(span.parent_id or "")
        if parent is None:
            roots.append(span)
        else:
            parent.children.append(span)
    return roots


def _walk(roots: list[Span], depth: int = 0) -> Iterator[tuple[int, Span]]:
    for span in roots:
        yield depth, span
        yield from _walk(span.children, depth + 1)


def waterfall(spans: list[Span]) -> Table:
    start = min(s.start for s in spans)
    end = max(s.end for s in spans)
    total = max(end - start, 1e-6)
    [trace_id] = {s.trace_id for s in spans}
    linked = sorted({link for s in spans for link in s.links})
    title = f"trace {trace_id} · {len(spans)} spans · {total * 1000:.1f} ms"
    if linked:
        title += " · linked to " + ", ".join(linked)
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("SERVICE", no_wrap=True)
    table.add_column("SPAN", no_wrap=True)
    table.add_column("START ms", justify="right", no_wrap=True)
    table.add_column("DURATION ms", justify="right", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("", width=BAR_WIDTH, no_wrap=True)
    for depth, span in _walk(_tree(spans)):
        failed = span.status == "ERROR"
        status = Text("ERROR", style="bold red") if failed else Text(span.status if span.status != "UNSET" else "ok")
        if failed and span.description:
            status.append(f" {span.description[:30]}", style="red")
        name = Text("  " * depth + span.name)
        if span.kind in ("SERVER", "CONSUMER"):
            name.stylize("bold")
        table.add_row(
            span.service,
            name,
            f"{(span.start - start) * 1000:.1f}",
            f"{(span.end - span.start) * 1000:.1f}",
            status,
            Bar(
                size=total,
                begin=span.start - start,
                end=max(span.end - start, span.start - start + total / (BAR_WIDTH * 8)),
                width=BAR_WIDTH,
                color="red" if failed else "cyan",
            ),
        )
    return table


async def show(path: Path, checkout_id: str, console: Console, *, wait_seconds: float) -> None:
    """Prints the checkout's traces; waits up to `wait_seconds` for its spans to reach the file (the
    services write them in batches every half second) and for the trace to stop growing."""
    give_up = time.monotonic() + wait_seconds
    traces: list[list[Span]] = []
    count = -1
    while True:
        if path.exists():
            traces = traces_of(read_spans(path), checkout_id)
        now = sum(len(t) for t in traces)
        if (traces and now == count) or time.monotonic() >= give_up:
            break
        count = now
        await asyncio.sleep(1.0)
    if not path.exists():
        raise CtlError(f"no span file at {path}: is the mesh running under `make up`? (or pass --spans FILE)")
    if not traces:
        raise CtlError(f"no spans of checkout {checkout_id!r} in {path}")
    for spans in traces:
        console.print(waterfall(spans))
        console.print()
