"""Composition root: settings → database → statements → use cases and views → servicer → server.

`python -m inventory_svc` serves; `python -m inventory_svc migrate` applies migrations and exits.
"""

from __future__ import annotations

import sys
from pathlib import Path

from inventory_svc.handlers import InventoryHandlers
from inventory_svc.product_cache import ProductCache
from inventory_svc.repository import InventoryStatements
from inventory_svc.reserve_batcher import ReserveBatcher
from inventory_svc.servicer import SERVICE_NAME, InventoryServicer
from inventory_svc.settings import InventorySettings
from inventory_svc.sweeper import ReservationSweeper
from inventory_svc.views import InventoryViews
from service_runtime.cli import run_service
from service_runtime.pagination import PageTokens
from service_runtime.spec import Assembly, Infrastructure, Need, ServiceSpec
from service_runtime.sql import UnitOfWork
from shop.inventory.v1 import inventory_service_pb2_grpc


def assemble(settings: InventorySettings, infrastructure: Infrastructure) -> Assembly:
    work = UnitOfWork(infrastructure.database, InventoryStatements)
    cache = ProductCache(
        infrastructure.redis, infrastructure.keys.child("inventory"), ttl_seconds=settings.product_cache_ttl_seconds
    )
    reserver = ReserveBatcher(work)
    handlers = InventoryHandlers(
        work,
        cache,
        reserver,
        shop_currency=settings.shop_currency,
        default_ttl_seconds=settings.default_reservation_ttl_seconds,
    )
    views = InventoryViews(work, cache, PageTokens(settings.common.page_token_secret, purpose="inventory.ListProducts"))
    sweeper = ReservationSweeper(
        work, interval_seconds=settings.sweep_interval_seconds, batch_size=settings.sweep_batch_size
    )
    return Assembly.of(
        inventory_service_pb2_grpc.add_InventoryServiceServicer_to_server,
        InventoryServicer(handlers, views),
        SERVICE_NAME,
        background=[sweeper.run],
    )


SPEC = ServiceSpec(
    name="inventory",
    schema="inventory",
    migrations=Path(__file__).with_name("migrations"),
    load_settings=InventorySettings.from_environ,
    assemble=assemble,
    # Redis only holds the product cache: without it reads go to PostgreSQL, so it cannot unready us.
    redis=Need.OPTIONAL,
)

if __name__ == "__main__":
    sys.exit(run_service(SPEC))
