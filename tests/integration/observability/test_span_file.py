"""The span file `make up` writes (JSON lines from every process) and the waterfall `checkoutctl trace`
prints from it: spans made by a real SDK provider, written by the exporter the services use."""

from __future__ import annotations

import io
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from rich.console import Console

from checkoutctl import trace as waterfall
from service_runtime import telemetry


def provider_writing_to(path: Path, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(telemetry.JsonLinesSpanExporter(str(path))))
    return provider


def test_two_processes_spans_in_one_file_become_one_waterfall_of_the_checkout(tmp_path: Path):
    path = tmp_path / "spans.jsonl"
    gateway = provider_writing_to(path, "gateway").get_tracer("test")
    order = provider_writing_to(path, "order-svc").get_tracer("test")
    with gateway.start_as_current_span("/shop.gateway.v1.CheckoutService/PlaceOrder", kind=SpanKind.SERVER):
        with gateway.start_as_current_span("saga step create_order", attributes={"shop.checkout.id": "chk_a"}):
            traceparent = telemetry.current_traceparent()
        with gateway.start_as_current_span("saga step capture_payment", attributes={"shop.checkout.id": "chk_a"}) as s:
            s.set_status(Status(StatusCode.ERROR, "PAYMENT_FAILED"))
    # Another process continues the trace from the stored traceparent (as the outbox relay does).
    with order.start_as_current_span(
        "shop.order.v1.events publish",
        context=telemetry.context_of({"traceparent": traceparent}),
        kind=SpanKind.PRODUCER,
    ):
        pass
    with gateway.start_as_current_span("checkout saga", attributes={"shop.checkout.id": "chk_other"}):
        pass
    path.write_text(path.read_text() + "not json\n")  # a torn or foreign line is skipped

    [spans] = waterfall.traces_of(waterfall.read_spans(path), "chk_a")

    assert sorted(s.name for s in spans) == [
        "/shop.gateway.v1.CheckoutService/PlaceOrder",
        "saga step capture_payment",
        "saga step create_order",
        "shop.order.v1.events publish",
    ]
    out = io.StringIO()
    Console(file=out, width=200).print(waterfall.waterfall(spans))
    lines = out.getvalue().splitlines()
    row = {name: next(line for line in lines if name in line) for name in (s.name for s in spans)}
    assert row["shop.order.v1.events publish"].lstrip().startswith("order-svc")

    def depth(name: str) -> int:
        cell = row[name].split("│")[1]
        return len(cell) - len(cell.lstrip())

    # Indented under its parent: PlaceOrder → create_order → the relay's publish in another process.
    assert (
        depth("/shop.gateway.v1.CheckoutService/PlaceOrder")
        < depth("saga step create_order")
        < depth("shop.order.v1.events publish")
    )
    assert depth("saga step capture_payment") == depth("saga step create_order")
    assert "ERROR PAYMENT_FAILED" in row["saga step capture_payment"]
    assert waterfall.traces_of(waterfall.read_spans(path), "chk_missing") == []
