"""A small demo catalogue, loaded through inventory's gRPC API as a trusted caller (catalogue and stock
writes are for mesh services only): with a service token signed with SERVICE_TOKEN_SECRET (the
development default unless the environment sets it, as for the services devstack starts), or, under
MESH_TLS=1, the `devstack` workload's client certificate.

Safe to run again: UpsertProduct is idempotent on the SKU, and each stock receipt uses an
idempotency key derived from the SKU and the quantity, so a rerun replays instead of adding stock.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import grpc

from devstack.errors import DevstackError
from devstack.pki import MeshFiles, client_channel
from service_runtime.identity import SERVICE_TOKEN, ServiceTokens
from service_runtime.settings import CommonSettings, EnvReader
from shop.inventory.v1 import inventory_service_pb2, inventory_service_pb2_grpc
from shop.type.v1 import money_pb2

CURRENCY = "USD"
CALL_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class DemoProduct:
    sku: str
    name: str
    price_cents: int
    weight_grams: int
    units_received: int

    @property
    def receipt_key(self) -> str:
        """Deterministic, so a rerun is a replay; a changed quantity is a new receipt."""
        return f"devstack-seed:{self.sku}:received:{self.units_received}"


DEMO_CATALOGUE: tuple[DemoProduct, ...] = (
    DemoProduct("DEMO-MUG-ENAMEL", "Enamel camping mug", 1299, 340, 40),
    DemoProduct("DEMO-TEE-ORGANIC-M", "Organic cotton T-shirt, size M", 2499, 180, 25),
    DemoProduct("DEMO-BOTTLE-750", "Insulated steel bottle, 750 ml", 3199, 420, 30),
    DemoProduct("DEMO-SOCKS-MERINO-3", "Merino wool socks, 3 pairs", 1899, 150, 60),
    DemoProduct("DEMO-LAMP-USB", "USB desk lamp", 4599, 900, 8),
)


@dataclass(frozen=True)
class SeedResult:
    products_created: int
    receipts_recorded: int


async def seed_catalogue(inventory_address: str, tls: MeshFiles | None = None) -> SeedResult:
    """Upserts every demo product and receives its stock once; returns what this call changed. With `tls`
    (MESH_TLS=1), it calls as the `devstack` workload over mutual TLS."""
    created = received = 0
    metadata: tuple[tuple[str, str], ...] = ()
    if tls is None:  # under mutual TLS the certificate proves the caller, and a service token is refused
        common = CommonSettings.from_env(EnvReader(os.environ), service_name="devstack", default_port=0)
        metadata = ((SERVICE_TOKEN, ServiceTokens(common.identity).current()),)
    async with client_channel(inventory_address, tls) as channel:
        inventory = inventory_service_pb2_grpc.InventoryServiceStub(channel)
        for product in DEMO_CATALOGUE:
            try:
                upserted = await inventory.UpsertProduct(
                    inventory_service_pb2.UpsertProductRequest(
                        sku=product.sku,
                        name=product.name,
                        price=money_pb2.Money(currency_code=CURRENCY, amount_minor=product.price_cents),
                        weight_grams=product.weight_grams,
                    ),
                    metadata=metadata,
                    timeout=CALL_TIMEOUT_SECONDS,
                )
                adjusted = await inventory.AdjustStock(
                    inventory_service_pb2.AdjustStockRequest(
                        sku=product.sku,
                        delta=product.units_received,
                        reason=inventory_service_pb2.STOCK_ADJUSTMENT_REASON_RECEIVED,
                        note="demo catalogue (devstack)",
                        idempotency_key=product.receipt_key,
                    ),
                    metadata=metadata,
                    timeout=CALL_TIMEOUT_SECONDS,
                )
            except grpc.aio.AioRpcError as error:
                raise DevstackError(
                    f"seeding {product.sku} through inventory at {inventory_address} failed: "
                    f"{error.code().name}: {error.details()}"
                ) from None
            created += upserted.created
            received += not adjusted.replayed
    return SeedResult(products_created=created, receipts_recorded=received)
