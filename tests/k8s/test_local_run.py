"""A manifest-driven local run: every process of the rendered dev overlay (the seven services and the sandbox
PSP) starts as `python -m <package>` with exactly the environment its Deployment gives it, and one checkout
completes through it. So a setting renamed in code but not in the manifests (or a value the code refuses)
fails here, not in a cluster.

The only changes to the rendered environment are where the cluster differs from this machine, each listed in
`LocalCluster.localize`: Service host:port pairs and container ports → loopback ports, the database/Redis
URLs and key prefix → this test's, the downward API's pod name → a fixed name, paths inside the image → the
project's tree, and the collector's endpoint dropped (no collector runs here)."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2_grpc

from devstack.mesh import health_of
from service_runtime.identity import SERVICE_TOKEN, ServiceTokens, mint_customer_token
from service_runtime.settings import CommonSettings, EnvReader
from shop.cart.v1 import cart_service_pb2 as cart_pb
from shop.cart.v1 import cart_service_pb2_grpc as cart_grpc
from shop.gateway.v1 import gateway_service_pb2 as gateway_pb
from shop.gateway.v1 import gateway_service_pb2_grpc as gateway_grpc
from shop.inventory.v1 import inventory_service_pb2 as inventory_pb
from shop.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shop.order.v1 import order_service_pb2 as order_pb
from shop.order.v1 import order_service_pb2_grpc as order_grpc
from shop.shipping.v1 import shipping_service_pb2 as shipping_pb
from shop.type.v1 import address_pb2, money_pb2
from tests.k8s.manifests import (
    K8S,
    ROOT,
    Obj,
    container_environment,
    named,
    of_kind,
    package_of,
    render,
    server_container,
    specs,
)

pytestmark = pytest.mark.e2e

#: Where the Dockerfile installs the project; the manifests name files under it.
IMAGE_SITE_PACKAGES = "/opt/venv/lib/python3.11/site-packages/"
READY_SECONDS = 60.0
ADDRESS = address_pb2.Address(
    recipient_name="Kube Local", line1="1 Main St", city="New York", region="NY", postal_code="10001", country_code="US"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Process:
    name: str
    package: str
    env: dict[str, str]
    ports: dict[str, int]  # container port name → loopback port
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:]) if self.log.exists() else ""


class LocalCluster:
    """The dev overlay's Deployments as local processes."""

    def __init__(self, objects: list[Obj], database_url: str, redis_url: str, redis_prefix: str, logs: Path) -> None:
        self.objects = objects
        self.database_url = database_url
        self.redis_url = redis_url
        self.redis_prefix = redis_prefix
        self.deployments = [
            d for d in of_kind(objects, "Deployment") if d["metadata"]["name"] in {*specs(), "psp-sandbox"}
        ]
        # Every Service's port and every container port gets a loopback port of its own.
        self.service_ports: dict[tuple[str, int], int] = {}
        self.container_ports: dict[tuple[str, int], int] = {}
        for deployment in self.deployments:
            name = deployment["metadata"]["name"]
            for port in server_container(deployment)["ports"]:
                self.container_ports[(name, port["containerPort"])] = free_port()
        started = {d["metadata"]["name"] for d in self.deployments}
        for service in of_kind(objects, "Service"):
            name = service["metadata"]["name"]
            if name not in started:
                continue  # datastores (this test's own), the collector and the transcoder do not run here
            for port in service["spec"]["ports"]:
                target = self._target_port(name, port["targetPort"])
                if (name, target) in self.container_ports:
                    self.service_ports[(name, port["port"])] = self.container_ports[(name, target)]
        self.processes = [self._process(d, logs) for d in self.deployments]

    def _target_port(self, deployment: str, target: str | int) -> int:
        if isinstance(target, int):
            return target
        container = server_container(named(self.objects, "Deployment", deployment))
        return int(next(p["containerPort"] for p in container["ports"] if p["name"] == target))

    def localize(self, deployment: str, env: dict[str, str | None]) -> dict[str, str]:
        """The rendered environment with the cluster's addresses replaced by this machine's."""
        local: dict[str, str] = {}
        mine = {port: local_port for (name, port), local_port in self.container_ports.items() if name == deployment}
        for key, value in env.items():
            if key == "OTEL_EXPORTER_OTLP_ENDPOINT":
                continue  # no collector here: spans are made but not exported
            if value is None:
                assert key == "NOTIFICATION_CONSUMER_NAME", f"{deployment}: {key} has no value in the dev overlay"
                value = f"{deployment}-local"  # the downward API's metadata.name
            elif key == "DATABASE_URL":
                value = self.database_url
            elif key == "REDIS_URL":
                value = self.redis_url
            elif key == "REDIS_KEY_PREFIX":
                value = self.redis_prefix
            elif value.startswith(IMAGE_SITE_PACKAGES):
                value = str(ROOT / value.removeprefix(IMAGE_SITE_PACKAGES))
            else:
                for (name, port), local_port in self.service_ports.items():
                    value = re.sub(rf"\b{re.escape(name)}:{port}\b", f"127.0.0.1:{local_port}", value)
                value = re.sub(r"^(\[::\]|0\.0\.0\.0):(\d+)$", lambda m: f"127.0.0.1:{mine[int(m.group(2))]}", value)
                if value == "0.0.0.0":
                    value = "127.0.0.1"
                if value.isdigit() and int(value) in mine:  # a port setting (PSP_LISTEN_PORT, METRICS_PORT)
                    value = str(mine[int(value)])
            local[key] = value
        return local

    def _process(self, deployment: Obj, logs: Path) -> Process:
        name = deployment["metadata"]["name"]
        container = server_container(deployment)
        env = self.localize(name, container_environment(self.objects, container))
        ports = {p["name"]: self.container_ports[(name, p["containerPort"])] for p in container["ports"]}
        return Process(name, package_of(container), env, ports, logs / f"{name}.log")

    def start(self) -> None:
        for process in self.processes:
            with process.log.open("wb") as log:
                process.popen = subprocess.Popen(
                    [sys.executable, "-m", process.package],
                    cwd=ROOT,
                    env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **process.env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

    def stop(self) -> None:
        for process in self.processes:
            if process.popen is not None and process.popen.poll() is None:
                process.popen.terminate()
        for process in self.processes:
            if process.popen is not None:
                try:
                    process.popen.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.popen.kill()
                    process.popen.wait()

    def by_name(self, name: str) -> Process:
        return next(p for p in self.processes if p.name == name)

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.by_name(name).ports['grpc']}"

    async def wait_until_serving(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_SECONDS
        pending = {p.name for p in self.processes}
        while pending:
            for process in self.processes:
                assert process.popen is not None
                if process.popen.poll() is not None:
                    pytest.fail(f"{process.name} exited {process.popen.returncode}:\n{process.log_tail()}")
            for name in sorted(pending):
                if await self._serving(self.by_name(name)):
                    pending.discard(name)
            if loop.time() > deadline:
                tails = "\n".join(f"--- {n}:\n{self.by_name(n).log_tail()}" for n in sorted(pending))
                pytest.fail(f"not serving after {READY_SECONDS:.0f} s: {sorted(pending)}\n{tails}")
            await asyncio.sleep(0.3)

    async def _serving(self, process: Process) -> bool:
        if "grpc" not in process.ports:  # the sandbox PSP: HTTP, says when its port is open
            return "listening on" in (process.log.read_text(errors="replace") if process.log.exists() else "")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{process.ports['grpc']}") as channel:
            return await health_of(health_pb2_grpc.HealthStub(channel)) == "SERVING"


@pytest.fixture
async def cluster(database_url, redis_url, redis_prefix) -> AsyncIterator[LocalCluster]:
    with tempfile.TemporaryDirectory(prefix="k8s-local-run-") as logs:
        local = LocalCluster(render(K8S / "overlays" / "dev"), database_url, redis_url, redis_prefix, Path(logs))
        local.start()
        try:
            await local.wait_until_serving()
            yield local
        finally:
            local.stop()


async def test_a_checkout_completes_through_processes_configured_by_the_dev_overlay(cluster, database_url):
    assert {p.name for p in cluster.processes} == {*specs(), "psp-sandbox"}
    # Tokens signed with the keys the manifests give the services (the dev overlay's Secret).
    common = CommonSettings.from_env(EnvReader(cluster.by_name("gateway").env), service_name="k8s-test", default_port=0)
    trusted = ((SERVICE_TOKEN, ServiceTokens(common.identity).current()),)
    user = f"kube-{uuid.uuid4().hex[:8]}"
    customer = (("authorization", f"Bearer {mint_customer_token(common.identity, sub=user)}"),)

    async with (
        grpc.aio.insecure_channel(cluster.address("inventory-svc")) as inventory_channel,
        grpc.aio.insecure_channel(cluster.address("cart-svc")) as cart_channel,
        grpc.aio.insecure_channel(cluster.address("gateway")) as gateway_channel,
        grpc.aio.insecure_channel(cluster.address("order-svc")) as order_channel,
    ):
        inventory = inventory_grpc.InventoryServiceStub(inventory_channel)
        await inventory.UpsertProduct(
            inventory_pb.UpsertProductRequest(
                sku="KUBE-1",
                name="Manifest mug",
                price=money_pb2.Money(currency_code="USD", amount_minor=1250),
                weight_grams=300,
            ),
            metadata=trusted,
            timeout=10,
        )
        await inventory.AdjustStock(
            inventory_pb.AdjustStockRequest(
                sku="KUBE-1", delta=5, reason=inventory_pb.STOCK_ADJUSTMENT_REASON_RECEIVED, idempotency_key="kube-in"
            ),
            metadata=trusted,
            timeout=10,
        )
        cart = cart_grpc.CartServiceStub(cart_channel)
        cart_id = (await cart.CreateCart(cart_pb.CreateCartRequest(user_id=user), metadata=customer, timeout=10)).cart
        await cart.AddItem(
            cart_pb.AddItemRequest(cart_id=cart_id.cart_id, sku="KUBE-1", quantity=2, idempotency_key="kube-add"),
            metadata=customer,
            timeout=10,
        )
        gateway = gateway_grpc.CheckoutServiceStub(gateway_channel)
        started = await gateway.StartCheckout(
            gateway_pb.StartCheckoutRequest(
                cart_id=cart_id.cart_id,
                shipping_address=ADDRESS,
                shipping_method=shipping_pb.SHIPPING_METHOD_STANDARD,
                customer_email="kube.local@example.com",
                idempotency_key="kube-start",
            ),
            metadata=customer,
            timeout=20,
        )
        placed = await gateway.PlaceOrder(
            gateway_pb.PlaceOrderRequest(
                checkout_id=started.checkout.checkout_id, payment_token="tok_visa", idempotency_key="kube-place"
            ),
            metadata=customer,
            timeout=30,
        )
        checkout = placed.checkout
        for _ in range(60):
            if checkout.status != gateway_pb.CHECKOUT_STATUS_PLACING:
                break
            await asyncio.sleep(0.5)
            checkout = (
                await gateway.GetCheckout(
                    gateway_pb.GetCheckoutRequest(checkout_id=checkout.checkout_id), metadata=customer, timeout=10
                )
            ).checkout
        assert checkout.status == gateway_pb.CHECKOUT_STATUS_COMPLETED, checkout
        order = await order_grpc.OrderServiceStub(order_channel).GetOrder(
            order_pb.GetOrderRequest(order_id=checkout.order_id), metadata=customer, timeout=10
        )
        assert order.order.status == order_pb.ORDER_STATUS_CONFIRMED
        assert order.order.total.amount_minor == checkout.quote.total.amount_minor > 2500

    # The order's event went through the bus the manifests configure (stream names, prefix) to notification-svc.
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        for _ in range(60):
            cursor = await connection.execute(
                "SELECT count(*) FROM notification.notifications WHERE order_id = %s", (checkout.order_id,)
            )
            row = await cursor.fetchone()
            if row is not None and row[0] > 0:
                break
            await asyncio.sleep(0.5)
        else:
            pytest.fail(
                f"notification-svc recorded nothing for {checkout.order_id}:\n"
                f"{cluster.by_name('notification-svc').log_tail()}"
            )
