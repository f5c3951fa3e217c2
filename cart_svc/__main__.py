"""Composition root: settings → Redis store, catalogue client and price cache, history → use cases → servicer → server.

`python -m cart_svc` serves; `python -m cart_svc migrate` applies migrations and exits.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cart_svc.catalogue import Catalogue, PriceCache
from cart_svc.handlers import CartHandlers
from cart_svc.repository import CartStatements
from cart_svc.scripting import ScriptRunner
from cart_svc.servicer import SERVICE_NAME, CartServicer
from cart_svc.settings import CartSettings
from cart_svc.store import CartStore
from cart_svc.sweeper import AbandonmentSweeper
from service_runtime.cli import run_service
from service_runtime.spec import Assembly, Infrastructure, Need, ServiceSpec
from service_runtime.sql import UnitOfWork
from shop.cart.v1 import cart_service_pb2_grpc


def assemble(settings: CartSettings, infrastructure: Infrastructure) -> Assembly:
    scripts = ScriptRunner(infrastructure.redis)
    store = CartStore(
        infrastructure.redis,
        scripts,
        infrastructure.keys.child("cart"),
        ttl_seconds=settings.cart_ttl_seconds,
        grace_seconds=settings.expiry_grace_seconds,
    )
    handlers = CartHandlers(
        store,
        PriceCache(
            Catalogue(infrastructure.channels, settings.inventory_target),
            ttl_seconds=settings.price_cache_ttl_seconds,
            max_entries=settings.price_cache_max_entries,
        ),
        UnitOfWork(infrastructure.database, CartStatements),
        max_lines=settings.max_lines,
    )
    sweeper = AbandonmentSweeper(
        store,
        handlers,
        interval_seconds=settings.sweep_interval_seconds,
        batch_size=settings.sweep_batch_size,
        lease_seconds=max(30.0, settings.sweep_interval_seconds * 10),
    )
    servicer = CartServicer(handlers, ttl_seconds=settings.cart_ttl_seconds)
    return Assembly.of(
        cart_service_pb2_grpc.add_CartServiceServicer_to_server,
        servicer,
        SERVICE_NAME,
        background=[sweeper.run, scripts.hold],
    )


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
