"""Composition root: settings → servicer → server.

`python -m gateway` serves; `python -m gateway migrate` applies migrations and exits. The downstream
clients, the checkout saga and its recovery worker are wired here by the issue that builds them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gateway.servicer import SERVICE_NAME, CheckoutServicer
from gateway.settings import GatewaySettings
from service_runtime.cli import run_service
from service_runtime.spec import Assembly, Infrastructure, Need, ServiceSpec
from shop.gateway.v1 import gateway_service_pb2_grpc


def assemble(settings: GatewaySettings, infrastructure: Infrastructure) -> Assembly:
    # The generated stub marks every RPC abstract and none is built yet (the gateway issue builds them);
    # warn_unused_ignores flags this ignore once they are.
    servicer = CheckoutServicer()  # type: ignore[abstract]

    return Assembly.of(gateway_service_pb2_grpc.add_CheckoutServiceServicer_to_server, servicer, SERVICE_NAME)


SPEC = ServiceSpec(
    name="gateway",
    schema="checkout",
    migrations=Path(__file__).with_name("migrations"),
    load_settings=GatewaySettings.from_environ,
    assemble=assemble,
    # idempotency records and rate limits live in Redis.
    redis=Need.REQUIRED,
)

if __name__ == "__main__":
    sys.exit(run_service(SPEC))
