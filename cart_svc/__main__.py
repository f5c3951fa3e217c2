"""Composition root: settings → servicer → server.

`python -m cart_svc` serves; `python -m cart_svc migrate` applies migrations and exits. The cart's
store, inventory client and abandonment sweeper are wired here by the issue that builds its use cases.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cart_svc.servicer import SERVICE_NAME, CartServicer
from cart_svc.settings import CartSettings
from service_runtime.cli import run_service
from service_runtime.spec import Assembly, Infrastructure, Need, ServiceSpec
from shop.cart.v1 import cart_service_pb2_grpc


def assemble(settings: CartSettings, infrastructure: Infrastructure) -> Assembly:
    # The generated stub marks every RPC abstract and none is built yet (the cart issue builds them);
    # warn_unused_ignores flags this ignore once they are.
    servicer = CartServicer()  # type: ignore[abstract]

    return Assembly.of(cart_service_pb2_grpc.add_CartServiceServicer_to_server, servicer, SERVICE_NAME)


SPEC = ServiceSpec(
    name="cart",
    schema="cart",
    migrations=Path(__file__).with_name("migrations"),
    load_settings=CartSettings.from_environ,
    assemble=assemble,
    # active carts live in Redis: without it no cart can be read or changed.
    redis=Need.REQUIRED,
)

if __name__ == "__main__":
    sys.exit(run_service(SPEC))
