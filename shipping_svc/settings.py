"""Shipping settings, read from the environment once at start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from service_runtime.settings import CommonSettings, EnvReader

DEFAULT_PORT = 50055


@dataclass(frozen=True)
class ShippingSettings:
    common: CommonSettings
    #: INVENTORY_TARGET: the inventory service, for the items' unit weights (Product.weight_grams).
    inventory_target: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ShippingSettings:
        env = EnvReader(environ)
        return cls(
            common=CommonSettings.from_env(env, service_name="shipping", default_port=DEFAULT_PORT),
            inventory_target=env.target("INVENTORY_TARGET", "127.0.0.1:50052"),
        )
