"""OpenTelemetry tracing: one provider per process, gRPC server/client, psycopg and redis instrumented.

Spans are exported over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set; otherwise they are still created
(so trace ids flow through metadata and logs) but not exported. OTEL_SDK_DISABLED=true turns tracing
off altogether (no instrumentation). Call `configure_tracing` before creating
servers or channels: the gRPC instrumentation wraps their constructors.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, GrpcAioInstrumentorServer
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_state: dict[str, TracerProvider] = {}


def configure_tracing(service_name: str) -> TracerProvider:
    """Installs the tracer provider and instrumentation once per process; later calls return it."""
    if "provider" in _state:
        return _state["provider"]
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":  # the standard OTel switch
        _state["provider"] = TracerProvider()
        return _state["provider"]
    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    )
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    GrpcAioInstrumentorServer().instrument()
    GrpcAioInstrumentorClient().instrument()
    PsycopgInstrumentor().instrument(enable_commenter=False, skip_dep_check=True)
    RedisInstrumentor().instrument()
    _state["provider"] = provider
    return provider


def shutdown_tracing() -> None:
    provider = _state.get("provider")
    if provider is not None:
        provider.force_flush(timeout_millis=2000)
