"""The /metrics endpoint (METRICS_PORT): RPC histograms by method and code, the saga's outcomes and steps,
the pool, the PSP, read back through Prometheus's own text parser."""

from __future__ import annotations

import aiohttp
import grpc
from prometheus_client.parser import text_string_to_metric_families

from inventory_svc.__main__ import SPEC as INVENTORY
from service_runtime import metrics
from shop.gateway.v1 import gateway_service_pb2 as pb
from shop.inventory.v1 import inventory_service_pb2 as inventory_pb
from shop.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from tests.identity import trusted_channel
from tests.integration.gateway.conftest import StartGateway
from tests.rpc_errors import expect_failure

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(port: int) -> Samples:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/metrics", timeout=aiohttp.ClientTimeout(total=5)) as response,
    ):
        assert response.status == 200
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


async def test_after_a_call_the_metrics_endpoint_shows_that_methods_histogram_and_count(start_service):
    inventory = await start_service(INVENTORY, METRICS_PORT="0")
    assert inventory.metrics_port
    server = "rpc_server_duration_milliseconds"
    async with trusted_channel(inventory.address) as channel:
        stub = inventory_grpc.InventoryServiceStub(channel)
        before = await scrape(inventory.metrics_port)
        await stub.ListProducts(inventory_pb.ListProductsRequest(page_size=5))
        missing = await expect_failure(stub.GetProduct(inventory_pb.GetProductRequest(sku="NOPE")))
        after = await scrape(inventory.metrics_port)

    assert missing.code == grpc.StatusCode.NOT_FOUND
    listed = {"rpc_service": "shop.inventory.v1.InventoryService", "rpc_method": "ListProducts"}
    ok = {**listed, "rpc_grpc_status_code": "0"}
    assert value(after, f"{server}_count", **ok) == value(before, f"{server}_count", **ok) + 1
    assert value(after, f"{server}_bucket", **ok, le="+Inf") == value(after, f"{server}_count", **ok)
    assert value(after, f"{server}_sum", **ok) > value(before, f"{server}_sum", **ok)
    not_found = {"rpc_method": "GetProduct", "rpc_grpc_status_code": str(grpc.StatusCode.NOT_FOUND.value[0])}
    assert value(after, f"{server}_count", **not_found) == value(before, f"{server}_count", **not_found) + 1
    assert value(after, "rpc_server_refusals_total", rpc_method="GetProduct", error_reason="PRODUCT_NOT_FOUND") >= 1
    # Health checks are not counted; the pool is.
    assert value(after, f"{server}_count", rpc_service="grpc.health.v1.Health") == 0
    assert value(after, "db_client_connections_max", pool_name="inventory-svc") >= 1


async def test_a_checkout_shows_in_the_saga_step_psp_and_client_call_metrics(start_gateway: StartGateway):
    shop = await start_gateway(METRICS_PORT="0")
    await shop.product("MUG", 10)
    checkout_id = await shop.quoted_checkout("alice", {"MUG": 1})
    metrics_port = metrics.port()  # one endpoint per process: here, every in-process service's
    assert metrics_port is not None
    before = await scrape(metrics_port)
    placed = (await shop.place("alice", checkout_id)).checkout
    assert placed.status == pb.CHECKOUT_STATUS_COMPLETED
    after = await scrape(metrics_port)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("shop_checkout_sagas_total", outcome="completed") == 1
    for step in ("authorize_payment", "create_order", "capture_payment"):
        assert grew("shop_saga_step_duration_milliseconds_count", shop_saga_step=step, outcome="OK") == 1
    assert grew("rpc_client_duration_milliseconds_count", rpc_method="AuthorizePayment", rpc_grpc_status_code="0") == 1
    assert grew("shop_psp_calls_total", operation="authorizations", outcome="accepted") == 1
