"""Payment settings, read from the environment once at start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from service_runtime.settings import CommonSettings, EnvReader

DEFAULT_PORT = 50053


@dataclass(frozen=True)
class PaymentSettings:
    common: CommonSettings
    #: PSP_BASE_URL: the payment service provider's HTTP/JSON API (in development, the sandbox card network).
    psp_base_url: str
    #: PSP_TIMEOUT_SECONDS: longest wait for one PSP answer; past it the outcome is unknown and the
    #: reconciler settles it.
    psp_timeout_seconds: float

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> PaymentSettings:
        env = EnvReader(environ)
        return cls(
            common=CommonSettings.from_env(env, service_name="payment", default_port=DEFAULT_PORT),
            psp_base_url=env.url("PSP_BASE_URL", "http://127.0.0.1:8089", schemes=("http", "https")),
            psp_timeout_seconds=env.seconds("PSP_TIMEOUT_SECONDS", 5.0, minimum=0.1, maximum=60.0),
        )
