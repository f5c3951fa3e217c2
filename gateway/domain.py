"""The gateway's business rules, free of I/O: a checkout's lifecycle and the checkout saga as data.

    QUOTED  ──▶ PLACING      (PlaceOrder)
            ──▶ CANCELLED    (CancelCheckout, or superseded by a newer quote of the cart)
            ──▶ EXPIRED      (the reservation lapsed)
    PLACING ──▶ COMPLETED    (the saga finished)
            ──▶ QUOTED       (the payment was declined; the stock stays reserved for another card)
            ──▶ EXPIRED      (the reservation lapsed before the pivot; the authorization is voided)
            ──▶ FAILED       (it could neither finish nor compensate; an operator resolves it)

The saga, in order (the contract's SagaStep): reserve inventory (run by StartCheckout), extend the
reservation (so it cannot lapse under the saga), authorize payment, create order — the pivot —,
confirm reservation, capture payment, confirm order, convert cart. Only the steps before the pivot
have an undo: release the reservation, void the payment. Each undo is registered before its step
runs, since a call that timed out may still have succeeded. After the pivot the saga only moves
forward, retrying each step with the same step key.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from service_runtime.errors import FailedPrecondition


class CheckoutStatus(enum.Enum):
    QUOTED = "quoted"
    PLACING = "placing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def contract_name(self) -> str:
        return f"CHECKOUT_STATUS_{self.name}"


TRANSITIONS: Mapping[CheckoutStatus, frozenset[CheckoutStatus]] = {
    CheckoutStatus.QUOTED: frozenset({CheckoutStatus.PLACING, CheckoutStatus.CANCELLED, CheckoutStatus.EXPIRED}),
    CheckoutStatus.PLACING: frozenset(
        {CheckoutStatus.QUOTED, CheckoutStatus.COMPLETED, CheckoutStatus.FAILED, CheckoutStatus.EXPIRED}
    ),
    CheckoutStatus.COMPLETED: frozenset(),
    CheckoutStatus.FAILED: frozenset(),
    CheckoutStatus.CANCELLED: frozenset(),
    CheckoutStatus.EXPIRED: frozenset(),
}

#: For each target, the states in which the checkout has already got there (the call is a replay).
#: Cancelling an EXPIRED checkout returns it unchanged, like cancelling a CANCELLED one.
_REACHED: Mapping[CheckoutStatus, frozenset[CheckoutStatus]] = {
    CheckoutStatus.CANCELLED: frozenset({CheckoutStatus.CANCELLED, CheckoutStatus.EXPIRED}),
    CheckoutStatus.COMPLETED: frozenset({CheckoutStatus.COMPLETED}),
    CheckoutStatus.FAILED: frozenset({CheckoutStatus.FAILED}),
    CheckoutStatus.EXPIRED: frozenset({CheckoutStatus.EXPIRED}),
}

#: Why a checkout in a state refuses a move, in the contract's reasons.
_REFUSALS: Mapping[CheckoutStatus, tuple[str, str]] = {
    CheckoutStatus.QUOTED: ("CHECKOUT_NOT_PLACING", "has not been placed"),
    CheckoutStatus.PLACING: ("CHECKOUT_PLACING", "is being placed"),
    CheckoutStatus.COMPLETED: ("CHECKOUT_ALREADY_COMPLETED", "is already completed; cancel the order instead"),
    CheckoutStatus.FAILED: ("CHECKOUT_FAILED", "failed and is left to an operator"),
    CheckoutStatus.CANCELLED: ("CHECKOUT_CANCELLED", "was cancelled"),
    CheckoutStatus.EXPIRED: ("CHECKOUT_EXPIRED", "expired"),
}


class Transition(enum.Enum):
    PROCEED = "proceed"
    ALREADY_DONE = "already_done"


def check_transition(current: CheckoutStatus, target: CheckoutStatus, *, order_id: str = "") -> Transition:
    """Whether a checkout in `current` may move to `target`; raises FailedPrecondition when it may not.

    `order_id` (the checkout's order, if any) goes into the refusal's metadata.
    """
    if target in TRANSITIONS[current]:
        return Transition.PROCEED
    if current in _REACHED.get(target, frozenset()):
        return Transition.ALREADY_DONE
    reason, problem = _REFUSALS[current]
    metadata = {"status": current.contract_name}
    if order_id:
        metadata["orderId"] = order_id
    raise FailedPrecondition(f"the checkout {problem}", reason=reason, metadata=metadata)


# The saga


class SagaStep(enum.Enum):
    RESERVE_INVENTORY = "reserve_inventory"
    EXTEND_RESERVATION = "extend_reservation"
    AUTHORIZE_PAYMENT = "authorize_payment"
    CREATE_ORDER = "create_order"
    CONFIRM_RESERVATION = "confirm_reservation"
    CAPTURE_PAYMENT = "capture_payment"
    CONFIRM_ORDER = "confirm_order"
    CONVERT_CART = "convert_cart"


@dataclass(frozen=True)
class StepDefinition:
    step: SagaStep
    #: The RPC that does the step, as a gRPC method path.
    action: str
    #: The RPC that undoes it; None for the pivot and every step after it.
    compensation: str | None


_INVENTORY = "/shop.inventory.v1.InventoryService/"
_PAYMENT = "/shop.payment.v1.PaymentService/"
_ORDER = "/shop.order.v1.OrderService/"
_CART = "/shop.cart.v1.CartService/"

SAGA: tuple[StepDefinition, ...] = (
    StepDefinition(SagaStep.RESERVE_INVENTORY, _INVENTORY + "ReserveInventory", _INVENTORY + "ReleaseReservation"),
    StepDefinition(SagaStep.EXTEND_RESERVATION, _INVENTORY + "ExtendReservation", None),
    StepDefinition(SagaStep.AUTHORIZE_PAYMENT, _PAYMENT + "AuthorizePayment", _PAYMENT + "VoidPayment"),
    StepDefinition(SagaStep.CREATE_ORDER, _ORDER + "CreateOrder", None),
    StepDefinition(SagaStep.CONFIRM_RESERVATION, _INVENTORY + "ConfirmReservation", None),
    StepDefinition(SagaStep.CAPTURE_PAYMENT, _PAYMENT + "CapturePayment", None),
    StepDefinition(SagaStep.CONFIRM_ORDER, _ORDER + "ConfirmOrder", None),
    StepDefinition(SagaStep.CONVERT_CART, _CART + "ConvertCart", None),
)

#: Once this step has started, the order may exist: the saga can only go forward.
PIVOT = SagaStep.CREATE_ORDER

_ORDER_OF = {definition.step: index for index, definition in enumerate(SAGA)}


def definition(step: SagaStep) -> StepDefinition:
    return SAGA[_ORDER_OF[step]]


def order_of(step: SagaStep) -> int:
    """The step's place in the saga (0 for the reservation)."""
    return _ORDER_OF[step]


def next_step(step: SagaStep | None) -> SagaStep | None:
    """The step after `step` (the first when None); None after the last."""
    index = 0 if step is None else _ORDER_OF[step] + 1
    return SAGA[index].step if index < len(SAGA) else None


def is_past_pivot(started: Iterable[SagaStep]) -> bool:
    """True once the pivot (or anything after it) has started: no compensation any more."""
    return any(_ORDER_OF[step] >= _ORDER_OF[PIVOT] for step in started)


def gives_up_when_exhausted(step: SagaStep) -> bool:
    """A step up to the pivot whose retries run out ends (FAILED) and the saga compensates; a step after
    the pivot stays RUNNING with its key, for the recovery worker or an operator's retry to finish."""
    return _ORDER_OF[step] <= _ORDER_OF[PIVOT]


def compensation_plan(started: Iterable[SagaStep], *, release_reservation: bool) -> tuple[StepDefinition, ...]:
    """The undo steps for the steps that have started, newest first.

    A declined payment leaves the checkout QUOTED with its stock still held, so the reservation is
    released only when the checkout cannot go on (`release_reservation`). Raises ValueError past the pivot.
    """
    started = set(started)
    if is_past_pivot(started):
        raise ValueError("the saga is past its pivot (create order); it can only go forward")
    plan = [
        step
        for step in reversed(SAGA)
        if step.step in started
        and step.compensation is not None
        and (release_reservation or step.step is not SagaStep.RESERVE_INVENTORY)
    ]
    return tuple(plan)


def step_key(checkout_id: str, attempt: int, step: SagaStep) -> str:
    """The idempotency key of one step of one attempt: the same on every retry and in the recovery worker.

    `attempt` numbers the checkout's PlaceOrder attempts (0 for StartCheckout's reservation), so a new
    attempt with another card authorizes anew while a retried one finds its first authorization.
    """
    if attempt < 0:
        raise ValueError(f"attempt {attempt} is negative")
    return f"{checkout_id}:{attempt}:{step.value}"


# How a saga that stopped ends


@dataclass(frozen=True)
class Ending:
    """Where a PLACING checkout goes when a step could not be done, and what is undone on the way."""

    status: CheckoutStatus
    #: Undo the reservation too (the checkout cannot go on); the payment is always voided.
    release_reservation: bool


#: Reservation refusals that mean the stock is no longer held for this checkout.
RESERVATION_GONE = frozenset({"RESERVATION_EXPIRED", "RESERVATION_RELEASED", "RESERVATION_NOT_FOUND"})


def ending_for(step: SagaStep, *, refused: bool, reason: str) -> Ending:
    """The end of a saga whose `step` was refused (a business answer) or given up on (transport failures
    outlived the retries). Before the pivot, nothing is charged in the end:

    - the reservation lapsed (extend refused): EXPIRED, released;
    - the card was declined, or payment could not be reached: back to QUOTED, stock still held, so the
      shopper can try again (another card, a new key);
    - the order could not be created: FAILED for an operator, payment voided and stock released.

    From the pivot on nothing is undone: a step that cannot be done leaves the checkout FAILED.
    """
    if step is SagaStep.EXTEND_RESERVATION:
        if refused and reason in RESERVATION_GONE:
            return Ending(CheckoutStatus.EXPIRED, release_reservation=True)
        return Ending(CheckoutStatus.QUOTED, release_reservation=False)
    if step is SagaStep.AUTHORIZE_PAYMENT:
        return Ending(CheckoutStatus.QUOTED, release_reservation=False)
    if step is SagaStep.CREATE_ORDER:
        return Ending(CheckoutStatus.FAILED, release_reservation=True)
    return Ending(CheckoutStatus.FAILED, release_reservation=False)


# What the gateway keeps (rows of its schema, as the repository returns them)


@dataclass(frozen=True)
class CheckoutLine:
    sku: str
    product_name: str
    quantity: int
    unit_price_minor: int

    @property
    def line_total_minor(self) -> int:
        return self.unit_price_minor * self.quantity


@dataclass(frozen=True)
class Quote:
    currency_code: str
    subtotal_minor: int
    discount_minor: int
    shipping_minor: int
    tax_minor: int
    tax_rate_ppm: int
    shipping_taxed: bool
    free_shipping_applied: bool
    min_business_days: int
    max_business_days: int
    earliest_delivery_date: date
    latest_delivery_date: date

    @property
    def total_minor(self) -> int:
        return self.subtotal_minor - self.discount_minor + self.shipping_minor + self.tax_minor


@dataclass(frozen=True)
class Failure:
    reason: str
    message: str
    step: SagaStep
    at: datetime
    code: str
    attempt: int
    payment_id: str


@dataclass(frozen=True)
class Checkout:
    checkout_id: str
    user_id: str
    cart_id: str
    status: CheckoutStatus
    #: shop.type.v1.Address fields, as normalised by the shipping service.
    shipping_address: Mapping[str, str]
    #: "standard", "express" or "overnight".
    shipping_method: str
    contact_email: str
    quote: Quote
    lines: tuple[CheckoutLine, ...]
    reservation_expires_at: datetime
    attempt: int
    current_step: SagaStep | None
    order_id: str
    payment_id: str
    payment_token: str
    cart_etag: str
    card_brand: str
    card_last4: str
    shipping_options: bytes
    last_failure: Failure | None
    lease_owner: str
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None


class StepStatus(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"


@dataclass(frozen=True)
class StepRecord:
    checkout_id: str
    attempt: int
    step: SagaStep
    step_key: str
    status: StepStatus
    compensation: str | None
    attempts: int
    last_error_reason: str
    last_error_code: str
    payment_id: str
    result: Mapping[str, str]
    started_at: datetime
    ended_at: datetime | None


class KeyState(enum.Enum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


@dataclass(frozen=True)
class IdempotencyRecord:
    fingerprint: bytes
    state: KeyState
    locked_until: datetime | None
    checkout_id: str
    response_code: int | None
    response: bytes | None


@dataclass(frozen=True)
class Resolution:
    """How an operator resolved a FAILED checkout."""

    action: str
    reason: str
    resolved_by: str
    resolved_at: datetime
