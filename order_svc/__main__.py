"""Composition root: settings → servicer → server.

`python -m order_svc` serves; `python -m order_svc migrate` applies migrations and exits. The orders
repository, the outbox relay and the cancellation worker are wired here by the issue that builds them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from order_svc.servicer import SERVICE_NAME, OrderServicer
from order_svc.settings import OrderSettings
from service_runtime.cli import run_service
from service_runtime.spec import Assembly, Infrastructure, Need, ServiceSpec
from shop.order.v1 import order_service_pb2_grpc


def assemble(settings: OrderSettings, infrastructure: Infrastructure) -> Assembly:
    # The generated stub marks every RPC abstract and none is built yet (the order issue builds them);
    # warn_unused_ignores flags this ignore once they are.
    servicer = OrderServicer()  # type: ignore[abstract]

    return Assembly.of(order_service_pb2_grpc.add_OrderServiceServicer_to_server, servicer, SERVICE_NAME)


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
