"""The mesh's services (one table), their environment, migrations, start-up and health.

Each service is a package run as `python -m <package>` (serve) and `python -m <package> migrate`.
Service i of `SERVICES` listens on 127.0.0.1:<port base + i>; every service is told where all the
others are through the `*_TARGET` variables.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack import console, observe, pki, sandboxes
from devstack.endpoints import LOOPBACK, Server, database_of
from devstack.errors import DevstackError
from devstack.processes import ManagedProcess, ProcessGroup, wait_for_exit
from devstack.settings import ROOT, DevstackSettings


@dataclass(frozen=True)
class ServiceDefinition:
    #: Python package, run with `python -m <package>`.
    package: str
    #: Offset of its port from the port base (50050 by default).
    port_offset: int
    #: The variable through which the other services find it; None when nobody calls it.
    target_variable: str | None


#: Every service of the mesh, in start order. The only place that lists them.
SERVICES: tuple[ServiceDefinition, ...] = (
    ServiceDefinition("gateway", 0, None),
    ServiceDefinition("cart_svc", 1, "CART_TARGET"),
    ServiceDefinition("inventory_svc", 2, "INVENTORY_TARGET"),
    ServiceDefinition("payment_svc", 3, "PAYMENT_TARGET"),
    ServiceDefinition("order_svc", 4, "ORDER_TARGET"),
    ServiceDefinition("shipping_svc", 5, "SHIPPING_TARGET"),
    ServiceDefinition("notification_svc", 6, None),
)

#: The services' own grace period on SIGTERM; devstack must stop everything within 10 s.
SERVICE_SHUTDOWN_GRACE_SECONDS = "3"
MIGRATION_TIMEOUT_SECONDS = 60.0
HEALTH_CHECK_TIMEOUT_SECONDS = 1.0
PROGRESS_EVERY_SECONDS = 3.0


def address_of(service: ServiceDefinition, port_base: int) -> str:
    return f"{LOOPBACK}:{port_base + service.port_offset}"


def check_packages_exist(services: Sequence[ServiceDefinition] = SERVICES) -> None:
    """Every service must be runnable with `python -m <package>`: the mesh needs all of them."""
    missing = [
        s.package
        for s in services
        if not (ROOT / s.package / "__main__.py").exists() and importlib.util.find_spec(s.package) is None
    ]
    if missing:
        raise DevstackError(
            f"service package(s) not found: {', '.join(missing)} (each needs {ROOT}/<package>/__main__.py)"
        )


def check_ports_free(port_base: int, services: Sequence[ServiceDefinition] = SERVICES) -> None:
    last = max(services, key=lambda s: s.port_offset)
    if port_base + last.port_offset > 65535:
        raise DevstackError(f"DEVSTACK_PORT_BASE={port_base} puts {last.package} past port 65535")
    taken = []
    for service in services:
        port = port_base + service.port_offset
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no clash
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                taken.append(f"{port} ({service.package})")
    if taken:
        raise DevstackError(
            f"port(s) already in use on {LOOPBACK}: {', '.join(taken)}. Is another `make up` running? "
            f"Stop it, or move this mesh with DEVSTACK_PORT_BASE (e.g. DEVSTACK_PORT_BASE={port_base + 1000})."
        )


def service_environment(
    settings: DevstackSettings,
    postgres: Server,
    redis: Server,
    service: ServiceDefinition | None = None,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a service process (or of any mesh client when `service` is None).

    `overrides` (e.g. the fault suite's shorter timeouts) come last.
    """
    env = dict(os.environ)
    env.update(
        DATABASE_URL=postgres.url,
        REDIS_URL=redis.url,
        REDIS_KEY_PREFIX=os.environ.get("REDIS_KEY_PREFIX", "shop:"),
        LOG_LEVEL=os.environ.get("LOG_LEVEL", "INFO"),
        GRPC_SHUTDOWN_GRACE_SECONDS=SERVICE_SHUTDOWN_GRACE_SECONDS,
        PYTHONUNBUFFERED="1",
        # The repo and generated/ first, so a service added since the last `pip install -e` still imports.
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), str(ROOT / "generated"), os.environ.get("PYTHONPATH")])),
    )
    for other in SERVICES:
        if other.target_variable:
            env[other.target_variable] = address_of(other, settings.port_base)
    env["PSP_BASE_URL"] = sandboxes.psp_url(settings.port_base)
    if service is not None:
        env["GRPC_LISTEN_ADDRESS"] = address_of(service, settings.port_base)
        env.update(observe.service_environment(settings, service.port_offset))
    files = tls_files(settings)
    if files is not None:
        env.update(files.environment(workload_of(service) if service is not None else "devstack"))
    env.update(overrides or {})
    return env


def workload_of(service: ServiceDefinition) -> str:
    """The name in a service's certificate (spiffe://shop/<name>): its process name, e.g. cart-svc."""
    return service.package.replace("_", "-")


def tls_files(settings: DevstackSettings) -> pki.MeshFiles | None:
    """With MESH_TLS=1, the mesh's throwaway CA and certificates (made on first use); else None."""
    if not settings.mesh_tls:
        return None
    # devstack (health, seeding) and operator tools are mesh workloads; `bff` is an edge client: what a
    # shopper's calls (grpcurl with a bearer token) go through.
    workloads = [*(workload_of(s) for s in SERVICES), "devstack", "checkoutctl"]
    return pki.mesh_certificates(settings.tls_dir, workloads, edge_clients=["bff"])


