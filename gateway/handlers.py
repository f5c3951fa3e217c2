"""Use cases of the public API: quote and reserve (StartCheckout), place (PlaceOrder, which hands the
saga to the runner and waits for it within the client's deadline), cancel, and the idempotency keys
around them (Stripe-style: scoped to the user and the RPC, fingerprinted, outcome replayed)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TypeVar

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import Message
from google.type import date_pb2

from gateway import domain
from gateway.activities import Activities, ReleaseReservation, address_message
from gateway.domain import (
    Checkout,
    CheckoutLine,
    CheckoutStatus,
    IdempotencyRecord,
    KeyState,
    Quote,
    SagaStep,
    StepRecord,
)
from gateway.repository import GatewayStatements
from gateway.runner import SagaRunner
from gateway.saga import first_intents
from gateway.settings import GatewaySettings
from gateway.tax import TaxTable, tax_minor
from service_runtime import errors, telemetry
from service_runtime.downstream import DownstreamError
from service_runtime.ids import new_id
from service_runtime.sql import UnitOfWork
from shop.cart.v1 import cart_service_pb2 as cart_pb
from shop.inventory.v1 import inventory_service_pb2 as inventory_pb
from shop.shipping.v1 import shipping_service_pb2 as shipping_pb
from shop.shipping.v1 import shipping_service_pb2_grpc as shipping_grpc
from shop.type.v1 import line_item_pb2, money_pb2

T = TypeVar("T")

log = logging.getLogger(__name__)

METHOD_NAMES = {
    value: name
    for name, value in {
        "standard": shipping_pb.SHIPPING_METHOD_STANDARD,
        "express": shipping_pb.SHIPPING_METHOD_EXPRESS,
        "overnight": shipping_pb.SHIPPING_METHOD_OVERNIGHT,
    }.items()
}
ADDRESS_FIELDS = ("recipient_name", "line1", "line2", "city", "region", "postal_code", "country_code", "phone")

_ERROR_TYPES: Mapping[str, type[errors.ServiceError]] = {
    "NOT_FOUND": errors.NotFound,
    "ALREADY_EXISTS": errors.AlreadyExists,
    "ABORTED": errors.Aborted,
    "UNAVAILABLE": errors.Unavailable,
    "RESOURCE_EXHAUSTED": errors.ResourceExhausted,
    "DEADLINE_EXCEEDED": errors.DeadlineExceeded,
    "UNAUTHENTICATED": errors.Unauthenticated,
    "PERMISSION_DENIED": errors.PermissionDenied,
}
#: How long a replay waits for a live first request to record its answer after its checkout settled.
KEY_FINISH_GRACE_SECONDS = 1.0
TRANSIENT = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "RESOURCE_EXHAUSTED"})


def error_of(code: str, message: str, reason: str, metadata: Mapping[str, str]) -> errors.ServiceError:
    """A ServiceError with this status code name, reason and metadata (re-issued in the gateway's domain)."""
    if code == "FAILED_PRECONDITION":
        return errors.FailedPrecondition(message, reason=reason, metadata=metadata)
    if code == "INVALID_ARGUMENT":
        return errors.InvalidArgument([], message, reason=reason)
    error_type = _ERROR_TYPES.get(code)
    if error_type is None:
        return errors.Unavailable(
            message, reason=reason or f"DOWNSTREAM_{code}", metadata=metadata, retry_after_seconds=1
        )
    retry = 0.5 if code in TRANSIENT else None
    return error_type(message, reason=reason, metadata=metadata, retry_after_seconds=retry)


def code_name(error: errors.ServiceError) -> str:
    from service_runtime.status import code_of

    return code_of(error).name


def reissue(failure: grpc.aio.AioRpcError, *, field_prefix: tuple[str, str] | None = None) -> errors.ServiceError:
    """A downstream failure as the gateway's own error: same code and reason, metadata kept."""
    error = DownstreamError.of(failure)
    if error.transport_failure and not error.reason:
        return errors.Unavailable(
            f"a service the checkout needs did not answer ({error.code.name})",
            reason="DOWNSTREAM_UNAVAILABLE",
            retry_after_seconds=0.5,
        )
    if error.code is grpc.StatusCode.INVALID_ARGUMENT and error.field_violations:
        violations = [
            errors.FieldViolation(
                field_prefix[1] + path[len(field_prefix[0]) :]
                if field_prefix and path.startswith(field_prefix[0])
                else path,
                description,
            )
            for path, description in error.field_violations.items()
        ]
        return errors.InvalidArgument(violations, error.message, reason=error.reason or "INVALID_ARGUMENT")
    reissued = error_of(error.code.name, error.message, error.reason or error.code.name, error.metadata)
    stock = error.detail(inventory_pb.InsufficientStock)
    if stock is not None:
        errors.with_details(reissued, stock)
    return reissued


def _serialize(error: errors.ServiceError) -> bytes:
    return json.dumps(
        {"code": code_name(error), "message": error.message, "reason": error.reason or "", "metadata": error.metadata}
    ).encode()


def _deserialize(response: bytes) -> errors.ServiceError:
    stored = json.loads(response)
    return error_of(stored["code"], stored["message"], stored["reason"], stored["metadata"])


def fingerprint(message: Message) -> bytes:
    """SHA-256 of the request without its idempotency key."""
    copy = type(message)()
    copy.CopyFrom(message)
    copy.ClearField("idempotency_key")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).digest()


