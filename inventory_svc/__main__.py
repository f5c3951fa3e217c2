"""Composition root: settings → pools → repository → handlers → servicer → server.

`python -m inventory_svc` serves; `python -m inventory_svc migrate` applies migrations and exits.
"""

from __future__ import annotations

import sys
from pathlib import Path

from inventory_svc.handlers import InventoryHandlers
from inventory_svc.product_cache import ProductCache
from inventory_svc.repository import InventoryStore
from inventory_svc.servicer import SERVICE_NAME, InventoryServicer
from inventory_svc.settings import InventorySettings
from inventory_svc.sweeper import ReservationSweeper
from service_runtime.host import Assembly, Infrastructure, ServiceSpec, run_service
from shop.inventory.v1 import inventory_service_pb2_grpc


def assemble(settings: InventorySettings, infrastructure: Infrastructure) -> Assembly:
    store = InventoryStore(infrastructure.database)
    cache = ProductCache(
        infrastructure.redis, infrastructure.keys.child("inventory"), ttl_seconds=settings.product_cache_ttl_seconds
    )
    handlers = InventoryHandlers(
        store,
        cache,
        shop_currency=settings.shop_currency,
        default_ttl_seconds=settings.default_reservation_ttl_seconds,
    )
    servicer = InventoryServicer(handlers)
    sweeper = ReservationSweeper(
        handlers, interval_seconds=settings.sweep_interval_seconds, batch_size=settings.sweep_batch_size
    )

    return Assembly.of(
        inventory_service_pb2_grpc.add_InventoryServiceServicer_to_server,
        servicer,
        SERVICE_NAME,
        background=[sweeper.run],
    )


SPEC = ServiceSpec(
    name="inventory",
    schema="inventory",
    migrations=Path(__file__).with_name("migrations"),
    load_settings=InventorySettings.from_environ,
    assemble=assemble,
)

if __name__ == "__main__":
    sys.exit(run_service(SPEC))