async def migrate_all(
    group: ProcessGroup,
    settings: DevstackSettings,
    postgres: Server,
    redis: Server,
    overrides: Mapping[str, str] | None = None,
) -> None:
    """Runs `python -m <package> migrate` for every service at once; fails on the first that fails."""
    runs = [
        (
            service,
            group.spawn(
                f"{service.package} migrate",
                [sys.executable, "-m", service.package, "migrate"],
                log_path=log_path(settings, service),
                env=service_environment(settings, postgres, redis, service, overrides),
                cwd=ROOT,
            ),
        )
        for service in SERVICES
    ]
    codes = await asyncio.gather(*(wait_for_exit(run, timeout=MIGRATION_TIMEOUT_SECONDS) for _, run in runs))
    for (service, run), code in zip(runs, codes, strict=True):
        if code is None:
            run.kill_group()
            raise DevstackError(
                f"{service.package}: migrate did not finish within {MIGRATION_TIMEOUT_SECONDS:.0f} s",
                log_title=str(run.log_path),
                log_tail=run.log_tail(),
            )
        if code != 0:
            raise DevstackError(
                f"{service.package}: migrate failed (exit code {code}). If database {database_of(postgres.url)!r} "
                f"on {postgres.address} holds migrations that have since been rewritten, start afresh with "
                "`make reset` (then `make up`)",
                log_title=str(run.log_path),
                log_tail=run.log_tail(),
            )
        console.detail(run.log_tail(1).strip())


def log_path(settings: DevstackSettings, service: ServiceDefinition) -> Path:
    return settings.logs_dir / f"{service.package}.log"


def start_all(
    group: ProcessGroup,
    settings: DevstackSettings,
    postgres: Server,
    redis: Server,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, ManagedProcess]:
    processes = {}
    for service in SERVICES:
        process = group.spawn(
            service.package,
            [sys.executable, "-m", service.package],
            log_path=log_path(settings, service),
            env=service_environment(settings, postgres, redis, service, overrides),
            cwd=ROOT,
            append_log=True,  # after the migrate output
        )
        processes[service.package] = process
        console.detail(f"{service.package}: pid {process.pid}, {address_of(service, settings.port_base)}")
    return processes


async def health_of(stub: health_pb2_grpc.HealthStub) -> str:
    """SERVING, NOT_SERVING, … or "starting" while the port does not answer yet."""
    # types-grpcio-health-checking's HealthStub declares no RPC attributes; on an aio channel the
    # generated stub's `Check` is this.
    check: grpc.aio.UnaryUnaryMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]
    check = stub.Check  # type: ignore[attr-defined]
    try:
        response = await check(health_pb2.HealthCheckRequest(service=""), timeout=HEALTH_CHECK_TIMEOUT_SECONDS)
    except grpc.aio.AioRpcError as error:
        return (
            "starting"
            if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            else error.code().name
        )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


async def wait_until_serving(settings: DevstackSettings, processes: Mapping[str, ManagedProcess]) -> dict[str, str]:
    """Polls every service's health until all are SERVING; prints progress; returns the last states."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    give_up = started + settings.start_timeout_seconds
    next_progress = started + PROGRESS_EVERY_SECONDS
    files = tls_files(settings)
    channels = {s.package: pki.client_channel(address_of(s, settings.port_base), files) for s in SERVICES}
    states = {package: "starting" for package in channels}
    try:
        stubs = {package: health_pb2_grpc.HealthStub(channel) for package, channel in channels.items()}
        while True:
            raise_if_any_exited(processes, during="start-up")
            pending = [p for p, state in states.items() if state != "SERVING"]
            results = await asyncio.gather(*(health_of(stubs[p]) for p in pending))
            for package, state in zip(pending, results, strict=True):
                if state == "SERVING":
                    console.detail(f"{package}: SERVING after {loop.time() - started:.1f} s")
                states[package] = state
            if all(state == "SERVING" for state in states.values()):
                return states
            now = loop.time()
            if now > give_up:
                raise_if_any_exited(processes, during="start-up")
                waiting = [p for p, state in states.items() if state != "SERVING"]
                first = processes[waiting[0]]
                raise DevstackError(
                    f"not SERVING after {settings.start_timeout_seconds:.0f} s: "
                    + ", ".join(f"{p} ({states[p]})" for p in waiting)
                    + f"; logs in {settings.logs_dir}",
                    log_title=str(first.log_path),
                    log_tail=first.log_tail(),
                )
            if now >= next_progress:
                next_progress = now + PROGRESS_EVERY_SECONDS
                console.detail(
                    f"waiting ({now - started:.0f} s): "
                    + ", ".join(f"{p} {states[p]}" for p in states if states[p] != "SERVING")
                )
            await asyncio.sleep(0.25)
    finally:
        for channel in channels.values():
            await channel.close()


def raise_if_any_exited(processes: Mapping[str, ManagedProcess], *, during: str) -> None:
    for package, process in processes.items():
        if not process.is_running():
            raise DevstackError(
                f"{package} exited during {during} (exit code {process.exit_code})",
                log_title=f"last lines of {process.log_path}",
                log_tail=process.log_tail(),
            )


async def wait_until_serving_again(
    settings: DevstackSettings, package: str, process: ManagedProcess, *, timeout: float
) -> float | None:
    """After a restart: seconds until the service answers SERVING, or None (it died again, or timed out)."""
    service = next(s for s in SERVICES if s.package == package)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with pki.client_channel(address_of(service, settings.port_base), tls_files(settings)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while loop.time() - started < timeout and process.is_running():
            if await health_of(stub) == "SERVING":
                return loop.time() - started
            await asyncio.sleep(0.2)
    return None
