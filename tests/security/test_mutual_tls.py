"""Mutual TLS when certificate paths are configured (service_runtime.tls): servers accept only clients with a
certificate from the mesh's CA, services call each other over TLS with their own certificates, and a
trusted caller is whoever's certificate names a mesh workload (spiffe://shop/<service>), not whoever
holds a service token. The CA and certificates are throwaway ones made with `cryptography` (devstack.pki)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from cart_svc.__main__ import SPEC as CART
from devstack.pki import Issued, MeshFiles, issue, issue_mesh_certificates, new_authority
from inventory_svc.__main__ import SPEC as INVENTORY
from service_runtime.identity import MESH_SPIFFE_ID, peer_service
from service_runtime.settings import CommonSettings, EnvReader, SettingsError
from shop.cart.v1 import cart_service_pb2 as cart_pb
from shop.cart.v1 import cart_service_pb2_grpc as cart_grpc
from shop.inventory.v1 import inventory_service_pb2 as inventory_pb
from shop.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shop.type.v1 import money_pb2
from tests.identity import as_customer, as_service
from tests.rpc_errors import expect_failure


@pytest.fixture
def mesh_files(tmp_path: Path) -> MeshFiles:
    return issue_mesh_certificates(tmp_path, ["inventory-svc", "cart-svc", "gateway"], edge_clients=["bff"])


def credentials(files: MeshFiles, workload: str | None) -> grpc.ChannelCredentials:
    """A client's credentials: the mesh's CA, and the workload's certificate (None: no certificate)."""
    if workload is None:
        return grpc.ssl_channel_credentials(root_certificates=files.ca.read_bytes())
    return grpc.ssl_channel_credentials(
        root_certificates=files.ca.read_bytes(),
        private_key=files.key(workload).read_bytes(),
        certificate_chain=files.certificate(workload).read_bytes(),
    )


def issued_credentials(files: MeshFiles, issued: Issued) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(files.ca.read_bytes(), issued.key_pem, issued.certificate_pem)


async def test_services_talk_over_mutual_tls_and_refuse_clients_without_a_mesh_certificate(
    start_service, mesh_files: MeshFiles
):
    inventory = await start_service(INVENTORY, **mesh_files.environment("inventory-svc"))
    cart = await start_service(CART, INVENTORY_TARGET=inventory.address, **mesh_files.environment("cart-svc"))
    # the same names, signed by another CA
    edge = issue(new_authority(), "bff", uri="spiffe://shop/edge/bff")
    foreign = issue(new_authority("someone else's CA"), "gateway")

    # The gateway's certificate makes it a trusted caller: the catalogue is written with it.
    async with grpc.aio.secure_channel(inventory.address, credentials(mesh_files, "gateway")) as channel:
        await inventory_grpc.InventoryServiceStub(channel).UpsertProduct(
            inventory_pb.UpsertProductRequest(
                sku="TLS-1", name="Mug", price=money_pb2.Money(currency_code="USD", amount_minor=900)
            ),
            timeout=10,
        )
    # A shopper behind the BFF (an edge certificate, not a mesh workload's) adds an item: the cart prices
    # it by calling inventory over mutual TLS with its own certificate.
    async with grpc.aio.secure_channel(cart.address, credentials(mesh_files, "bff")) as channel:
        stub = cart_grpc.CartServiceStub(channel)
        created = await stub.CreateCart(
            cart_pb.CreateCartRequest(user_id="alice"), metadata=as_customer("alice"), timeout=10
        )
        added = await stub.AddItem(
            cart_pb.AddItemRequest(cart_id=created.cart.cart_id, sku="TLS-1", quantity=2, idempotency_key="k1"),
            metadata=as_customer("alice"),
            timeout=10,
        )
    assert added.cart.lines[0].unit_price.amount_minor == 900

    refused = {
        "plaintext": grpc.aio.insecure_channel(cart.address),
        "TLS without a client certificate": grpc.aio.secure_channel(cart.address, credentials(mesh_files, None)),
        "a certificate from another CA": grpc.aio.secure_channel(cart.address, issued_credentials(mesh_files, foreign)),
        "an edge certificate from another CA": grpc.aio.secure_channel(
            cart.address, issued_credentials(mesh_files, edge)
        ),
    }
    for label, channel in refused.items():
        async with channel:
            try:
                await cart_grpc.CartServiceStub(channel).CreateCart(
                    cart_pb.CreateCartRequest(user_id="alice"), metadata=as_customer("alice"), timeout=5
                )
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE, label  # the handshake fails: no RPC runs
            else:
                raise AssertionError(f"{label}: the call was served")


