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

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> CartSettings:
        env = EnvReader(environ)
        return cls(
            common=CommonSettings.from_env(env, service_name="cart", default_port=DEFAULT_PORT),
            cart_ttl_seconds=env.seconds("CART_TTL_SECONDS", 1800.0, minimum=1.0, maximum=7 * 86400.0),
            max_lines=env.integer("CART_MAX_LINES", MAX_LINES, minimum=1, maximum=MAX_LINES),
            inventory_target=env.target("INVENTORY_TARGET", "127.0.0.1:50052"),
        )
