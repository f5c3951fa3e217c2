"""What every service gets from the runtime: health, reflection, UNIMPLEMENTED for undeclared work,
no UNKNOWN for bad input, and clean stops."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
from typing import cast
from urllib.parse import urlsplit

import grpc
import psycopg
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2_grpc
from grpc_reflection.v1alpha.reflection_pb2 import ServerReflectionRequest, ServerReflectionResponse
from psycopg import sql

from tests.conftest import SERVICE_PACKAGES


def spec_of(package: str):
    return importlib.import_module(f"{package}.__main__").SPEC


def health_check(
    channel: grpc.aio.Channel,
) -> grpc.aio.UnaryUnaryMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]:
    """The Health service's Check on an aio channel (what the generated HealthStub's `Check` is there)."""
    # types-grpcio-health-checking's HealthStub declares no RPC attributes.
    check: grpc.aio.UnaryUnaryMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]
    check = health_pb2_grpc.HealthStub(channel).Check  # type: ignore[attr-defined]
    return check


async def service_names(channel: grpc.aio.Channel) -> set[str]:
    # types-grpcio-reflection types ServerReflectionStub for sync channels only and leaves its RPC untyped;
    # the generated stub works on an aio channel, where the RPC is this.
    stub = reflection_pb2_grpc.ServerReflectionStub(cast(grpc.Channel, channel))
    info = cast(
        "grpc.aio.StreamStreamMultiCallable[ServerReflectionRequest, ServerReflectionResponse]",
        stub.ServerReflectionInfo,
    )
    names: set[str] = set()
    async for response in info(iter([ServerReflectionRequest(list_services="")])):
        names.update(service.name for service in response.list_services_response.service)
    return names


async def call_with_empty_request(channel: grpc.aio.Channel, service: str, method: str) -> grpc.StatusCode:
    descriptor = descriptor_pool.Default().FindServiceByName(service).methods_by_name[method]
    request_class = message_factory.GetMessageClass(descriptor.input_type)
    response_class = message_factory.GetMessageClass(descriptor.output_type)
    call = channel.unary_unary(
        f"/{service}/{method}",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    try:
        await call(request_class(), timeout=5)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("package", SERVICE_PACKAGES)
async def test_service_reports_serving_lists_itself_and_never_answers_unknown(start_service, package):
    running = await start_service(spec_of(package))
    async with grpc.aio.insecure_channel(running.address) as channel:
        health = health_check(channel)
        listed = await service_names(channel)
        declared = [name for name in listed if name.startswith("shop.")]

        overall = await health(health_pb2.HealthCheckRequest(service=""))
        assert overall.status == health_pb2.HealthCheckResponse.SERVING
        assert declared, listed  # one service each; the gateway also serves its admin service
        assert "grpc.health.v1.Health" in listed
        codes = {}
        for name in declared:
            per_service = await health(health_pb2.HealthCheckRequest(service=name))
            assert per_service.status == health_pb2.HealthCheckResponse.SERVING
            for method in descriptor_pool.Default().FindServiceByName(name).methods:
                codes[method.name] = await call_with_empty_request(channel, name, method.name)
    # An empty request is bad input for most RPCs (ListProducts' first page is fine): it must get a
    # clear status, never a crash.
    assert not {
        name: code for name, code in codes.items() if code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
    }, codes
    built = ("inventory_svc", "order_svc", "payment_svc", "notification_svc", "cart_svc", "shipping_svc", "gateway")
    if package not in built:  # not built: UNIMPLEMENTED
        assert grpc.StatusCode.UNIMPLEMENTED in codes.values(), codes


async def test_health_stays_not_serving_while_postgresql_is_unreachable(redis_url, redis_prefix):
    from inventory_svc.__main__ import SPEC
    from service_runtime.server import start_service

    settings = SPEC.load_settings(
        {
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=1",
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": redis_prefix,
            "GRPC_LISTEN_ADDRESS": "127.0.0.1:0",
            "GRPC_SHUTDOWN_GRACE_SECONDS": "0.2",
        }
    )
    running = await start_service(SPEC, settings)
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            health = health_check(channel)
            response = await health(health_pb2.HealthCheckRequest(service=""), timeout=5)
            alive = await health(health_pb2.HealthCheckRequest(service="liveness"), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.NOT_SERVING
        # the process itself is fine: a liveness probe must not restart it for a database outage
        assert alive.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await running.stop()


async def test_stopped_service_reports_not_serving_then_refuses_calls(start_service):
    from inventory_svc.__main__ import SPEC

    running = await start_service(SPEC)
    async with grpc.aio.insecure_channel(running.address) as channel:
        health = health_check(channel)
        assert (await health(health_pb2.HealthCheckRequest())).status == health_pb2.HealthCheckResponse.SERVING
        await running.stop()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await health(health_pb2.HealthCheckRequest(), timeout=2)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def _wait_for_health(
    health: grpc.aio.UnaryUnaryMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse],
    wanted: int,
    timeout: float = 15.0,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    status = None
    while loop.time() < deadline:
        status = (await health(health_pb2.HealthCheckRequest(service=""), timeout=2)).status
        if status == wanted:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"health stayed {status}, expected {wanted}")


async def test_health_turns_not_serving_while_the_database_refuses_connections_and_back(start_service, database_url):
    from inventory_svc.__main__ import SPEC

    running = await start_service(SPEC, HEALTH_PROBE_INTERVAL_SECONDS="0.2")
    name = urlsplit(database_url).path.lstrip("/")
    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"

    async def allow_connections(allowed: bool) -> None:
        async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
            await admin.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(sql.Identifier(name), sql.Literal(allowed))
            )
            if not allowed:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
                )

    async with grpc.aio.insecure_channel(running.address) as channel:
        health = health_check(channel)
        await _wait_for_health(health, health_pb2.HealthCheckResponse.SERVING)
        await allow_connections(False)
        try:
            await _wait_for_health(health, health_pb2.HealthCheckResponse.NOT_SERVING)
            alive = await health(health_pb2.HealthCheckRequest(service="liveness"), timeout=2)
            assert alive.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            await allow_connections(True)
        await _wait_for_health(health, health_pb2.HealthCheckResponse.SERVING)


async def test_stop_returns_after_the_grace_period_when_a_background_worker_ignores_its_cancellation(
    start_service, caplog
):
    from inventory_svc.__main__ import SPEC

    ignored, released, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def stubborn_worker() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            ignored.set()  # and carries on, as a worker awaiting a dead dependency while unwinding would
            await released.wait()
            finished.set()

    def assemble(settings, infrastructure):
        assembly = SPEC.assemble(settings, infrastructure)
        return dataclasses.replace(assembly, background=(*assembly.background, stubborn_worker))

    running = await start_service(dataclasses.replace(SPEC, assemble=assemble), GRPC_SHUTDOWN_GRACE_SECONDS="1")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(running.stop(), timeout=30)
    took = loop.time() - started
    released.set()
    await asyncio.wait_for(finished.wait(), timeout=5)
    assert ignored.is_set()
    assert took < 10, took  # the server's grace (1 s) plus the workers' (1 s), not forever
    assert any("stubborn_worker did not stop when cancelled" in r.getMessage() for r in caplog.records)
