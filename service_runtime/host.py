"""Runs a service: builds its infrastructure, serves gRPC, reports health, shuts down gracefully.

A service describes itself with a `ServiceSpec`; its composition root (`<service>/__main__.py`) calls
`run_service(spec)`. Lifecycle:

1. Settings are read and validated; a bad one exits 2 with one line naming the variable.
2. Tracing is configured, the pools are created (not yet connected), the service assembles its
   repositories, handlers and servicer, and the server starts with health NOT_SERVING.
3. A readiness loop connects PostgreSQL and Redis and applies migrations, retrying until they work;
   then health turns SERVING and background workers (sweepers, relays) start. The loop keeps probing
   and turns health NOT_SERVING while a dependency is unreachable.
4. SIGTERM/SIGINT: health NOT_SERVING, `server.stop(grace)`, workers cancelled, pools closed.

Tests use `start_service` directly to run any service in-process on port 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from service_runtime import database, migrations, telemetry
from service_runtime.channels import Channels
from service_runtime.keyspace import KeySpace, create_redis
from service_runtime.settings import CommonSettings, SettingsError
from service_runtime.status import ErrorMappingInterceptor

log = logging.getLogger(__name__)

SERVER_OPTIONS = (
    # Clients re-resolve DNS (and find new pods) when a connection ages out.
    ("grpc.max_connection_age_ms", 5 * 60 * 1000),
    ("grpc.max_connection_age_grace_ms", 30 * 1000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.so_reuseport", 0),
)

#: Health service name that reports whether the process is alive (SERVING from start to stop) whatever
#: its dependencies do; Kubernetes liveness probes ask for it, readiness probes ask for "" (overall).
LIVENESS = "liveness"


class HasCommonSettings(Protocol):
    @property
    def common(self) -> CommonSettings: ...


S = TypeVar("S", bound=HasCommonSettings)


@dataclass(frozen=True)
class Infrastructure:
    """Shared clients built by the host for a service's composition root."""

    database: AsyncConnectionPool
    redis: Redis
    keys: KeySpace
    channels: Channels


