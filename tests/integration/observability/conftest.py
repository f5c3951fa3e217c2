"""Fixtures for the observability tests: the gateway tests' in-process mesh, and an in-memory span
exporter on the process's tracer provider (the one `service_runtime.telemetry` installs)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service_runtime import logs, telemetry
from tests.integration.gateway.conftest import gateway, shop, start_gateway

__all__ = ["gateway", "shop", "spans", "start_gateway"]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span finished from now on until the test ends (the exporter is shut down after it, so it stops
    collecting: the SDK cannot remove a span processor)."""
    provider = telemetry.configure_tracing("tests")
    assert trace.get_tracer_provider() is provider
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Every line logged at INFO or above while the test runs, formatted by the services' JSON handler."""
    stream = io.StringIO()
    handler = logs.json_handler("tests", stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)
