"""Cart settings, read from the environment once at start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cart_svc.domain import MAX_LINES
from service_runtime.settings import CommonSettings, EnvReader

DEFAULT_PORT = 50051


@dataclass(frozen=True)
class CartSettings:
    common: CommonSettings
    #: CART_TTL_SECONDS: sliding lifetime of an ACTIVE cart; every call that names it starts it again.
    cart_ttl_seconds: float
    #: CART_MAX_LINES: most lines a cart may hold. The contract promises 100, so it can only be lowered.
    max_lines: int
    #: INVENTORY_TARGET: the inventory service, for current prices and the catalogue (BatchGetProducts).
    inventory_target: str
    #: CART_EXPIRY_GRACE_SECONDS: how long Redis keeps an expired cart's keys, so the sweeper records it
    #: in PostgreSQL before they go (default 600: ten minutes of sweeper or PostgreSQL outage).
    expiry_grace_seconds: float
    #: CART_SWEEP_INTERVAL_SECONDS: pause between abandonment sweeps (default 1).
    sweep_interval_seconds: float
    #: CART_SWEEP_BATCH_SIZE: expired carts one sweep leases (default 100).
    sweep_batch_size: int
    #: CART_PRICE_CACHE_TTL_SECONDS: how long this replica reuses inventory's answer for a SKU (its price
    #: and name, or that it is not sold) before asking again (default 2; 0 asks on every call). The bound
    #: on how stale a cart's prices may be, on top of inventory's own PRODUCT_CACHE_TTL_SECONDS.
    price_cache_ttl_seconds: float
    #: CART_PRICE_CACHE_MAX_ENTRIES: most SKUs the price cache holds (default 100000; oldest go first).
    price_cache_max_entries: int

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> CartSettings:
        env = EnvReader(environ)
        return cls(
            common=CommonSettings.from_env(env, service_name="cart", default_port=DEFAULT_PORT),
            cart_ttl_seconds=env.seconds("CART_TTL_SECONDS", 1800.0, minimum=1.0, maximum=7 * 86400.0),
            max_lines=env.integer("CART_MAX_LINES", MAX_LINES, minimum=1, maximum=MAX_LINES),
            inventory_target=env.target("INVENTORY_TARGET", "127.0.0.1:50052"),
            expiry_grace_seconds=env.seconds("CART_EXPIRY_GRACE_SECONDS", 600.0, minimum=10.0, maximum=86400.0),
            sweep_interval_seconds=env.seconds("CART_SWEEP_INTERVAL_SECONDS", 1.0, minimum=0.05, maximum=3600.0),
            sweep_batch_size=env.integer("CART_SWEEP_BATCH_SIZE", 100, minimum=1, maximum=10_000),
            price_cache_ttl_seconds=env.seconds("CART_PRICE_CACHE_TTL_SECONDS", 2.0, minimum=0.0, maximum=60.0),
            price_cache_max_entries=env.integer(
                "CART_PRICE_CACHE_MAX_ENTRIES", 100_000, minimum=100, maximum=10_000_000
            ),
        )
