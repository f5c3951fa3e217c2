"""checkoutctl's command line without a mesh: where it looks for the services, how a refused call reads,
how the demo picks its items, that every command has --help, and that the shopper's token it mints is
one the mesh accepts."""

from __future__ import annotations

import grpc
import pytest
from grpc.aio import AioRpcError, Metadata
from grpc_status import rpc_status

from checkoutctl import cli, demo
from checkoutctl.failures import CtlError, describe
from checkoutctl.targets import TargetError, Targets
from service_runtime import errors
from service_runtime.identity import CallerKind, IdentityConfig, Verifier, mint_customer_token
from service_runtime.status import to_status
from shop.gateway.v1 import gateway_service_pb2 as gateway_pb
from shop.inventory.v1 import inventory_service_pb2 as inventory_pb


def rpc_error(code: grpc.StatusCode, error: errors.ServiceError | None = None, domain: str = "gateway.shop"):
    trailing = Metadata()
    if error is not None:
        trailing = Metadata(*rpc_status.to_status(to_status(error, domain=domain)).trailing_metadata)
    return AioRpcError(code, Metadata(), trailing, details=error.message if error else "connection refused")


def test_the_services_are_found_where_make_up_puts_them():
    assert Targets.resolve({}) == Targets(
        gateway="127.0.0.1:50050", cart="127.0.0.1:50051", inventory="127.0.0.1:50052", order="127.0.0.1:50054"
    )


def test_the_port_base_comes_from_the_flag_before_devstacks_variable():
    assert Targets.resolve({"DEVSTACK_PORT_BASE": "23050"}).order == "127.0.0.1:23054"
    assert Targets.resolve({"DEVSTACK_PORT_BASE": "23050"}, port_base=31050).gateway == "127.0.0.1:31050"


def test_one_service_can_be_pointed_elsewhere_by_variable_or_flag():
    environ = {"CART_TARGET": "cart.local:443", "GATEWAY_TARGET": "gw.local:50050"}
    targets = Targets.resolve(environ, overrides={"gateway": "10.0.0.1:1", "cart": None})
    assert (targets.gateway, targets.cart, targets.inventory) == ("10.0.0.1:1", "cart.local:443", "127.0.0.1:50052")


@pytest.mark.parametrize("value", ["abc", "80", "70000"])
def test_a_bad_port_base_is_refused_by_name(value):
    with pytest.raises(TargetError, match="DEVSTACK_PORT_BASE"):
        Targets.resolve({"DEVSTACK_PORT_BASE": value})


def test_a_bad_port_base_exits_1_with_one_line_and_no_traceback(monkeypatch, capsys):
    monkeypatch.setenv("DEVSTACK_PORT_BASE", "nope")

    assert cli.main(["failed"]) == 1

    err = capsys.readouterr().err
    assert "DEVSTACK_PORT_BASE='nope' is not a whole number" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["show", "--help"], ["failed", "--help"]])
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 0
    assert "usage: checkoutctl" in capsys.readouterr().out


def test_a_command_is_required_and_bad_options_are_usage_errors(capsys):
    for argv in ([], ["show"], ["failed", "--limit", "0"], ["demo", "--method", "teleport"]):
        with pytest.raises(SystemExit) as exited:
            cli.main(argv)
        assert exited.value.code == 2, argv
    assert "usage: checkoutctl" in capsys.readouterr().err


def test_a_refusal_reads_as_one_line_with_its_code_reason_and_metadata():
    refusal = errors.FailedPrecondition(
        "The card was declined.", reason="CARD_DECLINED", metadata={"paymentId": "pay_1", "checkoutId": "chk_1"}
    )

    line = describe("PlaceOrder", rpc_error(grpc.StatusCode.FAILED_PRECONDITION, refusal))

    assert line == (
        "PlaceOrder failed: FAILED_PRECONDITION CARD_DECLINED: The card was declined."
        " (checkoutId=chk_1, paymentId=pay_1)"
    )
    assert "\n" not in line


def test_an_unreachable_service_says_to_start_the_mesh():
    line = describe("GetCheckoutDetails", rpc_error(grpc.StatusCode.UNAVAILABLE))

    assert line.startswith("GetCheckoutDetails failed: UNAVAILABLE: connection refused")
    assert "make up" in line


