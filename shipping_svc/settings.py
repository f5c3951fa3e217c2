"""Shipping settings, read from the environment once at start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from service_runtime.settings import CommonSettings, EnvReader, SettingsError
from shipping_svc.rates import DEFAULT_RATES_FILE, RateFileError, RateTable, load_rate_table

DEFAULT_PORT = 50055


@dataclass(frozen=True)
class ShippingSettings:
    common: CommonSettings
    #: INVENTORY_TARGET: the inventory service, for the items' unit weights (Product.weight_grams).
    inventory_target: str
    #: SHIPPING_RATES_FILE: the rate table (format in shipping_svc/rates.py), read and validated at
    #: start; a bad file stops the service (exit 2) naming the problem. Default: shipping_svc/data/rates.json.
    rates: RateTable

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ShippingSettings:
        env = EnvReader(environ)
        path = Path(env.text("SHIPPING_RATES_FILE", str(DEFAULT_RATES_FILE)))
        try:
            rates = load_rate_table(path)
        except RateFileError as error:
            raise SettingsError("SHIPPING_RATES_FILE", str(error)) from None
        return cls(
            common=CommonSettings.from_env(env, service_name="shipping", default_port=DEFAULT_PORT),
            inventory_target=env.target("INVENTORY_TARGET", "127.0.0.1:50052"),
            rates=rates,
        )
