"""Runs a service in this process: builds its infrastructure, serves gRPC, reports health, stops gracefully.

Lifecycle of `start_service(spec, settings)`:

1. Tracing is configured, the database and Redis clients are created (not yet connected), the
   service's composition root assembles its repositories, handlers and servicer, and the server starts
   with health NOT_SERVING.
2. `Readiness` (readiness.py) applies migrations, probes dependencies and turns health SERVING; then
   background workers (sweepers, relays) start, each restarted after a pause if it crashes.
3. `RunningService.stop()`: health NOT_SERVING, `server.stop(grace)`, workers cancelled, clients closed.

Tests call `start_service` directly to run any service in-process on port 0; `cli.run_service` is the
command line of every service.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service_runtime import errors, metrics, telemetry
from service_runtime.channels import Channels
from service_runtime.database import Database
from service_runtime.identity import ServiceTokens, Verifier
from service_runtime.inbound import Inbound
from service_runtime.keyspace import KeySpace, create_redis
from service_runtime.readiness import LIVENESS, Readiness
from service_runtime.settings import DEFAULT_MAX_CONCURRENT_STREAMS, SettingsError
from service_runtime.spec import Assembly, Infrastructure, S, ServiceSpec

log = logging.getLogger(__name__)

#: Limits every server applies to whoever connects (docs/security.md, "Hostile input").
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_METADATA_BYTES = 16 * 1024
#: A client may ping an idle connection at most this often; a client pinging faster gets strikes, and
#: after MAX_PING_STRIKES the server closes the connection (GOAWAY ENHANCE_YOUR_CALM "too_many_pings").
MIN_PING_INTERVAL_MS = 10_000
MAX_PING_STRIKES = 2


def server_options(max_concurrent_streams: int = DEFAULT_MAX_CONCURRENT_STREAMS) -> tuple[tuple[str, int], ...]:
    """The options of every server; `max_concurrent_streams` is GRPC_MAX_CONCURRENT_STREAMS."""
    return (
        # Clients re-resolve DNS (and find new pods) when a connection ages out.
        ("grpc.max_connection_age_ms", 5 * 60 * 1000),
        ("grpc.max_connection_age_grace_ms", 30 * 1000),
        # A request or answer larger than this is RESOURCE_EXHAUSTED before any handler runs (receive) or
        # instead of the answer (send); the mesh's largest messages (a 100-line cart, a page of results) are far below.
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_metadata_size", MAX_METADATA_BYTES),
        # Streams one connection may have open at once; a stream past it is refused unprocessed (RST_STREAM
        # REFUSED_STREAM: the caller sees UNAVAILABLE, which the mesh's channels retry).
        # A mesh service sends all its calls to a peer over one connection, so this is far above what the
        # mesh's own fan-in needs (thousands of calls in flight in a flash sale), and still bounds one connection.
        ("grpc.max_concurrent_streams", max_concurrent_streams),
        # Keepalive enforcement: the mesh's channels ping every 30 s, and only while calls are in flight.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", MIN_PING_INTERVAL_MS),
        ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
        ("grpc.so_reuseport", 0),
    )


SERVER_OPTIONS = server_options()


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
        self.spec: ServiceSpec[Any] = spec
        self.settings: Any = settings
        self.server = server
        self.port = port
        self.infrastructure = infrastructure
        self._health = health_servicer
        self._assembly = assembly
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        #: The port of this process's /metrics endpoint (None: METRICS_PORT unset).
        self.metrics_port: int | None = None
        self.readiness = Readiness(
            service=spec.name,
            schema=spec.schema,
            migrations_folder=spec.migrations,
            database=infrastructure.database,
            redis=infrastructure.redis,
            redis_need=spec.redis,
            health_servicer=health_servicer,
            service_names=assembly.service_names,
            probe_interval_seconds=settings.common.health_probe_interval_seconds,
            on_first_ready=self._start_background,
        )

    @property
    def address(self) -> str:
        host = self.settings.common.listen_address.rsplit(":", 1)[0]
        if host in ("[::]", "0.0.0.0", "[::0]"):
            host = "127.0.0.1"
        return f"{host}:{self.port}"

    async def wait_ready(self, timeout: float) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def _start_background(self) -> None:
        for worker in self._assembly.background:
            name = f"{self.spec.name}-{getattr(worker, '__qualname__', 'worker')}"
            self._tasks.append(asyncio.create_task(_supervised(worker, self.spec.name), name=name))
        self._ready.set()

    def _start_readiness(self) -> None:
        self._tasks.append(asyncio.create_task(self.readiness.run(), name=f"{self.spec.name}-readiness"))

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        await self.readiness.report(False)
        await self._health.set(LIVENESS, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(self.settings.common.shutdown_grace_seconds)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # A worker that ignores its cancellation (or awaits a dead dependency while unwinding) must not
            # hold the process: each gets the grace period, then it is named in the log and left behind.
            grace = max(1.0, self.settings.common.shutdown_grace_seconds)
            stopped, stuck = await asyncio.wait(self._tasks, timeout=grace)
            for task in stopped:
                if not task.cancelled() and (error := task.exception()) is not None:
                    log.error("%s: background task %s failed", self.spec.name, task.get_name(), exc_info=error)
            for task in stuck:
                log.error("%s: background task %s did not stop when cancelled", self.spec.name, task.get_name())
        await self.infrastructure.channels.close()
        await self.infrastructure.database.close()
        await self.infrastructure.redis.aclose()
        log.info("%s: stopped", self.spec.name)


async def _supervised(worker: Any, service: str) -> None:
    """Keeps a background worker running: a crash is logged and the worker restarted after a pause.
    A dependency outage (UNAVAILABLE) is one warning line, not a stack trace."""
    while True:
        try:
            await worker()
            return
        except asyncio.CancelledError:
            raise
        except errors.Unavailable as outage:
            log.warning("%s: background worker paused: %s", service, outage.message)
        except Exception:
            log.exception("%s: background worker crashed; restarting in 1 s", service)
        await asyncio.sleep(1.0)


async def start_service(spec: ServiceSpec[S], settings: S) -> RunningService:
    """Builds and starts a service; returns before it is ready (see `RunningService.wait_ready`)."""
    common = settings.common
    telemetry.configure_tracing(spec.process_name)
    metrics_port = metrics.configure_metrics(
        spec.process_name, _metrics_host(common.listen_address), common.metrics_port
    )
    infrastructure = Infrastructure(
        database=Database(
            common.database_url,
            min_size=common.db_pool_min_size,
            max_size=common.db_pool_max_size,
            statement_timeout_ms=common.db_statement_timeout_ms,
            application_name=spec.process_name,
        ),
        redis=create_redis(common.redis_url),
        keys=KeySpace(common.redis_key_prefix),
        channels=Channels(tokens=ServiceTokens(common.identity), tls=common.tls),
    )
    if metrics_port is not None:
        metrics.watch_pool(spec.process_name, infrastructure.database.pool_stats)
    assembly = spec.assemble(settings, infrastructure)
    # No interceptors: tracing, metrics, error mapping and identity are composed once around each method
    # the service registers (service_runtime.inbound); health and reflection are registered bare.
    server = grpc.aio.server(options=server_options(common.grpc_max_concurrent_streams))
    assembly.register(Inbound(domain=spec.error_domain, verifier=Verifier(common.identity)).registrar(server))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*assembly.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    try:
        if common.tls is not None:
            port = server.add_secure_port(common.listen_address, common.tls.server_credentials())
        else:
            port = server.add_insecure_port(common.listen_address)
    except RuntimeError as error:
        raise SettingsError("GRPC_LISTEN_ADDRESS", f"cannot listen on {common.listen_address}: {error}") from None
    running = RunningService(spec, settings, server, port, health_servicer, assembly, infrastructure)
    running.metrics_port = metrics_port
    await running.readiness.report(False)
    await health_servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
    await server.start()
    await infrastructure.database.open()
    running._start_readiness()
    return running


def _metrics_host(listen_address: str) -> str:
    """The /metrics endpoint listens on the gRPC listener's host (every IPv4 interface for a wildcard)."""
    host = listen_address.rsplit(":", 1)[0].strip("[]")
    return "0.0.0.0" if host in ("", "::", "0.0.0.0", "::0") else host


async def serve(spec: ServiceSpec[S], settings: S) -> None:
    """Runs the service until SIGTERM or SIGINT, then stops it gracefully."""
    running = await start_service(spec, settings)
    # What start-up made (modules, descriptors, the telemetry SDK, the pools) lives as long as the process:
    # frozen out of the collector's generations, so its collections stop re-walking it (a py-spy of the
    # payment service under load put ~2.5% of its CPU there).
    gc.freeze()
    log.info("%s: listening on %s (health NOT_SERVING until ready)", spec.name, running.address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("%s: shutting down", spec.name)
    await running.stop()
    telemetry.shutdown_tracing()
