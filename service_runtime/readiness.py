"""Readiness: what the standard gRPC health service reports, and when background workers start.

1. Until the service's migrations are applied, health is NOT_SERVING (retried with backoff).
2. Then the loop probes each declared dependency and reports SERVING exactly while every REQUIRED one
   answers. PostgreSQL is probed on its own connection (`Database.probe`), so a pool busy with real
   work never makes a replica look broken; an OPTIONAL dependency (a cache) that goes away is logged,
   not reported. While a required dependency is down the loop probes every
   `DOWN_PROBE_INTERVAL_SECONDS`, so the service serves again within about a second of its return;
   a request that meets a broken connection wakes the loop at once.
3. Background workers (sweepers, relays) start once, when the service first becomes ready.

The health name `LIVENESS` stays SERVING for as long as the process runs: Kubernetes liveness probes
ask for it, so a database outage never restarts pods.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from grpc_health.v1 import health, health_pb2
from redis.asyncio import Redis

from service_runtime import migrations
from service_runtime.database import DOWN_PROBE_INTERVAL_SECONDS, PROBE_TIMEOUT_SECONDS, Database
from service_runtime.spec import Need

log = logging.getLogger(__name__)

LIVENESS = "liveness"

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Readiness:
    def __init__(
        self,
        *,
        service: str,
        schema: str,
        migrations_folder: Path,
        database: Database,
        redis: Redis,
        redis_need: Need,
        health_servicer: health.aio.HealthServicer,
        service_names: Sequence[str],
        probe_interval_seconds: float,
        on_first_ready: Callable[[], Awaitable[None]],
    ) -> None:
        self._service = service
        self._schema = schema
        self._migrations = migrations_folder
        self._database = database
        self._redis = redis
        self._redis_need = redis_need
        self._health = health_servicer
        self._names = ("", *service_names)
        self._interval = probe_interval_seconds
        self._on_first_ready = on_first_ready
        self.serving = False
        self._redis_up: bool | None = None

    async def report(self, serving: bool) -> None:
        self.serving = serving
        for name in self._names:
            await self._health.set(name, _SERVING if serving else _NOT_SERVING)

    async def run(self) -> None:
        await self._apply_migrations()
        while not await self._dependencies_ready():
            await self._database.wait_suspected(DOWN_PROBE_INTERVAL_SECONDS)
        await self.report(True)
        await self._on_first_ready()
        log.info("%s: SERVING", self._service)
        while True:
            await self._database.wait_suspected(self._interval if self.serving else DOWN_PROBE_INTERVAL_SECONDS)
            ready = await self._dependencies_ready()
            if ready != self.serving:
                await self.report(ready)
                log.warning("%s: health is now %s", self._service, "SERVING" if ready else "NOT_SERVING")

    async def _apply_migrations(self) -> None:
        delay = 0.2
        while True:
            try:
                await migrations.apply_migrations(
                    self._database.url,
                    schema=self._schema,
                    directory=self._migrations,
                )
                return
            except migrations.MigrationError:
                log.exception("%s: migrations cannot be applied; staying NOT_SERVING", self._service)
            except Exception as error:
                log.warning("%s: waiting for PostgreSQL to apply migrations: %s", self._service, _one_line(error))
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._interval)

    async def _dependencies_ready(self) -> bool:
        database_up = await self._database.probe()
        if self._redis_need is Need.UNUSED:
            return database_up
        redis_up = await self._redis_answers()
        if redis_up != self._redis_up and self._redis_need is Need.OPTIONAL:
            if not redis_up:
                log.warning("%s: Redis is unreachable; serving without it (it is optional here)", self._service)
            elif self._redis_up is False:
                log.warning("%s: Redis answers again", self._service)
        self._redis_up = redis_up
        return database_up and (redis_up or self._redis_need is Need.OPTIONAL)

    async def _redis_answers(self) -> bool:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                await self._redis.ping()
        except Exception as error:  # any failure to answer means "down"
            if self._redis_up is not False and self._redis_need is Need.REQUIRED:
                log.warning("%s: Redis is unreachable: %s", self._service, _one_line(error))
            return False
        return True


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
