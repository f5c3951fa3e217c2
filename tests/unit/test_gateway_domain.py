"""The gateway's pure rules: the checkout lifecycle and the saga's steps as data; no I/O."""

from __future__ import annotations

import itertools
import re

import pytest
from google.protobuf import descriptor_pool

from gateway import domain
from gateway.domain import CheckoutStatus, SagaStep, Transition
from service_runtime.errors import FailedPrecondition
from shop.cart.v1 import cart_service_pb2  # noqa: F401  (registers the contracts' descriptors)
from shop.gateway.v1 import gateway_service_pb2
from shop.inventory.v1 import inventory_service_pb2  # noqa: F401
from shop.order.v1 import order_service_pb2  # noqa: F401
from shop.payment.v1 import payment_service_pb2  # noqa: F401

C = CheckoutStatus


def refusal(current: CheckoutStatus, target: CheckoutStatus, **kwargs: str) -> FailedPrecondition:
    with pytest.raises(FailedPrecondition) as raised:
        domain.check_transition(current, target, **kwargs)
    return raised.value


# Lifecycle


def test_the_lifecycle_has_exactly_these_moves():
    edges = {(current, target) for current, targets in domain.TRANSITIONS.items() for target in targets}
    assert edges == {
        (C.QUOTED, C.PLACING),
        (C.QUOTED, C.CANCELLED),
        (C.QUOTED, C.EXPIRED),
        (C.PLACING, C.QUOTED),
        (C.PLACING, C.COMPLETED),
        (C.PLACING, C.FAILED),
        (C.PLACING, C.EXPIRED),
    }


def test_every_status_matches_the_contract_enum():
    names = {value.name for value in gateway_service_pb2.CheckoutStatus.DESCRIPTOR.values} - {
        "CHECKOUT_STATUS_UNSPECIFIED"
    }
    assert {status.contract_name for status in CheckoutStatus} == names


def test_only_lifecycle_moves_proceed_and_everything_else_is_a_replay_or_refused():
    for current, target in itertools.product(CheckoutStatus, CheckoutStatus):
        try:
            outcome = domain.check_transition(current, target)
        except FailedPrecondition:
            outcome = None
        assert (outcome is Transition.PROCEED) == (target in domain.TRANSITIONS[current]), (current, target)


def test_a_declined_payment_takes_a_placing_checkout_back_to_quoted():
    assert domain.check_transition(C.PLACING, C.QUOTED) is Transition.PROCEED


@pytest.mark.parametrize(
    ("current", "reason"),
    [
        (C.PLACING, "CHECKOUT_PLACING"),
        (C.COMPLETED, "CHECKOUT_ALREADY_COMPLETED"),
        (C.FAILED, "CHECKOUT_FAILED"),
        (C.CANCELLED, "CHECKOUT_CANCELLED"),
        (C.EXPIRED, "CHECKOUT_EXPIRED"),
    ],
)
def test_only_a_quoted_checkout_can_be_placed(current, reason):
    assert refusal(current, C.PLACING).reason == reason


def test_placing_a_completed_checkout_names_its_order():
    error = refusal(C.COMPLETED, C.PLACING, order_id="o1")
    assert error.metadata == {"status": "CHECKOUT_STATUS_COMPLETED", "orderId": "o1"}


@pytest.mark.parametrize("current", [C.CANCELLED, C.EXPIRED])
def test_cancelling_a_cancelled_or_expired_checkout_returns_it_unchanged(current):
    assert domain.check_transition(current, C.CANCELLED) is Transition.ALREADY_DONE


@pytest.mark.parametrize(
    ("current", "reason"),
    [(C.PLACING, "CHECKOUT_PLACING"), (C.COMPLETED, "CHECKOUT_ALREADY_COMPLETED"), (C.FAILED, "CHECKOUT_FAILED")],
)
def test_a_checkout_being_placed_completed_or_failed_cannot_be_cancelled(current, reason):
    assert refusal(current, C.CANCELLED).reason == reason


def test_a_quoted_checkout_cannot_complete_without_being_placed():
    assert refusal(C.QUOTED, C.COMPLETED).reason == "CHECKOUT_NOT_PLACING"


# The saga


def test_the_saga_runs_every_contract_step_in_execution_order():
    contract = {value.name.removeprefix("SAGA_STEP_") for value in gateway_service_pb2.SagaStep.DESCRIPTOR.values}
    assert [definition.step.name for definition in domain.SAGA] == [
        "RESERVE_INVENTORY",
        "EXTEND_RESERVATION",  # numbered 8 in the contract (added last), runs second
        "AUTHORIZE_PAYMENT",
        "CREATE_ORDER",
        "CONFIRM_RESERVATION",
        "CAPTURE_PAYMENT",
        "CONFIRM_ORDER",
        "CONVERT_CART",
    ]
    assert {definition.step.name for definition in domain.SAGA} == contract - {"UNSPECIFIED"}


def test_every_action_and_compensation_is_a_real_rpc_of_the_contracts():
    pool = descriptor_pool.Default()
    for definition in domain.SAGA:
        for path in filter(None, (definition.action, definition.compensation)):
            service, method = re.fullmatch(r"/([\w.]+)/(\w+)", path).groups()  # type: ignore[union-attr]
            assert pool.FindServiceByName(service).FindMethodByName(method) is not None, path