def test_a_declined_card_says_the_checkout_is_still_payable():
    refusal = errors.FailedPrecondition("declined", reason="CARD_DECLINED", metadata={"paymentId": "pay_1"})

    line = demo._place_refused("chk_1", rpc_error(grpc.StatusCode.FAILED_PRECONDITION, refusal))

    assert "CARD_DECLINED" in line and "stays QUOTED with its stock held" in line and "checkoutctl show chk_1" in line


def test_the_demo_picks_the_first_products_with_enough_stock():
    products = inventory_pb.BatchGetProductsResponse(
        products=[
            inventory_pb.Product(sku="A", available=1),  # 2 wanted first: too few
            inventory_pb.Product(sku="B", available=5, discontinued=True),
            inventory_pb.Product(sku="C", available=2),
            inventory_pb.Product(sku="D", available=1),
            inventory_pb.Product(sku="E", available=9),
            inventory_pb.Product(sku="F", available=9),
        ]
    )

    assert demo.pick_items(products) == [("C", 2), ("D", 1), ("E", 1)]


def test_the_demo_says_how_to_get_a_catalogue_when_there_is_none():
    with pytest.raises(CtlError, match="make up"):
        demo.pick_items(inventory_pb.BatchGetProductsResponse(missing_skus=["DEMO-MUG-ENAMEL"]))
    with pytest.raises(CtlError, match="make reset"):
        demo.pick_items(inventory_pb.BatchGetProductsResponse(products=[inventory_pb.Product(sku="A", available=0)]))


def test_an_unfinished_checkout_is_explained():
    placing = gateway_pb.Checkout(checkout_id="chk_1", status=gateway_pb.CHECKOUT_STATUS_PLACING)
    declined = gateway_pb.Checkout(
        checkout_id="chk_2",
        status=gateway_pb.CHECKOUT_STATUS_QUOTED,
        last_failure=gateway_pb.CheckoutFailure(reason="PROCESSOR_DECLINED", message="could not be processed"),
    )
    failed = gateway_pb.Checkout(
        checkout_id="chk_3",
        status=gateway_pb.CHECKOUT_STATUS_FAILED,
        last_failure=gateway_pb.CheckoutFailure(reason="ORDER_UNAVAILABLE", message="order service down"),
    )

    assert "still PLACING after 30 s" in demo._unfinished(placing, 30)
    assert "PROCESSOR_DECLINED" in demo._unfinished(declined, 30) and "stays QUOTED" in demo._unfinished(declined, 30)
    assert demo._unfinished(failed, 30) == (
        "checkout chk_3 ended FAILED: ORDER_UNAVAILABLE: order service down; see `checkoutctl show chk_3`"
    )


def identity(algorithm: str = "HS256") -> IdentityConfig:
    return IdentityConfig(
        jwt_algorithm=algorithm,
        jwt_keys=("a-development-secret-of-some-length",),
        jwt_issuer="shop-dev",
        jwt_audience="shop-checkout",
        service_token_secret="s" * 32,
        service_name="checkoutctl",
    )


def test_the_minted_shopper_token_is_accepted_as_that_customer():
    token = mint_customer_token(identity(), sub="demo-1")

    caller = Verifier(identity()).customer(token)

    assert (caller.kind, caller.subject) == (CallerKind.CUSTOMER, "demo-1")


def test_tokens_are_minted_only_with_shared_secrets():
    with pytest.raises(ValueError, match="HS256"):
        mint_customer_token(identity("RS256"), sub="demo-1")


def test_mesh_options_work_before_or_after_the_command_and_after_wins():
    parser = cli.build_parser()

    before = parser.parse_args(["--port-base", "23050", "show", "chk_1"])
    after = parser.parse_args(["show", "chk_1", "--port-base", "23050", "--timeout", "3"])
    both = parser.parse_args(["--port-base", "1", "--gateway", "a:1", "failed", "--port-base", "23050"])

    assert (before.port_base, before.timeout) == (23050, 10.0)
    assert (after.port_base, after.timeout, after.checkout_id) == (23050, 3.0, "chk_1")
    assert (both.port_base, both.gateway, both.placing_minutes) == (23050, "a:1", 5)