def new_checkout_id() -> str:
    """A checkout id (and every step key made from it) holds no digits: see service_runtime.ids."""
    return new_id("chk")


@dataclass(frozen=True)
class StartCheckout:
    user_id: str
    cart_id: str
    #: shop.type.v1.Address as entered.
    address: Mapping[str, str]
    shipping_method: str
    customer_email: str
    idempotency_key: str
    fingerprint: bytes


@dataclass(frozen=True)
class UpdateCheckout:
    user_id: str
    checkout_id: str
    #: None: unchanged.
    shipping_method: str | None
    address: Mapping[str, str] | None
    customer_email: str | None


@dataclass(frozen=True)
class Answer:
    """What StartCheckout and PlaceOrder answer: the checkout, whether it is a replay, and its step log when
    the use case has it at hand (None: the answer's view reads it)."""

    checkout: Checkout
    replayed: bool
    steps: list[StepRecord] | None = None


@dataclass(frozen=True)
class PlaceOrder:
    user_id: str
    checkout_id: str
    payment_token: str
    idempotency_key: str
    fingerprint: bytes


class CheckoutHandlers:
    def __init__(
        self,
        work: UnitOfWork[GatewayStatements],
        activities: Activities,
        shipping: shipping_grpc.ShippingServiceAsyncStub,
        runner: SagaRunner,
        tax: TaxTable,
        settings: GatewaySettings,
    ) -> None:
        self._work = work
        self._a = activities
        self._shipping = shipping
        self._runner = runner
        self._tax = tax
        self._settings = settings

    # Idempotency keys

    async def _take_key(
        self, command: StartCheckout, rpc: str, checkout_id: str
    ) -> tuple[IdempotencyRecord | None, list[tuple[str, CheckoutStatus]]]:
        """Takes the key for a first request (None), or returns the record of an earlier one; for a first
        request, in the same transaction, the cart's open checkouts (checked once the cart is known to be
        the shopper's: `_refuse_if_placing`)."""

        async def work(tx: GatewayStatements) -> tuple[IdempotencyRecord | None, list[tuple[str, CheckoutStatus]]]:
            user_id, key = command.user_id, command.idempotency_key
            record = await tx.idempotency_key(user_id, rpc, key)
            if record is not None:
                return record, []
            await tx.insert_idempotency_key(
                user_id, rpc, key, command.fingerprint, checkout_id, self._settings.idempotency_hold_seconds
            )
            return None, await tx.open_checkouts_of_cart(command.cart_id)

        return await self._work.run(work, retry_duplicates=True)

    async def _finish_key(self, user_id: str, rpc: str, key: str, error: errors.ServiceError | None) -> None:
        """Records the request's outcome on its key (one statement), or lets the key go after a transient error."""
        if error is not None and code_name(error) in TRANSIENT:
            await self._work.statement(lambda tx: tx.delete_idempotency_key(user_id, rpc, key))
            return
        code = 0 if error is None else grpc.StatusCode[code_name(error)].value[0]
        response = b"" if error is None else _serialize(error)
        await self._work.statement(lambda tx: tx.complete_idempotency_key(user_id, rpc, key, code, response))

    async def _replay(
        self, user_id: str, rpc: str, key: str, print_: bytes, record: IdempotencyRecord, wait_until: float
    ) -> Checkout:
        if record.fingerprint != print_:
            raise errors.AlreadyExists(
                "this idempotency key was used for a different request",
                reason="IDEMPOTENCY_KEY_REUSED",
                metadata={"idempotencyKey": key},
            )
        loop = asyncio.get_running_loop()
        current: IdempotencyRecord | None = record
        settled_at: float | None = None
        while (
            current is not None
            and current.state is KeyState.IN_PROGRESS
            and current.locked_until is not None
            and current.locked_until > datetime.now(UTC)
        ):
            # A first request that died leaves its key in progress until `locked_until`; once its checkout has
            # moved on (the recovery worker finished the saga) and the key stays unfinished, answer from it.
            checkout = await self._read(record.checkout_id)
            if checkout is not None and checkout.status is not CheckoutStatus.PLACING:
                settled_at = settled_at or loop.time()
                if loop.time() - settled_at > KEY_FINISH_GRACE_SECONDS:
                    break
            if loop.time() >= wait_until:
                raise errors.Aborted(
                    "the first request with this key is still running; retry shortly",
                    reason="IDEMPOTENCY_REQUEST_IN_PROGRESS",
                    retry_after_seconds=0.2,
                )
            await asyncio.sleep(0.05)
            current = await self._work.run(lambda tx: tx.idempotency_key(user_id, rpc, key))
        if current is not None and current.state is KeyState.COMPLETED and current.response_code:
            raise _deserialize(current.response or b"{}")
        checkout = await self._read(record.checkout_id)
        if checkout is None:
            raise errors.Aborted(
                "the first request with this key did not finish; retry",
                reason="IDEMPOTENCY_REQUEST_IN_PROGRESS",
                retry_after_seconds=0.2,
            )
        return checkout

    async def _read(self, checkout_id: str) -> Checkout | None:
        """The checkout (one statement, no transaction around it: one snapshot by itself)."""
        return await self._work.statement(lambda tx: tx.checkout(checkout_id))

    async def steps(self, checkout_id: str) -> list[domain.StepRecord]:
        return await self._work.statement(lambda tx: tx.steps(checkout_id))

    async def owned(self, user_id: str, checkout_id: str) -> Checkout:
        checkout = await self._read(checkout_id)
        if checkout is None or checkout.user_id != user_id:
            raise errors.NotFound("no such checkout", reason="CHECKOUT_NOT_FOUND", metadata={"checkoutId": checkout_id})
        return checkout

    # StartCheckout

    async def start_checkout(self, command: StartCheckout, wait_until: float, *, rpc: str = "StartCheckout") -> Answer:
        key = command.idempotency_key
        checkout_id = new_checkout_id()
        record, open_checkouts = await self._take_key(command, rpc, checkout_id)
        if record is not None:
            replayed = await self._replay(command.user_id, rpc, key, command.fingerprint, record, wait_until)
            return Answer(replayed, True)
        try:
            checkout, steps = await self._quote_and_reserve(command, checkout_id, rpc, open_checkouts)
        except errors.ServiceError as error:
            await self._finish_key(command.user_id, rpc, key, error)
            raise
        except BaseException:
            await self._work.statement(lambda tx: tx.delete_idempotency_key(command.user_id, rpc, key))
            raise
        return Answer(checkout, False, steps)

    async def _quote_and_reserve(
        self, command: StartCheckout, checkout_id: str, rpc: str, open_checkouts: list[tuple[str, CheckoutStatus]]
    ) -> tuple[Checkout, list[StepRecord]]:
        a, hop = self._a, self._a.timeout
        try:
            cart = (
                await a.cart.GetCart(cart_pb.GetCartRequest(cart_id=command.cart_id), timeout=hop(self._settings.cart))
            ).cart
        except grpc.aio.AioRpcError as failure:
            raise reissue(failure) from None
        if cart.user_id != command.user_id:
            # Worded exactly as the cart service words an unknown cart, so another user's cart id cannot be
            # told from one that does not exist (tests/security/test_authorisation_matrix.py).
            raise errors.NotFound(
                f"cart {command.cart_id} was not found", reason="CART_NOT_FOUND", metadata={"cartId": command.cart_id}
            )
        if cart.status != cart_pb.CART_STATUS_ACTIVE:
            raise errors.FailedPrecondition(
                "the cart is no longer active",
                reason="CART_NOT_ACTIVE",
                metadata={"cartId": cart.cart_id, "status": cart_pb.CartStatus.Name(cart.status)},
            )
        if not cart.lines:
            raise errors.FailedPrecondition("the cart is empty", reason="CART_EMPTY", metadata={"cartId": cart.cart_id})
        if cart.has_unavailable_lines:
            raise errors.FailedPrecondition(
                "remove the unavailable items first",
                reason="CART_HAS_UNAVAILABLE_ITEMS",
                metadata={"cartId": cart.cart_id},
            )
        _refuse_if_placing(open_checkouts)
        items = [line_item_pb2.LineItem(sku=line.sku, quantity=line.quantity) for line in cart.lines]
        validate = self._shipping.ValidateAddress(
            shipping_pb.ValidateAddressRequest(address=address_message(command.address)),
            timeout=hop(self._settings.shipping),
        )
        prices = a.inventory.BatchGetProducts(
            inventory_pb.BatchGetProductsRequest(skus=[line.sku for line in cart.lines]),
            timeout=hop(self._settings.inventory),
        )
        try:
            validation, products = await asyncio.gather(_awaited(validate), _awaited(prices))
        except grpc.aio.AioRpcError as failure:
            raise reissue(failure, field_prefix=("address", "shipping_address")) from None
        if not validation.valid:
            raise errors.InvalidArgument(
                [
                    errors.FieldViolation("shipping_address" + v.field.removeprefix("address"), v.description)
                    for v in validation.violations
                ],
                "the shipping address is not valid",
                reason="ADDRESS_INVALID",
            )
        if not validation.deliverable:
            raise errors.FailedPrecondition("we do not ship to this address", reason="DESTINATION_NOT_SERVED")
        if products.missing_skus:
            raise errors.FailedPrecondition(
                "some items are no longer sold", reason="CART_HAS_UNAVAILABLE_ITEMS", metadata={"cartId": cart.cart_id}
            )
        by_sku = {product.sku: product for product in products.products}
        currency = by_sku[cart.lines[0].sku].price.currency_code
        lines = tuple(
            CheckoutLine(line.sku, by_sku[line.sku].name, line.quantity, by_sku[line.sku].price.amount_minor)
            for line in cart.lines
        )
        subtotal = sum(line.line_total_minor for line in lines)
        address = {field: getattr(validation.normalized_address, field) for field in ADDRESS_FIELDS}
        reserve_ttl = self._settings.reservation_ttl_seconds
        shipping_call = self._shipping.GetShippingOptions(
            shipping_pb.GetShippingOptionsRequest(
                shipping_address=validation.normalized_address,
                items=items,
                subtotal=money_pb2.Money(currency_code=currency, amount_minor=subtotal),
            ),
            timeout=hop(self._settings.shipping),
        )
        reserve_call = a.inventory.ReserveInventory(
            inventory_pb.ReserveInventoryRequest(
                checkout_id=checkout_id, items=items, ttl=duration_pb2.Duration(seconds=reserve_ttl)
            ),
            timeout=hop(self._settings.inventory),
        )
        options, reservation = await asyncio.gather(
            _awaited(shipping_call), _awaited(reserve_call), return_exceptions=True
        )
        for outcome in (options, reservation):
            if isinstance(outcome, BaseException):
                # The reserve may have held stock (or may still arrive): release it, which also fences a late one.
                await self._release_quietly(checkout_id, "checkout_not_started")
                if isinstance(outcome, grpc.aio.AioRpcError):
                    raise reissue(outcome, field_prefix=("shipping_address", "shipping_address")) from None
                raise outcome
        assert isinstance(options, shipping_pb.GetShippingOptionsResponse)
        assert isinstance(reservation, inventory_pb.ReserveInventoryResponse)
        chosen = next(
            (o for o in options.options if METHOD_NAMES.get(o.shipping_method) == command.shipping_method), None
        )
        if chosen is None:
            await self._release_quietly(checkout_id, "checkout_not_started")
            raise errors.FailedPrecondition(
                "this shipping method does not serve the address", reason="SHIPPING_METHOD_NOT_AVAILABLE"
            )
        rate = self._tax.rate_for(address["country_code"], address["region"])
        shipping_minor = chosen.cost.amount_minor
        tax = tax_minor(rate, subtotal_minor=subtotal, discount_minor=0, shipping_minor=shipping_minor)
        estimate = chosen.delivery_estimate
        checkout = Checkout(
            checkout_id=checkout_id,
            user_id=command.user_id,
            cart_id=command.cart_id,
            status=CheckoutStatus.QUOTED,
            shipping_address=address,
            shipping_method=command.shipping_method,
            contact_email=command.customer_email,
            quote=Quote(
                currency_code=currency,
                subtotal_minor=subtotal,
                discount_minor=0,
                shipping_minor=shipping_minor,
                tax_minor=tax,
                tax_rate_ppm=rate.rate_ppm,
                shipping_taxed=rate.shipping_taxed,
                free_shipping_applied=chosen.free_shipping_applied,
                min_business_days=estimate.min_business_days,
                max_business_days=estimate.max_business_days,
                earliest_delivery_date=_date(estimate.earliest_delivery_date),
                latest_delivery_date=_date(estimate.latest_delivery_date),
            ),
            lines=lines,
            reservation_expires_at=reservation.reservation.expire_time.ToDatetime(tzinfo=UTC),
            attempt=0,
            current_step=SagaStep.RESERVE_INVENTORY,
            order_id="",
            payment_id="",
            payment_token="",
            cart_etag=cart.etag,
            card_brand="",
            card_last4="",
            shipping_options=options.SerializeToString(deterministic=True),
            last_failure=None,
            lease_owner="",
            created_at=datetime.now(UTC),
            updated_at=datetime.now(UTC),
            ended_at=None,
        )
        superseded: list[str] = []

        async def record(tx: GatewayStatements) -> tuple[Checkout, list[StepRecord]]:
            superseded.clear()
            for open_id, status in await tx.open_checkouts_of_cart(command.cart_id):
                if status is CheckoutStatus.PLACING:
                    raise _in_progress(open_id)
                await tx.cancel_checkout(open_id)
                superseded.append(open_id)
            stored = await tx.insert_checkout(checkout, rate.basis_points)  # as stored: read back by the INSERT
            reserved = await tx.insert_reserved_step(
                checkout_id,
                domain.step_key(checkout_id, 0, SagaStep.RESERVE_INVENTORY),
                domain.definition(SagaStep.RESERVE_INVENTORY).compensation or "",
            )
            await tx.complete_idempotency_key(command.user_id, rpc, command.idempotency_key, 0, b"")
            return stored, [reserved]

        try:
            stored, steps = await self._work.run(record)
        except errors.ServiceError:
            await self._release_quietly(checkout_id, "checkout_not_started")
            raise
        for old in superseded:
            await self._runner.release(old, attempt=0, reason="checkout_superseded")
        return stored, steps

    async def _release_quietly(self, checkout_id: str, reason: str) -> None:
        try:
            await self._a.release_reservation(ReleaseReservation(checkout_id, reason))
        except grpc.aio.AioRpcError as failure:
            # The reservation (if any) lapses on its own at its TTL.
            log.warning("could not release %s: %s", checkout_id, failure.code().name)

    # PlaceOrder

    async def place_order(self, command: PlaceOrder, wait_until: float, client_deadline: float | None) -> Answer:
        rpc, key = "PlaceOrder", command.idempotency_key
        checkout = await self.owned(command.user_id, command.checkout_id)
        if checkout.status is CheckoutStatus.QUOTED:
            await self._check_cart(checkout)

        async def begin(tx: GatewayStatements) -> tuple[IdempotencyRecord | None, Checkout]:
            current = await tx.checkout(command.checkout_id, lock=True)
            assert current is not None
            record = await tx.idempotency_key(command.user_id, rpc, key)
            if record is not None:
                return record, current
            domain.check_transition(current.status, CheckoutStatus.PLACING, order_id=current.order_id)
            await tx.insert_idempotency_key(
                command.user_id,
                rpc,
                key,
                command.fingerprint,
                command.checkout_id,
                self._settings.idempotency_hold_seconds,
            )
            started = await tx.start_attempt(
                command.checkout_id,
                command.payment_token,
                self._runner.owner,
                self._settings.lease_seconds,
                telemetry.current_traceparent(),
                lines=current.lines,
                intents=first_intents(command.checkout_id, current.attempt + 1),  # the row is locked: next attempt
            )
            return None, started

        record, started = await self._work.run(begin, retry_duplicates=True)
        if record is not None:
            replayed = await self._replay(command.user_id, rpc, key, command.fingerprint, record, wait_until)
            return Answer(await self._settled(replayed.checkout_id, wait_until), True)
        task = self._runner.start(
            command.checkout_id, client_deadline, started=started, answer_key=(command.user_id, rpc, key)
        )
        error: errors.ServiceError | None = None
        answered = False
        try:
            await asyncio.wait({task}, timeout=max(0.0, wait_until - asyncio.get_running_loop().time()))
            # The saga's end returns the checkout as it left it; read it when the saga runs on (or stopped).
            result = task.result() if task.done() and not task.cancelled() else None
            # A COMPLETED end of this attempt recorded this request's answer (status 0) on its key.
            answered = (
                result is not None and result.attempt == started.attempt and result.status is CheckoutStatus.COMPLETED
            )
            if result is None:
                result = await self._read(command.checkout_id)
            assert result is not None
            error = outcome_error(result, started.attempt)
        finally:
            if not answered:
                await self._finish_key(command.user_id, rpc, key, error)
        if error is not None:
            raise error
        return Answer(result, False)

    async def _check_cart(self, checkout: Checkout) -> None:
        """CART_CHANGED, before anything is charged, when the cart's lines changed since the quote."""
        try:
            cart = (
                await self._a.cart.GetCart(
                    cart_pb.GetCartRequest(cart_id=checkout.cart_id), timeout=self._a.timeout(self._settings.cart)
                )
            ).cart
        except grpc.aio.AioRpcError as failure:
            if failure.code() is grpc.StatusCode.NOT_FOUND:
                raise errors.FailedPrecondition(
                    "the cart is gone; start a new checkout",
                    reason="CART_CHANGED",
                    metadata={"checkoutId": checkout.checkout_id},
                ) from None
            raise reissue(failure) from None
        if cart.etag != checkout.cart_etag:
            raise errors.FailedPrecondition(
                "the cart changed since the checkout was quoted; start a new checkout",
                reason="CART_CHANGED",
                metadata={"checkoutId": checkout.checkout_id},
            )

    async def _settled(self, checkout_id: str, wait_until: float) -> Checkout:
        loop = asyncio.get_running_loop()
        while True:
            checkout = await self._read(checkout_id)
            assert checkout is not None
            if checkout.status is not CheckoutStatus.PLACING or loop.time() >= wait_until:
                return checkout
            await asyncio.sleep(0.05)

    # UpdateCheckout

    async def update_checkout(self, command: UpdateCheckout) -> Checkout:
        """New shipping method, address or e-mail for a QUOTED checkout: shipping and tax quoted again for the
        same lines; the lines and the reservation are kept (nothing released, nothing re-reserved)."""
        checkout = await self.owned(command.user_id, command.checkout_id)
        _check_quoted(checkout)
        hop, q = self._a.timeout, checkout.quote
        address = dict(checkout.shipping_address)
        if command.address is not None:
            try:
                validation = await self._shipping.ValidateAddress(
                    shipping_pb.ValidateAddressRequest(address=address_message(command.address)),
                    timeout=hop(self._settings.shipping),
                )
            except grpc.aio.AioRpcError as failure:
                raise reissue(failure) from None
            if not validation.valid:
                raise errors.InvalidArgument(
                    [
                        errors.FieldViolation(
                            "checkout.shipping_address" + v.field.removeprefix("address"), v.description
                        )
                        for v in validation.violations
                    ],
                    "the shipping address is not valid",
                    reason="ADDRESS_INVALID",
                )
            if not validation.deliverable:
                raise errors.FailedPrecondition("we do not ship to this address", reason="DESTINATION_NOT_SERVED")
            address = {field: getattr(validation.normalized_address, field) for field in ADDRESS_FIELDS}
        method = command.shipping_method or checkout.shipping_method
        try:
            options = await self._shipping.GetShippingOptions(
                shipping_pb.GetShippingOptionsRequest(
                    shipping_address=address_message(address),
                    items=items_of(checkout.lines),
                    subtotal=money_pb2.Money(currency_code=q.currency_code, amount_minor=q.subtotal_minor),
                ),
                timeout=hop(self._settings.shipping),
            )
        except grpc.aio.AioRpcError as failure:
            raise reissue(failure) from None
        chosen = next((o for o in options.options if METHOD_NAMES.get(o.shipping_method) == method), None)
        if chosen is None:
            raise errors.FailedPrecondition(
                "this shipping method does not serve the address", reason="SHIPPING_METHOD_NOT_AVAILABLE"
            )
        rate = self._tax.rate_for(address["country_code"], address["region"])
        shipping_minor = chosen.cost.amount_minor
        estimate = chosen.delivery_estimate
        updated = dataclasses.replace(
            checkout,
            shipping_address=address,
            shipping_method=method,
            contact_email=checkout.contact_email if command.customer_email is None else command.customer_email,
            shipping_options=options.SerializeToString(deterministic=True),
            quote=dataclasses.replace(
                q,
                shipping_minor=shipping_minor,
                tax_minor=tax_minor(
                    rate,
                    subtotal_minor=q.subtotal_minor,
                    discount_minor=q.discount_minor,
                    shipping_minor=shipping_minor,
                ),
                tax_rate_ppm=rate.rate_ppm,
                shipping_taxed=rate.shipping_taxed,
                free_shipping_applied=chosen.free_shipping_applied,
                min_business_days=estimate.min_business_days,
                max_business_days=estimate.max_business_days,
                earliest_delivery_date=_date(estimate.earliest_delivery_date),
                latest_delivery_date=_date(estimate.latest_delivery_date),
            ),
        )

        async def store(tx: GatewayStatements) -> Checkout:
            current = await tx.checkout(command.checkout_id, lock=True)
            assert current is not None
            _check_quoted(current)
            await tx.update_quote(updated, rate.basis_points)
            stored = await tx.checkout(command.checkout_id)
            assert stored is not None
            return stored

        return await self._work.run(store)

    # CancelCheckout

    async def cancel_checkout(self, user_id: str, checkout_id: str, reason: str) -> tuple[Checkout, bool]:
        await self.owned(user_id, checkout_id)

        async def work(tx: GatewayStatements) -> domain.Transition:
            current = await tx.checkout(checkout_id, lock=True)
            assert current is not None
            transition = domain.check_transition(current.status, CheckoutStatus.CANCELLED, order_id=current.order_id)
            if transition is domain.Transition.PROCEED:
                await tx.cancel_checkout(checkout_id)
            return transition

        transition = await self._work.run(work)
        if transition is domain.Transition.PROCEED:
            await self._runner.release(checkout_id, attempt=0, reason=(reason or "checkout_cancelled")[:200])
        checkout = await self._read(checkout_id)
        assert checkout is not None
        return checkout, transition is domain.Transition.ALREADY_DONE


