"""Composition root: settings (with the validated rate table) → database → weights client, sandbox
carrier → use cases → servicer → server.

`python -m shipping_svc` serves; `python -m shipping_svc migrate` applies migrations and exits.
"""

from __future__ import annotations

import sys
from pathlib import Path

from service_runtime.cli import run_service
from service_runtime.spec import Assembly, Infrastructure, Need, ServiceSpec
from service_runtime.sql import UnitOfWork
from shipping_svc.carrier import SandboxCarrier
from shipping_svc.catalogue import Weights
from shipping_svc.handlers import ShippingHandlers
from shipping_svc.repository import ShippingStatements
from shipping_svc.servicer import SERVICE_NAME, ShippingServicer
from shipping_svc.settings import ShippingSettings
from shop.shipping.v1 import shipping_service_pb2_grpc


def assemble(settings: ShippingSettings, infrastructure: Infrastructure) -> Assembly:
    handlers = ShippingHandlers(
        UnitOfWork(infrastructure.database, ShippingStatements),
        settings.rates,
        Weights(infrastructure.channels, settings.inventory_target),
        SandboxCarrier(),
    )
    return Assembly.of(
        shipping_service_pb2_grpc.add_ShippingServiceServicer_to_server, ShippingServicer(handlers), SERVICE_NAME
    )


SPEC = ServiceSpec(
    name="shipping",
    schema="shipping",
    migrations=Path(__file__).with_name("migrations"),
    load_settings=ShippingSettings.from_environ,
    assemble=assemble,
    # rates come from a data file and shipments from PostgreSQL.
    redis=Need.UNUSED,
)

if __name__ == "__main__":
    sys.exit(run_service(SPEC))
