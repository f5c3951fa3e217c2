"""The physical floors a checkout is measured against: its own SQL straight through psycopg, and an echo RPC.

**Database floor.** `capture()` turns PostgreSQL's `log_statement = 'all'` on (ALTER SYSTEM on the run's
private cluster) around one whole checkout through the mesh and reads the statements every service issued
back from the cluster's CSV log, with their parameters. Statements the mesh also issues while idle (the
background workers' polls, health probes) are recognised in an idle window of the same length taken just
before, and left out; so is a background worker's batch (the outbox relay's FOR UPDATE SKIP LOCKED
transaction, which under load serves many checkouts at once), counted but not replayed per checkout.
What remains is grouped into the units the services ran (one transaction, or one autocommit statement)
per session, in the order they began.

`SqlFloor` then replays that checkout from `clients` connections of one process: each replay gives every
id and key in the parameters a fresh value (any run of 20+ lower-case letters or digits: the mesh's ids,
keys, the bench's users, hashes) consistently across the checkout, and shifts timestamps by the time since
the capture, so unique constraints and time conditions hold as they did. Parameters are sent untyped, so
PostgreSQL infers each from its place in the statement as it did for the service. A statement that fails
when replayed once before the timing is dropped and counted. The floor is what the database alone can do
for this checkout's statements: no RPC, no Redis, no Python in the services.

**RPC floor.** `echo_server()` (a separate process: `python -m bench.floor echo-server PORT`) answers a unary
grpc.aio call with its request; a round trip through it is the cheapest a hop can be.
"""

from __future__ import annotations

import asyncio
import csv
import random
import re
import string
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import grpc
import psycopg
from psycopg import sql

from bench.harness import PrivatePostgres

ECHO_METHOD = "/bench.Echo/Echo"
# PostgreSQL 15 csvlog columns.
_SESSION, _MESSAGE, _DETAIL, _APPLICATION = 5, 13, 14, 22
_STATEMENT = re.compile(r"^(?:statement|execute [^:]*): (.*)$", re.DOTALL)
_PARAMETER = re.compile(r"\$(\d+) = (NULL|'((?:[^']|'')*)')")
_PLACEHOLDER = re.compile(r"\$(\d+)")
_ID = re.compile(r"[0-9a-z]{20,}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}(?::?\d{2})?)?")
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Statement:
    text: str  # with %(pN)s placeholders (psycopg's), % doubled
    parameters: tuple[str | None, ...]
    original: str
    application: str = ""  # the service's application_name (inventory-svc…)

    def kind(self) -> str:
        """The statement's first keyword (SELECT, INSERT…), after any `--` comment lines."""
        code = [line for line in self.original.splitlines() if line.strip() and not line.lstrip().startswith("--")]
        return code[0].split(None, 1)[0].upper() if code else "?"


@dataclass
class Unit:
    """One transaction (BEGIN … COMMIT) or one autocommit statement of one session."""

    statements: list[Statement] = field(default_factory=list)


