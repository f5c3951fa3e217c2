"""The mesh the fault suite breaks: every service, the sandbox PSP, and a PostgreSQL and a Redis of its own.

Everything is started the way `make up` starts it (devstack: the same migrations, environment, ports
from one base, logs), but always on private servers in a fresh state folder, so the suite may kill and
restart them; never the machine's shared PostgreSQL or Redis. Redis keeps an append-only file (fsync
per write), as a Redis that carries an event bus must. Each process leads its own process group, so a
SIGKILL takes PostgreSQL's backends down with their postmaster, as a crash would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import redis.asyncio as redis_client

from devstack import embedded, mesh, sandboxes, servers
from devstack.endpoints import Server
from devstack.errors import DevstackError
from devstack.processes import ManagedProcess, ProcessGroup, wait_for_exit
from devstack.settings import DevstackSettings

DATABASE = "shop"
SERVICE_PACKAGES = tuple(s.package for s in mesh.SERVICES)
#: Settings that make the mesh's retries, leases and reconciliation fit a drill of minutes. Production
#: defaults are longer; the mechanisms are the same.
DRILL_SETTINGS: Mapping[str, str] = {
    "LOG_LEVEL": "WARNING",
    "OTEL_SDK_DISABLED": "true",
    "GRPC_SHUTDOWN_GRACE_SECONDS": "1",
    "DB_POOL_MAX_SIZE": "8",
    "RATE_LIMIT_CAPACITY": "100000",
    "RATE_LIMIT_PER_SECOND": "100000",
    "SAGA_LEASE_SECONDS": "3",
    "SAGA_RECOVERY_INTERVAL_SECONDS": "0.5",
    "SAGA_BACKOFF_MAX_SECONDS": "1",
    "IDEMPOTENCY_HOLD_SECONDS": "5",
    "PSP_TIMEOUT_SECONDS": "2",
    "RECONCILE_INTERVAL_SECONDS": "0.5",
    "RECONCILE_AFTER_SECONDS": "2",
    "ORDER_COMPENSATION_BACKOFF_MAX_SECONDS": "1",
    "NOTIFICATION_SENDER": "LOG",
    "NOTIFICATION_RETRY_BASE_SECONDS": "0.2",
    "NOTIFICATION_RETRY_MAX_SECONDS": "2",
    # A killed consumer's unacknowledged entries are taken over after this idle time (production: 30 s).
    "EVENT_BUS_RECLAIM_IDLE_SECONDS": "5",
}
READY_TIMEOUT_SECONDS = 90.0


def _free_port_base() -> int:
    """A port base (below the ephemeral range) whose service and PSP ports are all free."""
    bases = list(range(22000, 32000, 100))
    random.shuffle(bases)
    for base in bases:
        with contextlib.suppress(DevstackError):
            mesh.check_ports_free(base)
            sandboxes.check_psp_port_free(base)
            return base
    raise DevstackError("no free block of ports for the drill's mesh")


@dataclass
class Cluster:
    settings: DevstackSettings
    group: ProcessGroup
    postgres: Server
    redis: Server
    #: Service package (and "psp_sandbox", "postgresql", "redis") → its current process.
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        return self.postgres.url

    def address(self, package: str) -> str:
        service = next(s for s in mesh.SERVICES if s.package == package)
        return mesh.address_of(service, self.settings.port_base)

    @property
    def psp_url(self) -> str:
        return sandboxes.psp_url(self.settings.port_base)

    @classmethod
    async def start(cls, say: Callable[[str], None]) -> Cluster:
        state_dir = Path(tempfile.mkdtemp(prefix="chaos-"))
        state_dir.chmod(0o755)  # the unprivileged PostgreSQL user must reach its data folder
        settings = DevstackSettings(
            database_url=None,
            redis_url=None,
            embedded=True,
            port_base=_free_port_base(),
            state_dir=state_dir,
            start_timeout_seconds=READY_TIMEOUT_SECONDS,
            postgres_bin=None,
        )
        group = ProcessGroup(registry=state_dir / "running.json")
        try:
            say("private PostgreSQL")
            postgres = await embedded.start_private_postgres(group, settings, database_name=DATABASE)
            await asyncio.to_thread(servers.ensure_database, postgres)
            say("private Redis (append-only file)")
            redis = await embedded.start_private_redis(group, settings, database_number=0, durable=True)
            cluster = cls(settings, group, postgres, redis)
            assert postgres.process is not None and redis.process is not None
            cluster.processes.update(postgresql=postgres.process, redis=redis.process)
            say("migrations")
            await mesh.migrate_all(group, settings, postgres, redis, DRILL_SETTINGS)
            say(f"{len(SERVICE_PACKAGES)} services and the sandbox PSP")
            cluster.processes.update(mesh.start_all(group, settings, postgres, redis, DRILL_SETTINGS))
            psp = sandboxes.start_psp(group, settings, postgres, DRILL_SETTINGS)
            cluster.processes[sandboxes.PSP_PACKAGE] = psp
            await mesh.wait_until_serving(settings, {p: cluster.processes[p] for p in SERVICE_PACKAGES})
            await sandboxes.wait_psp_ready(settings, psp)
            return cluster
        except BaseException:
            await group.stop_all(budget_seconds=10)
            shutil.rmtree(state_dir, ignore_errors=True)
            raise

    async def stop(self, *, keep_state: bool = False) -> None:
        for process in self.processes.values():  # a partitioned process must be able to stop
            self.signal(process, signal.SIGCONT)
        await self.group.stop_all(budget_seconds=15)
        if not keep_state:
            shutil.rmtree(self.settings.state_dir, ignore_errors=True)

    # ------------------------------------------------------------------------------------ faults

    @staticmethod
    def signal(process: ManagedProcess, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)

    async def kill(self, name: str) -> None:
        """SIGKILL the process (and its group) and reap it."""
        process = self.processes[name]
        self.signal(process, signal.SIGCONT)
        process.kill_group()
        await wait_for_exit(process, timeout=10)

    async def restart(self, name: str) -> float:
        """Starts the (dead) process again as it was started; returns seconds until it answers again."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        process = self.processes[name] = self.group.respawn(self.processes[name])
        await self.wait_ready(name, process)
        return loop.time() - started

    async def wait_ready(self, name: str, process: ManagedProcess) -> None:
        if name in SERVICE_PACKAGES:
            took = await mesh.wait_until_serving_again(self.settings, name, process, timeout=READY_TIMEOUT_SECONDS)
            if took is None:
                raise DevstackError(
                    f"{name} did not serve again after its restart", log_title=name, log_tail=process.log_tail()
                )
        elif name == sandboxes.PSP_PACKAGE:
            await sandboxes.wait_psp_ready(self.settings, process)
        elif name == "postgresql":
            await embedded.wait_until_ready(process, lambda: embedded.postgres_answers(self._port(self.postgres)))
        elif name == "redis":
            await embedded.wait_until_ready(process, lambda: embedded.redis_answers(self._port(self.redis)))

    @staticmethod
    def _port(server: Server) -> int:
        return int(server.address.rsplit(":", 1)[1])

    def pause(self, name: str) -> None:
        """A partition: the process stops answering (its sockets stay open) but does not die."""
        self.signal(self.processes[name], signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.signal(self.processes[name], signal.SIGCONT)

    async def psp_faults(self, **faults: int | float) -> None:
        """Sets the sandbox PSP's fault switch (`{}` clears it)."""
        async with (
            aiohttp.ClientSession() as http,
            http.put(
                f"{self.psp_url}/v1/sandbox/faults", json=faults, timeout=aiohttp.ClientTimeout(total=5)
            ) as answer,
        ):
            if answer.status != 200:
                raise DevstackError(f"the sandbox PSP refused the fault switch {faults}: HTTP {answer.status}")

    async def unacknowledged_events(self, group: str) -> int:
        """Entries of every event stream delivered to `group` and not acknowledged yet (XPENDING)."""
        client = redis_client.Redis.from_url(self.redis.url, socket_timeout=2)
        try:
            held = 0
            async for key in client.scan_iter(match="*events", _type="stream"):
                with contextlib.suppress(redis_client.ResponseError):  # no such group on that stream
                    held += int((await client.xpending(key, group))["pending"])
            return held
        finally:
            await client.aclose()

    async def all_ready(self) -> bool:
        """Every service SERVING and the PSP answering (one look, no waiting)."""
        import grpc
        from grpc_health.v1 import health_pb2_grpc

        for package in SERVICE_PACKAGES:
            async with grpc.aio.insecure_channel(self.address(package)) as channel:
                if await mesh.health_of(health_pb2_grpc.HealthStub(channel)) != "SERVING":
                    return False
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{self.psp_url}/healthz", timeout=aiohttp.ClientTimeout(total=1)) as answer,
            ):
                return answer.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False
