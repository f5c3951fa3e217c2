"""Card data never enters: a card number in any string field is refused before anything is written, logged or
put on a span; and bad input on every RPC is INVALID_ARGUMENT naming each field, with nothing written."""

from __future__ import annotations

import contextlib
import logging

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shop.payment.v1 import payment_service_pb2 as pb
from tests.integration.payment.conftest import TRUSTED, authorize_request, fails, rows, usd
from tests.psp import Psp

PAN = "4242424242424242"
SPACED_PAN = "4242 4242 4242 4242"

_TABLES = (
    "payment.payments",
    "payment.refunds",
    "payment.payment_events",
    "payment.authorization_cancellations",
    "psp_sandbox.operations",
    "psp_sandbox.authorizations",
)


async def written(database_url: str) -> dict[str, int]:
    counts = {}
    for table in _TABLES:
        [row] = await rows(database_url, f"SELECT count(*) AS n FROM {table}")
        counts[table] = row["n"]
    return counts


async def stored_text(database_url: str) -> str:
    dumped = []
    for table in _TABLES:
        dumped += [
            str(row["t"]) for row in await rows(database_url, f"SELECT row_to_json(x)::text AS t FROM {table} x")
        ]
    return "\n".join(dumped)


def card_requests(payment_id: str) -> list[tuple[str, object]]:
    return [
        ("AuthorizePayment", authorize_request(PAN)),
        ("AuthorizePayment", authorize_request(SPACED_PAN)),
        ("AuthorizePayment", authorize_request(key=f"k-{PAN}")),
        (
            "RefundPayment",
            pb.RefundPaymentRequest(
                payment_id=payment_id, reason=pb.REFUND_REASON_OTHER, note=f"card {SPACED_PAN}", idempotency_key="r"
            ),
        ),
        ("VoidPayment", pb.VoidPaymentRequest(payment_id=payment_id, reason=f"customer gave {PAN}")),
        (
            "CapturePayment",
            pb.CapturePaymentRequest(payment_id=payment_id, order_id=PAN, idempotency_key="c"),
        ),
        ("GetPayment", pb.GetPaymentRequest(checkout_id="chk-1", authorization_idempotency_key=PAN)),
        ("ListPayments", pb.ListPaymentsRequest(checkout_id=PAN)),
    ]


async def test_a_card_number_in_any_field_is_refused_and_never_stored_logged_or_traced(
    payment, psp: Psp, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    exporter = InMemorySpanExporter()
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[attr-defined]
    authorized = await payment.AuthorizePayment(authorize_request(), metadata=TRUSTED)
    before = await written(database_url)
    for method, request in card_requests(authorized.payment.payment_id):
        try:
            await getattr(payment, method)(request, metadata=TRUSTED)
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, error)
            assert PAN not in (error.details() or "") and SPACED_PAN not in (error.details() or "")
        else:
            raise AssertionError(f"{method} accepted a card number")
        info = await fails(getattr(payment, method)(request, metadata=TRUSTED), grpc.StatusCode.INVALID_ARGUMENT)
        assert info.reason == "CARD_NUMBER_REJECTED"
        assert info.field_violations, method
    assert await written(database_url) == before
    text = await stored_text(database_url)
    assert PAN not in text and SPACED_PAN not in text
    assert PAN not in caplog.text and SPACED_PAN not in caplog.text
    for span in exporter.get_finished_spans():
        attributes = " ".join(f"{k}={v!r}" for k, v in (span.attributes or {}).items())
        events = " ".join(str(dict(event.attributes or {})) for event in span.events)
        for blob in (span.name, attributes, events, str(span.status.description)):
            assert PAN not in blob and SPACED_PAN not in blob, span.name


