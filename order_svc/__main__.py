"""Composition root: settings → database → statements → use cases, views, relay and cancel worker → server.

`python -m order_svc` serves; `python -m order_svc migrate` applies migrations and exits. The outbox
relay and the cancel worker run as background workers of every replica (both are safe to run many times).
"""

from __future__ import annotations

import sys
from pathlib import Path

from order_svc.compensation import CancellationWorker, WorkerSettings
from order_svc.handlers import OrderHandlers
from order_svc.relay import OutboxRelay
from order_svc.repository import OrderStatements
from order_svc.servicer import SERVICE_NAME, OrderServicer
from order_svc.settings import OrderSettings
from order_svc.views import OrderViews
from service_runtime.cli import run_service
from service_runtime.events import open_bus
from service_runtime.pagination import PageTokens
from service_runtime.spec import Assembly, Infrastructure, Need, ServiceSpec
from service_runtime.sql import UnitOfWork
from shop.order.v1 import order_service_pb2_grpc


def assemble(settings: OrderSettings, infrastructure: Infrastructure) -> Assembly:
    work = UnitOfWork(infrastructure.database, OrderStatements)
    worker = CancellationWorker(
        work,
        infrastructure.channels,
        payment_target=settings.payment_target,
        inventory_target=settings.inventory_target,
        settings=WorkerSettings(
            lease_seconds=settings.compensation_lease_seconds,
            backoff_max_seconds=settings.compensation_backoff_max_seconds,
        ),
    )
    handlers = OrderHandlers(work, after_cancel=worker.compensate_now)
    views = OrderViews(work, PageTokens(settings.common.page_token_secret, purpose="order.ListOrders"))
    relay = OutboxRelay(
        work,
        open_bus(settings.bus, infrastructure.redis, infrastructure.keys),
        settings.events_stream,
        batch_size=settings.relay_batch_size,
        retention_seconds=settings.outbox_retention_seconds,
    )
    return Assembly.of(
        order_service_pb2_grpc.add_OrderServiceServicer_to_server,
        OrderServicer(handlers, views),
        SERVICE_NAME,
        background=[relay.run, worker.run] if settings.relay_enabled else [worker.run],
    )


SPEC = ServiceSpec(
    name="order",
    schema="orders",
    migrations=Path(__file__).with_name("migrations"),
    load_settings=OrderSettings.from_environ,
    assemble=assemble,
    # Redis carries published events; the outbox keeps them while it is down.
    redis=Need.OPTIONAL,
)

if __name__ == "__main__":
    sys.exit(run_service(SPEC))
