"""Where the mesh's services are: the addresses `make up` uses, unless flags or the environment say otherwise.

Service i of devstack's table listens on 127.0.0.1:<DEVSTACK_PORT_BASE + i> (50050 by default), so a
mesh started with another port base is found by setting the same variable (or `--port-base`). One
service can be pointed elsewhere with its `<SERVICE>_TARGET` variable or its own flag.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from devstack.mesh import SERVICES, address_of
from devstack.settings import DEFAULT_PORT_BASE

#: What checkoutctl calls, as devstack names the packages, and the variable that overrides each.
_PACKAGES = {"gateway": "gateway", "cart": "cart_svc", "inventory": "inventory_svc", "order": "order_svc"}
_VARIABLES = {
    "gateway": "GATEWAY_TARGET",
    "cart": "CART_TARGET",
    "inventory": "INVENTORY_TARGET",
    "order": "ORDER_TARGET",
}


class TargetError(ValueError):
    """A port base or address that cannot be used; the message says which."""


@dataclass(frozen=True)
class Targets:
    gateway: str
    cart: str
    inventory: str
    order: str

    @classmethod
    def resolve(
        cls, environ: Mapping[str, str], *, port_base: int | None = None, overrides: Mapping[str, str | None] = {}
    ) -> Targets:
        """Flags (`port_base`, `overrides`) win over the environment, which wins over devstack's defaults."""
        base = port_base if port_base is not None else _port_base(environ.get("DEVSTACK_PORT_BASE", "").strip())
        by_package = {service.package: service for service in SERVICES}
        addresses: dict[str, str] = {}
        for name, package in _PACKAGES.items():
            chosen = overrides.get(name) or environ.get(_VARIABLES[name], "").strip()
            addresses[name] = chosen or address_of(by_package[package], base)
        return cls(**addresses)


def _port_base(value: str) -> int:
    if not value:
        return DEFAULT_PORT_BASE
    try:
        number = int(value)
    except ValueError:
        raise TargetError(f"DEVSTACK_PORT_BASE={value!r} is not a whole number") from None
    if not 1024 <= number <= 65535:
        raise TargetError(f"DEVSTACK_PORT_BASE={number} is outside 1024..65535")
    return number
