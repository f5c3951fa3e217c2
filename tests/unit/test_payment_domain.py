"""Payment's pure rules: the state machine, capture/void decisions, refund arithmetic, card-number refusal; no I/O."""

from __future__ import annotations

import itertools

import pytest

from payment_svc import domain
from payment_svc.domain import PaymentStatus, Transition
from service_runtime.errors import FailedPrecondition, InvalidArgument, Unavailable
from service_runtime.values import Money

S = PaymentStatus


# State machine


def test_the_state_machine_has_exactly_the_contracts_edges():
    edges = {(current, target) for current, targets in domain.TRANSITIONS.items() for target in targets}
    assert edges == {
        (S.PENDING, S.PROCESSING),
        (S.PROCESSING, S.AUTHORIZED),
        (S.PROCESSING, S.FAILED),
        (S.AUTHORIZED, S.CAPTURED),
        (S.AUTHORIZED, S.VOIDED),
        (S.AUTHORIZED, S.EXPIRED),
        (S.CAPTURED, S.PARTIALLY_REFUNDED),
        (S.CAPTURED, S.REFUNDED),
        (S.PARTIALLY_REFUNDED, S.PARTIALLY_REFUNDED),
        (S.PARTIALLY_REFUNDED, S.REFUNDED),
    }


def test_voided_refunded_failed_and_expired_payments_are_terminal():
    assert {S.VOIDED, S.REFUNDED, S.FAILED, S.EXPIRED} == domain.TERMINAL


def test_every_move_outside_the_state_machine_is_refused_with_a_stable_reason():
    for current, target in itertools.product(PaymentStatus, PaymentStatus):
        if target in domain.TRANSITIONS[current]:
            domain.check_transition(current, target)
            continue
        with pytest.raises(FailedPrecondition) as raised:
            domain.check_transition(current, target)
        assert raised.value.reason == "PAYMENT_TRANSITION_NOT_ALLOWED"


def test_a_payment_cannot_be_captured_straight_from_pending():
    with pytest.raises(FailedPrecondition) as raised:
        domain.check_transition(S.PENDING, S.CAPTURED)
    assert raised.value.metadata == {"status": "PAYMENT_STATUS_PENDING", "targetStatus": "PAYMENT_STATUS_CAPTURED"}


# Capture


def test_an_authorized_payment_can_be_captured():
    assert domain.decide_capture("p1", S.AUTHORIZED, captured_for="", order_id="o1") is Transition.PROCEED


@pytest.mark.parametrize("status", [S.CAPTURED, S.PARTIALLY_REFUNDED, S.REFUNDED])
def test_capturing_again_for_the_same_order_is_a_replay(status):
    assert domain.decide_capture("p1", status, captured_for="o1", order_id="o1") is Transition.ALREADY_DONE


def test_capturing_a_payment_already_captured_for_another_order_is_refused():
    with pytest.raises(FailedPrecondition) as raised:
        domain.decide_capture("p1", S.CAPTURED, captured_for="o1", order_id="o2")
    assert raised.value.reason == "ORDER_MISMATCH"
    assert raised.value.metadata["orderId"] == "o1"


@pytest.mark.parametrize("status", [S.FAILED, S.VOIDED])
def test_a_failed_or_voided_payment_cannot_be_captured(status):
    with pytest.raises(FailedPrecondition) as raised:
        domain.decide_capture("p1", status, captured_for="", order_id="o1")
    assert raised.value.reason == "PAYMENT_NOT_AUTHORIZED"
    assert raised.value.metadata["status"] == status.contract_name


@pytest.mark.parametrize("status", [S.PENDING, S.PROCESSING])
def test_capture_and_void_of_an_unsettled_authorization_ask_the_caller_to_retry(status):
    for decide in (
        lambda: domain.decide_capture("p1", status, captured_for="", order_id="o1"),
        lambda: domain.decide_void("p1", status),
    ):
        with pytest.raises(Unavailable) as raised:
            decide()
        assert raised.value.reason == "PAYMENT_OUTCOME_UNKNOWN"
        assert raised.value.metadata == {"paymentId": "p1"}
        assert raised.value.retry_after_seconds == domain.OUTCOME_UNKNOWN_RETRY_SECONDS


# Void


def test_an_authorized_payment_can_be_voided():
    assert domain.decide_void("p1", S.AUTHORIZED) is Transition.PROCEED


@pytest.mark.parametrize("status", [S.VOIDED, S.FAILED])
def test_voiding_a_voided_or_failed_payment_succeeds_without_change(status):
    assert domain.decide_void("p1", status) is Transition.ALREADY_DONE


@pytest.mark.parametrize("status", [S.CAPTURED, S.PARTIALLY_REFUNDED, S.REFUNDED])
def test_a_captured_payment_cannot_be_voided_only_refunded(status):
    with pytest.raises(FailedPrecondition) as raised:
        domain.decide_void("p1", status)
    assert raised.value.reason == "PAYMENT_ALREADY_CAPTURED"


# Refunds


def usd(amount_minor: int) -> Money:
    return Money("USD", amount_minor)


def test_refundable_is_captured_less_refunded_less_refunds_still_at_the_psp():
    assert domain.refundable_minor(captured_minor=10_000, refunded_minor=2_500, in_flight_minor=1_000) == 6_500


