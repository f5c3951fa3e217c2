"""Inventory settings, read from the environment once at start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from service_runtime.settings import CommonSettings, EnvReader

DEFAULT_PORT = 50052


@dataclass(frozen=True)
class InventorySettings:
    common: CommonSettings
    #: SHOP_CURRENCY: the one ISO 4217 currency product prices are in.
    shop_currency: str
    #: RESERVATION_DEFAULT_TTL_SECONDS: how long a reservation holds stock when the caller gives no ttl.
    default_reservation_ttl_seconds: float
    #: RESERVATION_SWEEP_INTERVAL_SECONDS: pause between expiry sweeps when nothing is due.
    sweep_interval_seconds: float
    #: RESERVATION_SWEEP_BATCH_SIZE: reservations expired per sweeper transaction.
    sweep_batch_size: int
    #: PRODUCT_CACHE_TTL_SECONDS: lifetime of a cached product (GetProduct/BatchGetProducts).
    product_cache_ttl_seconds: float

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> InventorySettings:
        env = EnvReader(environ)
        return cls(
            common=CommonSettings.from_env(env, service_name="inventory", default_port=DEFAULT_PORT),
            shop_currency=env.text("SHOP_CURRENCY", "USD", pattern=r"[A-Z]{3}"),
            default_reservation_ttl_seconds=env.seconds(
                "RESERVATION_DEFAULT_TTL_SECONDS", 900.0, minimum=1.0, maximum=86400.0
            ),
            sweep_interval_seconds=env.seconds("RESERVATION_SWEEP_INTERVAL_SECONDS", 1.0, minimum=0.05, maximum=3600.0),
            sweep_batch_size=env.integer("RESERVATION_SWEEP_BATCH_SIZE", 200, minimum=1, maximum=10_000),
            product_cache_ttl_seconds=env.seconds("PRODUCT_CACHE_TTL_SECONDS", 10.0, minimum=0.1, maximum=3600.0),
        )
