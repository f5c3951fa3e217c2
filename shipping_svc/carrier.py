"""The carrier adapter: books parcels and names their tracking numbers.

`Carrier` is the interface the shipping service books through. This build has one implementation,
`SandboxCarrier` ("sandbox-post"): an in-process, deterministic booking for development, tests and
the demo mesh, as the issue allows. It calls no network; its tracking number is derived from the
shipment id (`SBX` + 12 characters of its SHA-256), so a retried booking gets the same number. A real
carrier adapter implements the same interface (an HTTP client with its own idempotency key, the
shipment id), and carrier scans come back through RecordCarrierScan, called by its webhook adapter.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from service_runtime.values import Address
from shipping_svc.rates import Method


@dataclass(frozen=True)
class Booking:
    carrier: str
    tracking_number: str


class Carrier(Protocol):
    async def book(self, shipment_id: str, address: Address, method: Method, weight_grams: int) -> Booking: ...


class SandboxCarrier:
    """A deterministic sandbox: every booking succeeds; the tracking number is a function of the shipment id."""

    name = "sandbox-post"

    async def book(self, shipment_id: str, address: Address, method: Method, weight_grams: int) -> Booking:
        digest = hashlib.sha256(shipment_id.encode()).hexdigest()[:12].upper()
        return Booking(self.name, f"SBX-{digest}")