async def test_under_mutual_tls_the_certificate_not_a_service_token_makes_a_trusted_caller(
    start_service, mesh_files: MeshFiles
):
    inventory = await start_service(INVENTORY, **mesh_files.environment("inventory-svc"))
    cart = await start_service(CART, INVENTORY_TARGET=inventory.address, **mesh_files.environment("cart-svc"))
    convert = cart_pb.ConvertCartRequest(cart_id="cart-that-does-not-exist", checkout_id="c", order_id="o")

    async with grpc.aio.secure_channel(cart.address, credentials(mesh_files, "gateway")) as channel:
        as_gateway = await expect_failure(cart_grpc.CartServiceStub(channel).ConvertCart(convert, timeout=10))
    async with grpc.aio.secure_channel(cart.address, credentials(mesh_files, "bff")) as channel:
        stub = cart_grpc.CartServiceStub(channel)
        with_stolen_token = await expect_failure(stub.ConvertCart(convert, metadata=as_service("gateway"), timeout=10))
        as_shopper = await expect_failure(stub.ConvertCart(convert, metadata=as_customer("bob"), timeout=10))
        as_nobody = await expect_failure(stub.ConvertCart(convert, timeout=10))

    assert (as_gateway.code, as_gateway.reason) == (grpc.StatusCode.NOT_FOUND, "CART_NOT_FOUND")  # trusted: looked up
    assert (with_stolen_token.code, with_stolen_token.reason) == (grpc.StatusCode.UNAUTHENTICATED, "AUTH_TOKEN_INVALID")
    assert (as_shopper.code, as_shopper.reason) == (grpc.StatusCode.PERMISSION_DENIED, "TRUSTED_CALLER_REQUIRED")
    assert as_nobody.code == grpc.StatusCode.UNAUTHENTICATED


def test_only_a_single_segment_spiffe_id_of_the_shop_names_a_mesh_service():
    assert peer_service({"peer_spiffe_id": [b"spiffe://shop/gateway"]}) == "gateway"
    for other in (b"spiffe://shop/edge/bff", b"spiffe://evil/gateway", b"spiffe://shop/", b"https://shop/gateway"):
        assert peer_service({"peer_spiffe_id": [other]}) is None, other
    assert peer_service({"x509_common_name": [b"gateway"]}) is None  # a CN alone proves nothing
    assert MESH_SPIFFE_ID.pattern.startswith("spiffe://shop/")


def test_tls_settings_need_all_three_readable_pem_files_and_never_print_the_key(mesh_files: MeshFiles, tmp_path):
    environment = mesh_files.environment("cart-svc")
    settings = CommonSettings.from_env(EnvReader(environment), service_name="cart", default_port=0)
    assert settings.tls is not None and settings.identity.mtls
    assert b"PRIVATE KEY" not in repr(settings).encode()

    for missing in environment:
        partial = {name: path for name, path in environment.items() if name != missing}
        with pytest.raises(SettingsError) as refused:
            CommonSettings.from_env(EnvReader(partial), service_name="cart", default_port=0)
        assert refused.value.variable == missing
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    for name, bad in (("TLS_CA_FILE", str(tmp_path / "absent.pem")), ("TLS_CERT_FILE", str(not_pem))):
        with pytest.raises(SettingsError) as refused:
            CommonSettings.from_env(EnvReader({**environment, name: bad}), service_name="cart", default_port=0)
        assert refused.value.variable == name
