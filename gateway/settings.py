"""Gateway settings, read from the environment once at start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from service_runtime.settings import CommonSettings, EnvReader

DEFAULT_PORT = 50050


@dataclass(frozen=True)
class Hop:
    """A downstream service: where it is, and the longest deadline one call to it may get."""

    #: <SERVICE>_TARGET: gRPC target, e.g. dns:///cart-svc:50051.
    target: str
    #: <SERVICE>_DEADLINE_SECONDS: cap on one call's deadline; less when the caller's own deadline leaves less.
    deadline_seconds: float


def _hop(env: EnvReader, service: str, default_port: int, default_deadline: float) -> Hop:
    return Hop(
        target=env.target(f"{service}_TARGET", f"127.0.0.1:{default_port}"),
        deadline_seconds=env.seconds(f"{service}_DEADLINE_SECONDS", default_deadline, minimum=0.05, maximum=60.0),
    )


@dataclass(frozen=True)
class GatewaySettings:
    common: CommonSettings
    cart: Hop
    inventory: Hop
    #: Authorization and capture wait for the PSP, so the payment hop gets the longest cap.
    payment: Hop
    order: Hop
    shipping: Hop

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> GatewaySettings:
        env = EnvReader(environ)
        return cls(
            common=CommonSettings.from_env(env, service_name="gateway", default_port=DEFAULT_PORT),
            cart=_hop(env, "CART", 50051, 2.0),
            inventory=_hop(env, "INVENTORY", 50052, 2.0),
            payment=_hop(env, "PAYMENT", 50053, 10.0),
            order=_hop(env, "ORDER", 50054, 2.0),
            shipping=_hop(env, "SHIPPING", 50055, 2.0),
        )