async def test_bad_input_on_every_rpc_names_each_field_and_writes_nothing(payment, psp: Psp, database_url: str) -> None:
    authorized = await payment.AuthorizePayment(authorize_request(), metadata=TRUSTED)
    payment_id = authorized.payment.payment_id
    before = await written(database_url)
    cases: list[tuple[str, object, set[str]]] = [
        (
            "AuthorizePayment",
            pb.AuthorizePaymentRequest(),
            {"checkout_id", "amount", "payment_token", "idempotency_key"},
        ),
        (
            "AuthorizePayment",
            pb.AuthorizePaymentRequest(
                checkout_id="bad id", amount=usd(0), payment_token="tok_visa", idempotency_key="bad key"
            ),
            {"checkout_id", "amount.amount_minor", "idempotency_key"},
        ),
        ("CapturePayment", pb.CapturePaymentRequest(), {"payment_id", "order_id", "idempotency_key"}),
        (
            "CapturePayment",
            pb.CapturePaymentRequest(payment_id=payment_id, order_id="o1", amount=usd(999999), idempotency_key="c"),
            {"amount.amount_minor"},
        ),
        ("VoidPayment", pb.VoidPaymentRequest(), {"reason", "payment_id"}),
        (
            "VoidPayment",
            pb.VoidPaymentRequest(reason="x", checkout_id="chk-1"),
            {"authorization_idempotency_key"},
        ),
        ("RefundPayment", pb.RefundPaymentRequest(), {"payment_id", "reason", "idempotency_key"}),
        (
            "RefundPayment",
            pb.RefundPaymentRequest(
                payment_id=payment_id,
                amount=usd(-5),
                reason=pb.REFUND_REASON_OTHER,
                note="n" * 501,
                idempotency_key="r",
            ),
            {"amount.amount_minor", "note"},
        ),
        ("GetPayment", pb.GetPaymentRequest(), {"payment_id"}),
        ("ListPayments", pb.ListPaymentsRequest(), {"checkout_id"}),
        ("ListPayments", pb.ListPaymentsRequest(checkout_id="chk-1", page_size=-1), {"page_size"}),
        ("ListPayments", pb.ListPaymentsRequest(checkout_id="chk-1", page_token="forged"), {"page_token"}),
    ]
    for method, request, fields in cases:
        info = await fails(getattr(payment, method)(request, metadata=TRUSTED), grpc.StatusCode.INVALID_ARGUMENT)
        assert info.reason == "INVALID_ARGUMENT", (method, info.reason)
        assert set(info.field_violations) == fields, (method, info.field_violations)
    assert await written(database_url) == before


async def test_list_payments_pages_oldest_first_and_refuses_a_token_for_another_checkout(payment, psp: Psp) -> None:
    for index in range(3):
        with contextlib.suppress(grpc.aio.AioRpcError):
            await payment.AuthorizePayment(authorize_request("tok_decline_generic", key=f"k{index}"), metadata=TRUSTED)
    await payment.AuthorizePayment(authorize_request(key="k3"), metadata=TRUSTED)
    first = await payment.ListPayments(pb.ListPaymentsRequest(checkout_id="chk-1", page_size=3), metadata=TRUSTED)
    assert [p.idempotency_key for p in first.payments] == ["k0", "k1", "k2"] and first.next_page_token
    second = await payment.ListPayments(
        pb.ListPaymentsRequest(checkout_id="chk-1", page_size=3, page_token=first.next_page_token), metadata=TRUSTED
    )
    assert [p.idempotency_key for p in second.payments] == ["k3"] and not second.next_page_token
    info = await fails(
        payment.ListPayments(
            pb.ListPaymentsRequest(checkout_id="chk-2", page_token=first.next_page_token), metadata=TRUSTED
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "page_token" in info.field_violations
    by_key = await payment.GetPayment(
        pb.GetPaymentRequest(checkout_id="chk-1", authorization_idempotency_key="k3"), metadata=TRUSTED
    )
    assert by_key.payment.status == pb.PAYMENT_STATUS_AUTHORIZED
    empty = await payment.ListPayments(pb.ListPaymentsRequest(checkout_id="nobody"), metadata=TRUSTED)
    assert list(empty.payments) == []