@dataclass
class Capture:
    units: list[Unit]
    captured_at: float
    dropped_idle: int  # statements left out because the idle mesh issues them too
    batch_statements: int = 0  # statements of background batches (outbox relay), not replayed per checkout
    dropped_failing: int = 0  # statements that failed when replayed, left out
    failures: list[str] = field(default_factory=list)  # why, one line each

    @property
    def statements(self) -> int:
        return sum(len(unit.statements) for unit in self.units)

    def by_service(self) -> dict[str, dict[str, int]]:
        """Statements and commits (transactions and autocommit statements) per service (application_name)."""
        counts: dict[str, dict[str, int]] = {}
        for unit in self.units:
            name = unit.statements[0].application if unit.statements else "?"
            # The sandbox PSP's pool sets no application_name.
            entry = counts.setdefault(name or "(unnamed: sandbox PSP)", {"statements": 0, "commits": 0})
            entry["statements"] += sum(1 for s in unit.statements if s.kind() not in ("BEGIN", "COMMIT", "ROLLBACK"))
            entry["commits"] += 1
        return dict(sorted(counts.items(), key=lambda item: -item[1]["commits"]))

    def kinds(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for unit in self.units:
            for statement in unit.statements:
                counts[statement.kind()] = counts.get(statement.kind(), 0) + 1
        return dict(sorted(counts.items(), key=lambda item: -item[1]))

    @property
    def transactions(self) -> int:
        return sum(1 for unit in self.units if unit.statements and unit.statements[0].kind() == "BEGIN")


def _rows(log_file: Path, start: int, end: int) -> Iterator[list[str]]:
    with log_file.open(newline="", encoding="utf-8", errors="replace") as handle:
        handle.seek(start)
        text = handle.read(max(0, end - start))
    yield from csv.reader(text.splitlines(keepends=True))


def _statement(message: str, detail: str, application: str = "") -> Statement | None:
    matched = _STATEMENT.match(message)
    if matched is None:
        return None
    original = matched.group(1).strip()
    values: dict[int, str | None] = {}
    for number, whole, inner in _PARAMETER.findall(detail or ""):
        values[int(number)] = None if whole == "NULL" else inner.replace("''", "'")
    count = max(values, default=0)
    text = _PLACEHOLDER.sub(lambda m: f"%(p{m.group(1)})s", original.replace("%", "%%"))
    return Statement(text, tuple(values.get(n) for n in range(1, count + 1)), original, application)


def _log_size(log_file: Path) -> int:
    return log_file.stat().st_size if log_file.exists() else 0


async def _set_logging(server: PrivatePostgres, on: bool) -> None:
    async with await psycopg.AsyncConnection.connect(server.url, autocommit=True) as admin:
        if on:
            await admin.execute("ALTER SYSTEM SET log_statement = 'all'")
        else:
            await admin.execute("ALTER SYSTEM RESET log_statement")
        await admin.execute("SELECT pg_reload_conf()")
    await asyncio.sleep(0.3)  # every backend rereads the configuration at its next command


async def capture(
    server: PrivatePostgres, checkout: Callable[[], Awaitable[object]], *, idle_seconds: float
) -> Capture:
    """The statements of one `checkout()` through the mesh (see the module docstring)."""
    await _set_logging(server, True)
    try:
        idle_start = _log_size(server.log_file)
        await asyncio.sleep(idle_seconds)
        checkout_start = _log_size(server.log_file)
        await checkout()
        await asyncio.sleep(idle_seconds)  # what the checkout set off after it answered (events relayed…)
        checkout_end = _log_size(server.log_file)
    finally:
        await _set_logging(server, False)
    idle_texts = set()
    for row in _rows(server.log_file, idle_start, checkout_start):
        parsed = _statement(row[_MESSAGE], row[_DETAIL]) if len(row) > _APPLICATION else None
        if parsed is not None:
            idle_texts.add(parsed.original)
    by_session: dict[str, list[Unit]] = {}
    open_units: dict[str, Unit] = {}
    order: list[Unit] = []
    dropped = 0
    for row in _rows(server.log_file, checkout_start, checkout_end):
        if len(row) <= _APPLICATION or row[_APPLICATION].endswith("-probe"):
            continue
        parsed = _statement(row[_MESSAGE], row[_DETAIL], row[_APPLICATION])
        if parsed is None:
            continue
        session, kind = row[_SESSION], parsed.kind()
        unit = open_units.get(session)
        if unit is None:
            if parsed.original in idle_texts and kind not in ("BEGIN", "COMMIT", "ROLLBACK"):
                dropped += 1
                continue
            unit = Unit()
            order.append(unit)
            by_session.setdefault(session, []).append(unit)
            if kind == "BEGIN":
                open_units[session] = unit
        unit.statements.append(parsed)
        if kind in ("COMMIT", "ROLLBACK", "END"):
            open_units.pop(session, None)
    # A transaction that only read what the idle mesh reads too (a poll that found nothing) is idle work. A
    # background worker's batch (the outbox relay: FOR UPDATE SKIP LOCKED) serves many checkouts at once
    # under load: it is counted, not replayed per checkout (replayed, each would lock every other replay's
    # rows and the floor would measure that).
    kept: list[Unit] = []
    batch = 0
    for unit in order:
        body = [s for s in unit.statements if s.kind() not in ("BEGIN", "COMMIT", "ROLLBACK")]
        if body and all(s.original in idle_texts for s in body):
            dropped += len(body)
            continue
        if any("SKIP LOCKED" in " ".join(s.original.split()).upper() for s in body):
            batch += len(body)
            continue
        if body:
            kept.append(unit)
    return Capture(kept, time.time(), dropped, batch_statements=batch)


class _Fresh:
    """One replay's substitutions: every captured id becomes a new one of the same length and alphabet."""

    def __init__(self, shift: timedelta) -> None:
        self._ids: dict[str, str] = {}
        self._shift = shift

    def _id(self, match: re.Match[str]) -> str:
        old = match.group(0)
        new = self._ids.get(old)
        if new is None:
            if old.isalpha():
                alphabet = string.ascii_lowercase
            elif set(old) <= _HEX:
                alphabet = "0123456789abcdef"
            else:
                alphabet = string.ascii_lowercase + string.digits
            new = "".join(random.choices(alphabet, k=len(old)))
            self._ids[old] = new
        return new

    def _time(self, match: re.Match[str]) -> str:
        text = match.group(0)
        try:
            moment = datetime.fromisoformat(text.replace(" ", "T", 1))
        except ValueError:
            return text
        shifted = (moment + self._shift).isoformat(sep=" ")
        return shifted

    def value(self, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith("\\x"):  # bytea, as hex: its runs are hex and stay hex
            return "\\x" + _ID.sub(self._id, value[2:])
        return _TIMESTAMP.sub(self._time, _ID.sub(self._id, value))


def _parameters(statement: Statement, fresh: _Fresh) -> dict[str, str | None]:
    return {f"p{n}": fresh.value(value) for n, value in enumerate(statement.parameters, start=1)}


async def _run_unit(connection: psycopg.AsyncConnection[object], unit: Unit, fresh: _Fresh) -> None:
    for statement in unit.statements:
        query = sql.SQL(statement.text)  # captured text, run as the service ran it
        await connection.execute(query, _parameters(statement, fresh) or None)


async def _transaction_closed(connection: psycopg.AsyncConnection[object]) -> None:
    if connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        await connection.execute("ROLLBACK")


async def validate(database: str, captured: Capture) -> Capture:
    """Replays the checkout once; statements that fail are dropped (and counted) so the timed replays run
    clean. A failure inside a transaction drops that statement and runs the transaction again."""
    units: list[Unit] = []
    dropped = 0
    failures: list[str] = []
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as connection:
        fresh = _Fresh(timedelta(seconds=time.time() - captured.captured_at))
        for unit in captured.units:
            statements = list(unit.statements)
            while True:
                failed: Statement | None = None
                for statement in statements:
                    try:
                        await connection.execute(
                            sql.SQL(statement.text),
                            _parameters(statement, fresh) or None,
                        )
                    except psycopg.Error as error:
                        failed = statement
                        first_line = " ".join(statement.original.split())[:160]
                        failures.append(f"{type(error).__name__}: {str(error).splitlines()[0]} <- {first_line}")
                        break
                await _transaction_closed(connection)
                if failed is None:
                    break
                statements.remove(failed)
                dropped += 1
            if any(s.kind() not in ("BEGIN", "COMMIT", "ROLLBACK") for s in statements):
                units.append(Unit(statements))
    return Capture(units, captured.captured_at, captured.dropped_idle, captured.batch_statements, dropped, failures)


class SqlFloor:
    """Replays a captured checkout from `clients` connections (one each), one replay after another."""

    def __init__(self, database: str, captured: Capture, clients: int) -> None:
        self._database = database
        self._captured = captured
        self._clients = clients
        self._connections: list[psycopg.AsyncConnection[object]] = []
        self.failed = 0

    async def __aenter__(self) -> SqlFloor:
        self._connections = [
            await psycopg.AsyncConnection.connect(self._database, autocommit=True) for _ in range(self._clients)
        ]
        return self

    async def __aexit__(self, *_: object) -> None:
        for connection in self._connections:
            await connection.close()

    async def checkout(self, client: int) -> None:
        connection = self._connections[client]
        fresh = _Fresh(timedelta(seconds=time.time() - self._captured.captured_at))
        try:
            for unit in self._captured.units:
                await _run_unit(connection, unit, fresh)
        except psycopg.Error:
            await _transaction_closed(connection)
            self.failed += 1
            raise


async def copy_catalogue(source: str, target: str) -> None:
    """inventory.products of `source` into `target` (migrated, empty): the floor's replays need the SKUs."""
    async with (
        await psycopg.AsyncConnection.connect(source) as reader,
        await psycopg.AsyncConnection.connect(target) as writer,
    ):
        async with (
            reader.cursor().copy("COPY inventory.products TO STDOUT") as out,
            writer.cursor().copy("COPY inventory.products FROM STDIN") as into,
        ):
            async for chunk in out:
                await into.write(chunk)
        await writer.commit()


# ---- the RPC floor ----


async def _serve_echo(port: int) -> None:
    async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler("bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def echo_command(port: int) -> list[str]:
    """The command line of an echo server on `port` (its own process, like a service)."""
    return [sys.executable, "-m", "bench.floor", "echo-server", str(port)]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "echo-server":
        from bench.harness import event_loop_runner

        event_loop_runner()(_serve_echo(int(sys.argv[2])))
    else:
        sys.exit("usage: python -m bench.floor echo-server PORT")