def test_refundable_never_goes_negative():
    assert domain.refundable_minor(captured_minor=100, refunded_minor=100, in_flight_minor=50) == 0


def test_a_partial_refund_within_what_is_refundable_is_accepted():
    assert domain.check_refund("p1", S.CAPTURED, currency_code="USD", refundable=5_000, requested=usd(1_999)) == 1_999


def test_a_refund_without_an_amount_refunds_everything_still_refundable():
    assert (
        domain.check_refund("p1", S.PARTIALLY_REFUNDED, currency_code="USD", refundable=3_001, requested=None) == 3_001
    )


def test_a_refund_of_more_than_is_refundable_is_refused_and_says_how_much_is_left():
    with pytest.raises(FailedPrecondition) as raised:
        domain.check_refund("p1", S.PARTIALLY_REFUNDED, currency_code="USD", refundable=3_000, requested=usd(3_001))
    assert raised.value.reason == "REFUND_EXCEEDS_CAPTURED"
    assert raised.value.metadata["refundableMinor"] == "3000"


def test_refunding_everything_when_nothing_is_left_is_refused():
    with pytest.raises(FailedPrecondition) as raised:
        domain.check_refund("p1", S.CAPTURED, currency_code="USD", refundable=0, requested=None)
    assert raised.value.reason == "REFUND_EXCEEDS_CAPTURED"


@pytest.mark.parametrize("status", [S.PENDING, S.PROCESSING, S.AUTHORIZED, S.VOIDED, S.REFUNDED, S.FAILED])
def test_only_captured_money_can_be_refunded(status):
    with pytest.raises(FailedPrecondition) as raised:
        domain.check_refund("p1", status, currency_code="USD", refundable=0, requested=usd(1))
    assert raised.value.reason == "PAYMENT_NOT_CAPTURED"
    assert raised.value.metadata["status"] == status.contract_name


def test_a_refund_in_another_currency_or_of_less_than_one_minor_unit_is_invalid():
    with pytest.raises(InvalidArgument) as raised:
        domain.check_refund("p1", S.CAPTURED, currency_code="USD", refundable=100, requested=Money("EUR", 0))
    assert {v.field for v in raised.value.violations} == {"amount.currency_code", "amount.amount_minor"}


@pytest.mark.parametrize(
    ("refunded", "status"),
    [(0, S.CAPTURED), (1, S.PARTIALLY_REFUNDED), (9_999, S.PARTIALLY_REFUNDED), (10_000, S.REFUNDED)],
)
def test_the_status_after_refunds_follows_the_refunded_total(refunded, status):
    assert domain.status_after_refunds(captured_minor=10_000, refunded_minor=refunded) is status


def test_a_refunded_total_above_the_capture_is_impossible():
    with pytest.raises(ValueError):
        domain.status_after_refunds(captured_minor=10_000, refunded_minor=10_001)


# Card data


@pytest.mark.parametrize(
    "token",
    [
        "4242424242424242",
        "4242 4242 4242 4242",
        "4242-4242-4242-4242",
        "378282246310005",
        " 6011111111111117 ",
        "4" * 19,
    ],
)
def test_a_token_that_looks_like_a_card_number_is_recognised(token):
    assert domain.looks_like_card_number(token)


@pytest.mark.parametrize(
    "token", ["tok_visa_approve", "tok_4242424242424242", "424242424242", "4" * 20, "4242  4242 4242 4242", ""]
)
def test_real_tokens_and_short_or_long_digit_runs_are_not_card_numbers(token):
    assert not domain.looks_like_card_number(token)


@pytest.mark.parametrize(
    "text",
    [
        "4242424242424242",
        "note: card 4242 4242 4242 4242 please",
        "tok_4242424242424242",
        "x5555-5555-5555-4444x",
        "amex 3782 822463 10005",
        "b0-4242424242424242",
    ],
)
def test_a_card_number_anywhere_in_a_string_is_found(text):
    assert domain.contains_card_number(text)


@pytest.mark.parametrize(
    "text",
    [
        "tok_visa",
        "4242424242424241",
        "order 123456789012",
        "ch_" + "1" * 25,
        "b0-424242424242",
        "ord-2026-12-01-000123",
        "4242-42424242-4242",
    ],
)
def test_ids_and_digit_runs_that_fail_luhn_or_length_are_not_card_numbers(text):
    assert not domain.contains_card_number(text)


def test_an_expired_authorization_cannot_be_captured_but_voiding_it_is_a_replay():
    with pytest.raises(FailedPrecondition) as raised:
        domain.decide_capture("p1", S.EXPIRED, captured_for="", order_id="o1")
    assert raised.value.reason == "AUTHORIZATION_EXPIRED"
    assert domain.decide_void("p1", S.EXPIRED) is Transition.ALREADY_DONE


def test_every_decline_code_maps_to_a_contract_failure_reason():
    from shop.payment.v1 import payment_service_pb2 as pb

    for reason in domain.DECLINE_CODES.values():
        assert pb.PaymentFailureReason.Value(f"PAYMENT_FAILURE_REASON_{reason.name}")