def outcome_error(checkout: Checkout, attempt: int) -> errors.ServiceError | None:
    """What PlaceOrder answers for where its attempt left the checkout: nothing (COMPLETED, or PLACING
    while the saga runs on), the decline (back to QUOTED), or the state (EXPIRED, FAILED)."""
    failure = checkout.last_failure
    if checkout.status is CheckoutStatus.QUOTED and failure is not None and failure.attempt == attempt:
        metadata = {"checkoutId": checkout.checkout_id}
        if failure.payment_id:
            metadata["paymentId"] = failure.payment_id
        return error_of(failure.code or "FAILED_PRECONDITION", failure.message, failure.reason, metadata)
    if checkout.status is CheckoutStatus.EXPIRED:
        return errors.FailedPrecondition(
            "the reservation lapsed before payment; nothing was charged",
            reason="CHECKOUT_EXPIRED",
            metadata={"status": CheckoutStatus.EXPIRED.contract_name, "checkoutId": checkout.checkout_id},
        )
    if checkout.status is CheckoutStatus.FAILED:
        return errors.FailedPrecondition(
            "the checkout could not be completed and is left to an operator",
            reason="CHECKOUT_FAILED",
            metadata={"status": CheckoutStatus.FAILED.contract_name, "checkoutId": checkout.checkout_id},
        )
    return None