def test_only_reserve_and_authorize_have_an_undo():
    undo = {definition.step: definition.compensation for definition in domain.SAGA if definition.compensation}
    assert undo == {
        SagaStep.RESERVE_INVENTORY: "/shop.inventory.v1.InventoryService/ReleaseReservation",
        SagaStep.AUTHORIZE_PAYMENT: "/shop.payment.v1.PaymentService/VoidPayment",
    }


def test_create_order_is_the_pivot():
    assert domain.PIVOT is SagaStep.CREATE_ORDER
    assert domain.definition(SagaStep.CREATE_ORDER).compensation is None


def test_next_step_walks_the_saga_from_start_to_end():
    walked, step = [], domain.next_step(None)
    while step is not None:
        walked.append(step)
        step = domain.next_step(step)
    assert walked == [definition.step for definition in domain.SAGA]


def test_the_saga_is_past_its_pivot_once_create_order_or_a_later_step_has_started():
    assert not domain.is_past_pivot([SagaStep.RESERVE_INVENTORY, SagaStep.AUTHORIZE_PAYMENT])
    assert domain.is_past_pivot([SagaStep.RESERVE_INVENTORY, SagaStep.AUTHORIZE_PAYMENT, SagaStep.CREATE_ORDER])
    assert domain.is_past_pivot([SagaStep.CONVERT_CART])


def test_a_checkout_that_cannot_go_on_voids_the_payment_then_releases_the_stock():
    plan = domain.compensation_plan([SagaStep.RESERVE_INVENTORY, SagaStep.AUTHORIZE_PAYMENT], release_reservation=True)
    assert [definition.step for definition in plan] == [SagaStep.AUTHORIZE_PAYMENT, SagaStep.RESERVE_INVENTORY]


def test_a_declined_payment_keeps_the_stock_reserved_for_another_card():
    plan = domain.compensation_plan([SagaStep.RESERVE_INVENTORY, SagaStep.AUTHORIZE_PAYMENT], release_reservation=False)
    assert [definition.step for definition in plan] == [SagaStep.AUTHORIZE_PAYMENT]


def test_only_started_steps_are_compensated():
    assert domain.compensation_plan([SagaStep.RESERVE_INVENTORY], release_reservation=True) == (
        domain.definition(SagaStep.RESERVE_INVENTORY),
    )
    assert domain.compensation_plan([], release_reservation=True) == ()


def test_nothing_is_compensated_once_the_pivot_has_started():
    with pytest.raises(ValueError):
        domain.compensation_plan(
            [SagaStep.RESERVE_INVENTORY, SagaStep.AUTHORIZE_PAYMENT, SagaStep.CREATE_ORDER], release_reservation=True
        )


def test_a_step_key_is_the_same_on_every_retry_and_new_for_each_attempt():
    first = domain.step_key("chk_1", 1, SagaStep.AUTHORIZE_PAYMENT)
    assert first == domain.step_key("chk_1", 1, SagaStep.AUTHORIZE_PAYMENT) == "chk_1:1:authorize_payment"
    assert domain.step_key("chk_1", 2, SagaStep.AUTHORIZE_PAYMENT) != first
    assert domain.step_key("chk_1", 1, SagaStep.CAPTURE_PAYMENT) != first


def test_the_longest_step_key_is_still_a_valid_downstream_idempotency_key():
    longest = max((domain.step_key("c" * 64, 2**31 - 1, step) for step in SagaStep), key=len)
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", longest)


def test_a_negative_attempt_is_a_bug():
    with pytest.raises(ValueError):
        domain.step_key("chk_1", -1, SagaStep.RESERVE_INVENTORY)


# How a stopped saga ends


@pytest.mark.parametrize(
    ("step", "refused", "reason", "status", "release"),
    [
        (SagaStep.EXTEND_RESERVATION, True, "RESERVATION_EXPIRED", C.EXPIRED, True),
        (SagaStep.EXTEND_RESERVATION, True, "RESERVATION_RELEASED", C.EXPIRED, True),
        (SagaStep.EXTEND_RESERVATION, False, "UNAVAILABLE", C.QUOTED, False),
        (SagaStep.AUTHORIZE_PAYMENT, True, "CARD_DECLINED", C.QUOTED, False),
        (SagaStep.AUTHORIZE_PAYMENT, False, "PAYMENT_OUTCOME_UNKNOWN", C.QUOTED, False),
        (SagaStep.CREATE_ORDER, False, "UNAVAILABLE", C.FAILED, True),
        (SagaStep.CREATE_ORDER, True, "INVALID_ARGUMENT", C.FAILED, True),
        (SagaStep.CONFIRM_RESERVATION, True, "RESERVATION_EXPIRED", C.FAILED, False),
        (SagaStep.CAPTURE_PAYMENT, False, "UNAVAILABLE", C.FAILED, False),
    ],
)
def test_a_stopped_saga_ends_as_the_failure_table_says(step, refused, reason, status, release):
    ending = domain.ending_for(step, refused=refused, reason=reason)
    assert (ending.status, ending.release_reservation) == (status, release)


def test_checkout_ids_hold_no_digits_a_card_number_scan_could_flag():
    from gateway.handlers import new_checkout_id

    ids = {new_checkout_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert not any(re.search(r"[0-9]", checkout_id) for checkout_id in ids)
