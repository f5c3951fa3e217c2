"""Composition root: settings → servicer → server.

`python -m shipping_svc` serves; `python -m shipping_svc migrate` applies migrations and exits. The
rate table, inventory client and shipments repository are wired here by the issue that builds them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from service_runtime.cli import run_service
from service_runtime.spec import Assembly, Infrastructure, Need, ServiceSpec
from shipping_svc.servicer import SERVICE_NAME, ShippingServicer
from shipping_svc.settings import ShippingSettings
from shop.shipping.v1 import shipping_service_pb2_grpc


def assemble(settings: ShippingSettings, infrastructure: Infrastructure) -> Assembly:
    # The generated stub marks every RPC abstract and none is built yet (the shipping issue builds them);
    # warn_unused_ignores flags this ignore once they are.
    servicer = ShippingServicer()  # type: ignore[abstract]

    return Assembly.of(shipping_service_pb2_grpc.add_ShippingServiceServicer_to_server, servicer, SERVICE_NAME)


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
