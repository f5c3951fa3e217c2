"""Concurrent ReserveInventory calls share one reserve statement: group commit for hot SKUs.

Why: every reservation of a SKU updates that product's row, so reservations of one hot SKU queue on
its row lock, and PostgreSQL holds the lock until the commit's WAL flush. Made one statement per
reservation, each pays the lock hand-over, a commit and a round trip in turn; made as one statement
for all the reservations that arrived meanwhile, the row is locked, written and committed once per
batch (`python -m bench reserve-hot-sku`, docs/design.md).

How: a reservation that arrives while fewer than `max_in_flight` batches are running is sent at once,
alone, so an idle service adds no wait. One that arrives while they all run waits, and leaves with
every other waiting one (up to `max_batch_size`, each checkout at most once per batch) as soon as a
batch finishes. The statement (queries.sql: `reserve_all_or_nothing`) still decides each request on
its own, all or nothing; a request it refuses gets None here, and the use case explains the refusal
as before (handlers.py).

A batch runs as its own task, so a caller that gives up (deadline, cancel) never cancels the others'
statement; like a cancelled single statement, its reservation may still be made, and a retry with the
same checkout id replays it. A database error fails every request of the batch; each caller's retry
policy then retries its own request.

Tracing: a batch of one runs in its caller's trace exactly as a lone statement would. A larger batch
runs under a `reserve batch` span, the child of its first request's span, that links the other
requests' spans; each of those links back to the batch span, so every request's trace leads to the
statement that made its reservation.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext

from inventory_svc.domain.model import Reservation, ReservationRequest
from inventory_svc.repository import InventoryStatements
from service_runtime import telemetry
from service_runtime.sql import UnitOfWork

#: Most reservation requests one statement decides (a batch's statement and lock hold grow with it).
MAX_BATCH_SIZE = 64
#: Reserve statements running at once, per process. One: a second batch would only queue on the hot row's
#: lock behind the first and halve both batches (bench reserve-hot-sku: 1 in flight made larger batches and
#: more reservations per second than 2 or 4). The price: every reservation, whatever its SKUs, waits for
#: the running statement, and that statement waits for any row lock another transaction holds on one of its
#: SKUs (a ConfirmReservation's, the sweeper's; milliseconds, at most DB_STATEMENT_TIMEOUT_MS).
MAX_IN_FLIGHT = 1

#: Attribute of the `reserve batch` span: how many reservation requests its statement decided.
BATCH_SIZE_ATTRIBUTE = "shop.inventory.reserve_batch.size"


@dataclass(eq=False)
class _Waiting:
    request: ReservationRequest
    #: The reservation made (None: refused) and the batch span to link to, if the request needs one.
    outcome: asyncio.Future[tuple[Reservation | None, SpanContext | None]]
    #: The caller's context: the batch of which this request is first runs in it (its trace).
    context: contextvars.Context
    span: SpanContext


class ReserveBatcher:
    def __init__(
        self,
        work: UnitOfWork[InventoryStatements],
        *,
        max_batch_size: int = MAX_BATCH_SIZE,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        if max_batch_size < 1 or max_in_flight < 1:
            raise ValueError("a reserve batch holds at least one request, and at least one batch may run")
        self._work = work
        self._max_batch_size = max_batch_size
        self._max_in_flight = max_in_flight
        self._waiting: deque[_Waiting] = deque()
        self._in_flight = 0
        self._running: set[asyncio.Task[None]] = set()

    async def reserve(self, request: ReservationRequest) -> Reservation | None:
        """The reservation the statement made for `request`, or None when it refused it."""
        waiting = _Waiting(
            request,
            asyncio.get_running_loop().create_future(),
            contextvars.copy_context(),
            trace.get_current_span().get_span_context(),
        )
        self._waiting.append(waiting)
        if self._in_flight < self._max_in_flight:
            self._launch()
        made, batch_span = await waiting.outcome
        if batch_span is not None:
            trace.get_current_span().add_link(batch_span)
        return made

    def _launch(self) -> None:
        """Starts a batch of the waiting requests (oldest first), if any caller still waits."""
        batch: list[_Waiting] = []
        later: list[_Waiting] = []
        checkouts: set[str] = set()
        while self._waiting and len(batch) < self._max_batch_size:
            waiting = self._waiting.popleft()
            if waiting.outcome.done():  # its caller gave up before it was sent
                continue
            if waiting.request.checkout_id in checkouts:  # a concurrent duplicate: the next batch replays it
                later.append(waiting)
                continue
            checkouts.add(waiting.request.checkout_id)
            batch.append(waiting)
        self._waiting.extendleft(reversed(later))
        if not batch:
            return
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run(batch), context=batch[0].context)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: Sequence[_Waiting]) -> None:
        requests = [waiting.request for waiting in batch]
        batch_span: SpanContext | None = None
        try:
            if len(batch) == 1:
                made = await self._work.statement(lambda tx: tx.reserve_all_or_nothing(requests))
            else:
                links = [Link(waiting.span) for waiting in batch[1:] if waiting.span.is_valid]
                with telemetry.span(
                    "reserve batch", attributes={BATCH_SIZE_ATTRIBUTE: len(batch)}, links=links
                ) as span:
                    made = await self._work.statement(lambda tx: tx.reserve_all_or_nothing(requests))
                context = span.get_span_context()
                batch_span = context if context.is_valid else None
        except Exception as error:  # every caller sees it, and its own retry policy decides
            for waiting in batch:
                if not waiting.outcome.done():
                    waiting.outcome.set_exception(error)
        except BaseException:  # cancelled (the service is stopping): so are its callers
            for waiting in batch:
                waiting.outcome.cancel()
            raise
        else:
            for index, (waiting, reservation) in enumerate(zip(batch, made, strict=True)):
                if not waiting.outcome.done():
                    waiting.outcome.set_result((reservation, batch_span if index else None))
        finally:
            self._in_flight -= 1
            if self._waiting and self._in_flight < self._max_in_flight:
                self._launch()
