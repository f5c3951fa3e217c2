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
    #: PAYMENT_AUTHORIZATION_TTL_SECONDS: how long an authorization holds funds (Stripe: 7 days); the PSP's
    #: own expiry wins when it is sooner. Past it the payment becomes EXPIRED.
    authorization_ttl_seconds: float
    #: RECONCILE_INTERVAL_SECONDS: pause between reconciler passes.
    reconcile_interval_seconds: float
    #: RECONCILE_AFTER_SECONDS: how long an operation is left to its caller before the reconciler looks it
    #: up at the PSP (and, on the first lookup of an unknown key, fences it).
    reconcile_after_seconds: float
    #: RECONCILE_BATCH_SIZE: rows claimed per pass.
    reconcile_batch_size: int
    #: PAYMENT_CACHE_TTL_SECONDS: how long a payment in a final state stays in the Redis status cache.
    cache_ttl_seconds: float

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> PaymentSettings:
        env = EnvReader(environ)
        return cls(
            common=CommonSettings.from_env(env, service_name="payment", default_port=DEFAULT_PORT),
            psp_base_url=env.url("PSP_BASE_URL", "http://127.0.0.1:8089", schemes=("http", "https")),
            psp_timeout_seconds=env.seconds("PSP_TIMEOUT_SECONDS", 5.0, minimum=0.1, maximum=60.0),
            authorization_ttl_seconds=env.seconds(
                "PAYMENT_AUTHORIZATION_TTL_SECONDS", 7 * 24 * 3600.0, minimum=1.0, maximum=31 * 24 * 3600.0
            ),
            reconcile_interval_seconds=env.seconds("RECONCILE_INTERVAL_SECONDS", 1.0, minimum=0.05, maximum=600.0),
            reconcile_after_seconds=env.seconds("RECONCILE_AFTER_SECONDS", 30.0, minimum=0.0, maximum=3600.0),
            reconcile_batch_size=env.integer("RECONCILE_BATCH_SIZE", 100, minimum=1, maximum=10_000),
            cache_ttl_seconds=env.seconds("PAYMENT_CACHE_TTL_SECONDS", 3600.0, minimum=1.0, maximum=7 * 24 * 3600.0),
        )
