"""Composition root: settings → database → statements → activities → saga and runner → handlers →
servicer → server, with the runner's recovery worker in the background from boot.

`python -m gateway` serves; `python -m gateway migrate` applies migrations and exits.
"""

from __future__ import annotations

import sys
from pathlib import Path

import grpc

from gateway.activities import Activities
from gateway.admin import AdminHandlers
from gateway.admin_servicer import SERVICE_NAME as ADMIN_SERVICE_NAME
from gateway.admin_servicer import CheckoutAdminServicer
from gateway.handlers import CheckoutHandlers
from gateway.ratelimit import RateLimiter
from gateway.relay import CheckoutEventRelay
from gateway.repository import GatewayStatements
from gateway.runner import RunnerSettings, SagaRunner
from gateway.saga import CheckoutSaga, SagaPolicy
from gateway.servicer import SERVICE_NAME, CheckoutServicer
from gateway.settings import GatewaySettings
from gateway.tax import TaxTable
from service_runtime.cli import run_service
from service_runtime.events import open_bus
from service_runtime.pagination import PageTokens
from service_runtime.spec import Assembly, Infrastructure, Need, ServiceSpec
from service_runtime.sql import UnitOfWork
from shop.gateway.v1 import admin_service_pb2_grpc, gateway_service_pb2_grpc
from shop.shipping.v1 import shipping_service_pb2_grpc


def assemble(settings: GatewaySettings, infrastructure: Infrastructure) -> Assembly:
    work = UnitOfWork(infrastructure.database, GatewayStatements)
    activities = Activities(settings, infrastructure.channels)
    policy = SagaPolicy(
        step_max_attempts=settings.step_max_attempts,
        compensation_max_attempts=settings.compensation_max_attempts,
        backoff_initial_seconds=settings.backoff_initial_seconds,
        backoff_max_seconds=settings.backoff_max_seconds,
        failpoint=settings.failpoint,
    )
    saga = CheckoutSaga(activities, extend_ttl_seconds=settings.reservation_extend_seconds)
    runner = SagaRunner(
        work,
        saga,
        activities,
        policy,
        RunnerSettings(
            lease_seconds=settings.lease_seconds,
            recovery_interval_seconds=settings.recovery_interval_seconds,
            recovery_batch_size=settings.recovery_batch_size,
        ),
    )
    shipping = shipping_service_pb2_grpc.ShippingServiceStub(infrastructure.channels.get(settings.shipping.target))
    handlers = CheckoutHandlers(work, activities, shipping, runner, TaxTable.load(), settings)
    limiter = RateLimiter(infrastructure.redis, infrastructure.keys.child("gateway"))
    servicer = CheckoutServicer(handlers, limiter, settings)
    admin = CheckoutAdminServicer(
        AdminHandlers(work, activities, runner),
        PageTokens(settings.common.page_token_secret, purpose="gateway.ListCheckouts"),
    )

    def register(server: grpc.aio.Server) -> None:
        gateway_service_pb2_grpc.add_CheckoutServiceServicer_to_server(servicer, server)
        admin_service_pb2_grpc.add_CheckoutAdminServiceServicer_to_server(admin, server)

    relay = CheckoutEventRelay(
        work, open_bus(settings.bus, infrastructure.redis, infrastructure.keys), settings.events_stream
    )
    return Assembly(
        register=register, service_names=[SERVICE_NAME, ADMIN_SERVICE_NAME], background=[runner.run, relay.run]
    )


SPEC = ServiceSpec(
    name="gateway",
    schema="checkout",
    migrations=Path(__file__).with_name("migrations"),
    load_settings=GatewaySettings.from_environ,
    assemble=assemble,
    # rate limits live in Redis.
    redis=Need.REQUIRED,
)

if __name__ == "__main__":
    sys.exit(run_service(SPEC))