@dataclass(frozen=True)
class Assembly:
    """What a composition root hands back: how to register its servicers and what runs in the background."""

    register: Callable[[grpc.aio.Server], None]
    service_names: Sequence[str]
    background: Sequence[Callable[[], Awaitable[None]]] = field(default_factory=tuple)

    @classmethod
    def of(
        cls,
        add_to_server: Callable[[Any, grpc.aio.Server], None],
        servicer: object,
        service_name: str,
        *,
        background: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> Assembly:
        """One servicer, added with its generated `add_<Service>Servicer_to_server` function."""
        return cls(
            register=lambda server: add_to_server(servicer, server),
            service_names=[service_name],
            background=tuple(background),
        )


@dataclass(frozen=True)
class ServiceSpec(Generic[S]):
    #: Short name: ErrorInfo domain "<name>.shop", log prefix.
    name: str
    #: The PostgreSQL schema the service owns.
    schema: str
    #: Folder of its numbered SQL migrations, inside the service's package.
    migrations: Path
    load_settings: Callable[[Mapping[str, str]], S]
    assemble: Callable[[S, Infrastructure], Assembly]

    @property
    def package(self) -> str:
        return self.migrations.parent.name

    @property
    def process_name(self) -> str:
        """The name it runs under everywhere else: Kubernetes, traces' service.name, PostgreSQL's
        application_name (inventory_svc → inventory-svc)."""
        return self.package.replace("_", "-")


class RunningService:
    """A started service: its bound port, health, and a coroutine to stop it."""

    def __init__(
        self,
        spec: ServiceSpec[S],
        settings: S,
        server: grpc.aio.Server,
        port: int,
        health_servicer: health.aio.HealthServicer,
        assembly: Assembly,
        infrastructure: Infrastructure,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.server = server
        self.port = port
        self.infrastructure = infrastructure
        self._health = health_servicer
        self._assembly = assembly
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def address(self) -> str:
        host = self.settings.common.listen_address.rsplit(":", 1)[0]
        if host in ("[::]", "0.0.0.0", "[::0]"):
            host = "127.0.0.1"
        return f"{host}:{self.port}"

    async def wait_ready(self, timeout: float) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def _set_health(self, serving: bool) -> None:
        state = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *self._assembly.service_names):
            await self._health.set(name, state)

    def start_readiness(self) -> None:
        self._tasks.append(asyncio.create_task(self._readiness_loop(), name=f"{self.spec.name}-readiness"))

    async def _dependencies_ok(self) -> bool:
        try:
            await database.ping(self.infrastructure.database)
            await self.infrastructure.redis.ping()
        except Exception as error:  # any failure to reach a dependency means "not ready"
            log.warning("%s: dependency check failed: %s", self.spec.name, _one_line(error))
            return False
        return True

    async def _readiness_loop(self) -> None:
        common = self.settings.common
        delay = 0.2
        while True:
            try:
                await migrations.apply_migrations(
                    common.database_url, schema=self.spec.schema, directory=self.spec.migrations
                )
                if await self._dependencies_ok():
                    break
            except migrations.MigrationError:
                log.exception("%s: migrations cannot be applied; staying NOT_SERVING", self.spec.name)
            except Exception as error:
                log.warning("%s: waiting for PostgreSQL: %s", self.spec.name, _one_line(error))
            await asyncio.sleep(delay)
            delay = min(delay * 2, common.health_probe_interval_seconds)
        await self._set_health(True)
        for worker in self._assembly.background:
            self._tasks.append(asyncio.create_task(_supervised(worker, self.spec.name)))
        self._ready.set()
        log.info("%s: SERVING on %s", self.spec.name, self.address)
        serving = True
        while True:
            await asyncio.sleep(common.health_probe_interval_seconds)
            healthy = await self._dependencies_ok()
            if healthy != serving:
                await self._set_health(healthy)
                serving = healthy
                log.warning("%s: health is now %s", self.spec.name, "SERVING" if healthy else "NOT_SERVING")

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        await self._set_health(False)
        await self._health.set(LIVENESS, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(self.settings.common.shutdown_grace_seconds)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.infrastructure.channels.close()
        await self.infrastructure.database.close()
        await self.infrastructure.redis.aclose()
        log.info("%s: stopped", self.spec.name)


async def _supervised(worker: Callable[[], Awaitable[None]], service: str) -> None:
    """Keeps a background worker running: a crash is logged and the worker restarted after a pause."""
    while True:
        try:
            await worker()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: background worker crashed; restarting in 1 s", service)
            await asyncio.sleep(1.0)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


async def start_service(spec: ServiceSpec[S], settings: S) -> RunningService:
    """Builds and starts a service; returns before it is ready (see `RunningService.wait_ready`)."""
    common = settings.common
    telemetry.configure_tracing(spec.process_name)
    infrastructure = Infrastructure(
        database=database.create_pool(
            common.database_url,
            min_size=common.db_pool_min_size,
            max_size=common.db_pool_max_size,
            statement_timeout_ms=common.db_statement_timeout_ms,
            application_name=spec.process_name,
        ),
        redis=create_redis(common.redis_url),
        keys=KeySpace(common.redis_key_prefix),
        channels=Channels(),
    )
    assembly = spec.assemble(settings, infrastructure)
    server = grpc.aio.server(interceptors=[ErrorMappingInterceptor(domain=f"{spec.name}.shop")], options=SERVER_OPTIONS)
    assembly.register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*assembly.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    try:
        port = server.add_insecure_port(common.listen_address)
    except RuntimeError as error:
        raise SettingsError("GRPC_LISTEN_ADDRESS", f"cannot listen on {common.listen_address}: {error}") from None
    running = RunningService(spec, settings, server, port, health_servicer, assembly, infrastructure)
    await running._set_health(False)
    await health_servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
    await server.start()
    await infrastructure.database.open(wait=False)
    running.start_readiness()
    return running


async def serve(spec: ServiceSpec[S], settings: S) -> None:
    running = await start_service(spec, settings)
    log.info("%s: listening on %s (health NOT_SERVING until ready)", spec.name, running.address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("%s: shutting down", spec.name)
    await running.stop()
    telemetry.shutdown_tracing()


async def _migrate(spec: ServiceSpec[S], settings: S) -> list[int]:
    return await migrations.apply_migrations(
        settings.common.database_url, schema=spec.schema, directory=spec.migrations
    )


def run_service(spec: ServiceSpec[S], argv: Sequence[str] | None = None) -> int:
    """Command line of every service: `python -m <service> [serve|migrate]`. Returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else "serve"
    if command not in ("serve", "migrate") or len(args) > 1:
        print(f"usage: python -m {spec.package} [serve|migrate]", file=sys.stderr)
        return 2
    try:
        settings = spec.load_settings(os.environ)
    except SettingsError as error:
        print(f"{spec.name}: invalid setting {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.common.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    runner = _event_loop_runner()
    if command == "migrate":
        try:
            applied = runner(_migrate(spec, settings))
        except (migrations.MigrationError, OSError) as error:
            print(f"{spec.name}: migration failed: {_one_line(error)}", file=sys.stderr)
            return 1
        except Exception as error:
            if database.is_connection_error(error):
                print(f"{spec.name}: cannot reach PostgreSQL: {_one_line(error)}", file=sys.stderr)
                return 1
            raise
        print(f"{spec.name}: {len(applied)} migration(s) applied" + (f" ({applied})" if applied else ""))
        return 0
    try:
        runner(serve(spec, settings))
    except SettingsError as error:
        print(f"{spec.name}: invalid setting {error}", file=sys.stderr)
        return 2
    return 0


def _event_loop_runner() -> Callable[[Awaitable[object]], object]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run  # type: ignore[return-value]
    return uvloop.run  # type: ignore[no-any-return]