def _check_quoted(checkout: Checkout) -> None:
    """Refuses, as the contract says per state, a checkout that is not QUOTED any more."""
    if checkout.status is not CheckoutStatus.QUOTED:
        domain.check_transition(checkout.status, CheckoutStatus.PLACING, order_id=checkout.order_id)


def _refuse_if_placing(open_checkouts: list[tuple[str, CheckoutStatus]]) -> None:
    """CHECKOUT_IN_PROGRESS when the cart has a checkout being placed (looked at when the key was taken;
    the transaction that records the new checkout looks again)."""
    for open_id, status in open_checkouts:
        if status is CheckoutStatus.PLACING:
            raise _in_progress(open_id)


def _in_progress(checkout_id: str) -> errors.FailedPrecondition:
    return errors.FailedPrecondition(
        "the cart has a checkout being placed", reason="CHECKOUT_IN_PROGRESS", metadata={"checkoutId": checkout_id}
    )


def _date(value: date_pb2.Date) -> date:
    return date(value.year, value.month, value.day)


async def _awaited(call: Awaitable[T]) -> T:
    """A stub's call object as a coroutine (asyncio.gather's types want awaitables of one kind)."""
    return await call


def items_of(lines: Sequence[CheckoutLine]) -> list[line_item_pb2.LineItem]:
    return [line_item_pb2.LineItem(sku=line.sku, quantity=line.quantity) for line in lines]
