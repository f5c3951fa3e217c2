"""Current names and prices from the inventory service: one BatchGetProducts per call, however many
lines. Prices never come from the client."""

from __future__ import annotations

from collections.abc import Iterable

from cart_svc.domain import CatalogueEntry
from service_runtime.channels import Channels, HasDeadline, outbound_timeout
from service_runtime.wire import money_in
from shop.inventory.v1 import inventory_service_pb2 as inventory_pb
from shop.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc

#: Longest a price lookup may take, whatever the caller's deadline.
LOOKUP_CAP_SECONDS = 2.0
#: BatchGetProducts takes at most this many SKUs (a cart has at most 100 lines).
BATCH_LIMIT = 100


class Catalogue:
    def __init__(self, channels: Channels, target: str) -> None:
        self._channels = channels
        self._target = target

    async def entries(self, skus: Iterable[str], deadline: HasDeadline | None) -> dict[str, CatalogueEntry]:
        """The catalogue entries of the SKUs that are sold; a SKU missing from the result is not in the
        catalogue (unknown or discontinued). A failed call escapes as grpc.aio.AioRpcError, which the
        runtime passes on."""
        wanted = list(dict.fromkeys(skus))
        if not wanted:
            return {}
        stub = inventory_grpc.InventoryServiceStub(self._channels.get(self._target))
        found: dict[str, CatalogueEntry] = {}
        for start in range(0, len(wanted), BATCH_LIMIT):
            response = await stub.BatchGetProducts(
                inventory_pb.BatchGetProductsRequest(skus=wanted[start : start + BATCH_LIMIT]),
                timeout=outbound_timeout(deadline, cap=LOOKUP_CAP_SECONDS),
            )
            for product in response.products:
                if not product.discontinued:  # it left the catalogue: its lines are unavailable
                    found[product.sku] = CatalogueEntry(product.sku, product.name, money_in(product.price))
        return found
