"""Unit weights from the inventory service: one BatchGetProducts per call."""

from __future__ import annotations

from collections.abc import Sequence

from service_runtime.channels import Channels, HasDeadline, outbound_timeout
from shop.inventory.v1 import inventory_service_pb2 as inventory_pb
from shop.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc

LOOKUP_CAP_SECONDS = 2.0


class Weights:
    def __init__(self, channels: Channels, target: str) -> None:
        self._channels = channels
        self._target = target

    async def of(self, skus: Sequence[str], deadline: HasDeadline | None) -> dict[str, int]:
        """Unit weight in grams of each SKU in the catalogue; a SKU missing from the result is not in it.
        A failed call escapes as grpc.aio.AioRpcError, which the runtime passes on."""
        stub = inventory_grpc.InventoryServiceStub(self._channels.get(self._target))
        response = await stub.BatchGetProducts(
            inventory_pb.BatchGetProductsRequest(skus=list(skus)),
            timeout=outbound_timeout(deadline, cap=LOOKUP_CAP_SECONDS),
        )
        return {product.sku: product.weight_grams for product in response.products}
