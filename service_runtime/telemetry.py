"""OpenTelemetry tracing: one provider per process; the SERVER span of every RPC served (made by the runtime's
one wrapper around each method, service_runtime.inbound) and the CLIENT span of every RPC made (the
runtime's outbound interceptor, service_runtime.channels), redis instrumented, and every unit of work's
SQL traced by the runtime's `Statements` (service_runtime.sql).

Where spans go: OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (Kubernetes: the collector), and/or one
JSON object per line appended to `TRACE_SPANS_FILE` when set (`make up`: `checkoutctl trace` reads it).
Without either, spans are still created (trace ids flow through metadata, events and logs) but not
exported. `OTEL_SDK_DISABLED=true` turns tracing off altogether (no instrumentation).

What is traced (see docs/observability.md):

- Sampling is parent-based: a span whose parent was sampled is sampled, so a checkout's trace is whole or
  absent. A new trace is kept with probability `OTEL_TRACES_SAMPLER_ARG` (0..1, default 1), the
  standard variable of the `parentbased_traceidratio` sampler (`OTEL_TRACES_SAMPLER` may also say
  `parentbased_always_on` or `parentbased_always_off`).
- Health checks are not traced (client or server), and a database or cache call with no parent span
  (a background poller's idle query, the readiness probe) starts no trace: SQL is traced only inside a
  recording span (one span per unit of work, service_runtime.sql.WorkSpan), and a Redis command
  with no parent is dropped by the sampler.
- SQL is recorded as the statement text (named placeholders, never values), Redis as `COMMAND ? ?`;
  our own attributes are identifiers (checkout, order, step), never card data, tokens, e-mail or postal
  addresses.

Call `configure_tracing` before registering a service's methods (service_runtime.server does): whether
its calls are traced is decided then, once per method.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.util.types import Attributes

#: The instrumentation scope of the spans our own code makes (saga steps, relays, consumers).
SCOPE = "shop.checkout"

_state: dict[str, TracerProvider] = {}


class QuietRoots(Sampler):
    """The root sampler: a database or cache call that has no parent span starts no trace (they are the
    background pollers' idle queries and the probes, and would drown everything else); any other new
    trace is kept by `delegate` (a trace-id ratio)."""

    def __init__(self, delegate: Sampler) -> None:
        self._delegate = delegate

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        # redis spans are CLIENT spans named after the command; a gRPC client span is named after its
        # method path ("/package.Service/Method").
        if kind is SpanKind.CLIENT and not name.startswith("/"):
            return SamplingResult(Decision.DROP)
        return self._delegate.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"QuietRoots{{{self._delegate.get_description()}}}"


def sampler_from(env: Mapping[str, str]) -> Sampler:
    """The parent-based sampler that `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG` describe."""
    name = env.get("OTEL_TRACES_SAMPLER", "parentbased_traceidratio").strip().lower() or "parentbased_traceidratio"
    if name in ("parentbased_always_off", "always_off"):
        root: Sampler = ALWAYS_OFF
    elif name in ("parentbased_always_on", "always_on"):
        root = ALWAYS_ON
    elif name in ("parentbased_traceidratio", "traceidratio"):
        try:
            ratio = float(env.get("OTEL_TRACES_SAMPLER_ARG", "") or 1.0)
        except ValueError:
            ratio = 1.0
        root = TraceIdRatioBased(min(1.0, max(0.0, ratio)))
    else:
        raise ValueError(
            f"OTEL_TRACES_SAMPLER={name!r} is not supported here; use parentbased_traceidratio "
            "(with OTEL_TRACES_SAMPLER_ARG), parentbased_always_on or parentbased_always_off"
        )
    return ParentBased(root=QuietRoots(root))


class JsonLinesSpanExporter(SpanExporter):
    """Appends each span as one JSON object per line to a file shared by every process of the local mesh.

    Each batch is one `write` to a file opened with O_APPEND, so lines of concurrent processes never
    interleave. A line holds what a waterfall needs (see `span_record`), not the SDK's verbose
    `to_json()`, which costs several times more per span; span events are left out.
    """

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = "".join(json.dumps(span_record(span), separators=(",", ":"), default=str) + "\n" for span in spans)
        with self._lock:
            if self._fd >= 0:
                os.write(self._fd, data.encode())
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def span_record(span: ReadableSpan) -> dict[str, object]:
    """One line of the span file: ids in hex (as W3C traceparent writes them), times in epoch ns."""
    context, parent = span.context, span.parent
    return {
        "trace_id": f"{context.trace_id:032x}" if context else "",
        "span_id": f"{context.span_id:016x}" if context else "",
        "parent_id": f"{parent.span_id:016x}" if parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "service": span.resource.attributes.get("service.name", ""),
        "start": span.start_time,
        "end": span.end_time,
        "status": span.status.status_code.name,
        "description": span.status.description or "",
        "attributes": dict(span.attributes or {}),
        "links": [
            {"trace_id": f"{link.context.trace_id:032x}", "span_id": f"{link.context.span_id:016x}"}
            for link in span.links
        ],
    }


def configure_tracing(service_name: str) -> TracerProvider:
    """Installs the tracer provider and instrumentation once per process; later calls return it."""
    if "provider" in _state:
        return _state["provider"]
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":  # the standard OTel switch
        _state["provider"] = TracerProvider(sampler=ALWAYS_OFF)
        return _state["provider"]
    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)}),
        sampler=sampler_from(os.environ),
    )
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    spans_file = os.environ.get("TRACE_SPANS_FILE", "").strip()
    if spans_file:
        provider.add_span_processor(BatchSpanProcessor(JsonLinesSpanExporter(spans_file), schedule_delay_millis=500))
    trace.set_tracer_provider(provider)
    instrument_redis()
    _state["provider"] = provider
    _enabled.append(True)
    return provider


def instrument_redis() -> None:
    """Traces the asyncio Redis client's commands and pipelines, once per process: a CLIENT span per
    command (named after it, e.g. `EVALSHA`) or per pipeline (its commands' names), with `db.system`
    redis, `db.operation.name`, `db.query.text` as `COMMAND ? ?` (never the arguments), `db.namespace` (the
    database number), `server.address` and `server.port`.

    Only inside a recording span: a command in an unsampled request or a background poller's idle read
    costs one look at the current span. (opentelemetry-instrumentation-redis, used before, formatted every
    command's arguments and made a span, non-recording, for each command even when nothing was traced.)"""
    from redis.asyncio.client import Pipeline, Redis

    if getattr(Redis.execute_command, "_shop_traced", False):
        return
    # redis-py's own methods are untyped.
    command: Callable[..., Awaitable[Any]] = Redis.execute_command
    immediate: Callable[..., Awaitable[Any]] = Pipeline.immediate_execute_command
    execute: Callable[..., Awaitable[Any]] = Pipeline.execute

    async def execute_command(self: Redis, *args: Any, **options: Any) -> Any:
        if not trace.get_current_span().is_recording():
            return await command(self, *args, **options)
        with _redis_span(self, [args]):
            return await command(self, *args, **options)

    async def immediate_execute_command(self: Pipeline, *args: Any, **options: Any) -> Any:
        if not trace.get_current_span().is_recording():
            return await immediate(self, *args, **options)
        with _redis_span(self, [args]):
            return await immediate(self, *args, **options)

    async def execute_pipeline(self: Pipeline, raise_on_error: bool = True) -> Any:
        if not trace.get_current_span().is_recording() or not self.command_stack:
            return await execute(self, raise_on_error)
        with _redis_span(self, [args for args, _options in self.command_stack]):
            return await execute(self, raise_on_error)

    execute_command._shop_traced = True  # type: ignore[attr-defined]
    Redis.execute_command = execute_command  # type: ignore[method-assign]
    Pipeline.immediate_execute_command = immediate_execute_command  # type: ignore[method-assign]
    Pipeline.execute = execute_pipeline  # type: ignore[method-assign]


def redis_attributes(client: Any) -> dict[str, str | int]:
    """The attributes every Redis CLIENT span of `client` (a redis-py client) carries: the system, the
    database, and the server (its socket path for a Unix socket, else host and port)."""
    connection = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    attributes: dict[str, str | int] = {"db.system": "redis", "db.namespace": str(connection.get("db") or 0)}
    if connection.get("path"):
        attributes["server.address"] = str(connection["path"])
    else:
        attributes["server.address"] = str(connection.get("host", "localhost"))
        attributes["server.port"] = int(connection.get("port", 6379))
    return attributes


@contextmanager
def _redis_span(client: Any, commands: Sequence[Sequence[Any]]) -> Iterator[None]:
    names = [str(args[0]) if args else "" for args in commands]
    attributes = redis_attributes(client)
    attributes["db.operation.name"] = names[0] if len(names) == 1 else "PIPELINE"
    attributes["db.query.text"] = "\n".join(
        " ".join([name, *["?"] * (len(args) - 1)]) for name, args in zip(names, commands, strict=True)
    )
    current = tracer().start_span(" ".join(names)[:200], kind=SpanKind.CLIENT, attributes=attributes)
    try:
        yield
    except BaseException as error:
        fail(current, type(error).__name__)  # the class only: a reply's text could quote a value
        raise
    finally:
        current.end()


#: Non-empty once tracing is configured and not disabled (a list: read on every outbound call, cheaply).
_enabled: list[bool] = []


def enabled() -> bool:
    return bool(_enabled)


def start_client_span(method: str) -> tuple[trace.Span, dict[str, str]]:
    """The CLIENT span of an outbound unary call (the runtime's channels make it: one interceptor does the
    guard, the token, the trace context and the metrics) and the metadata that carries its context. The
    context is sent even when the span is not sampled, so the callee follows the same decision."""
    service, _, name = method.lstrip("/").partition("/")
    span = tracer().start_span(
        method, kind=SpanKind.CLIENT, attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
    )
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return span, carrier


def end_client_span(span: trace.Span, code: int, code_name: str) -> None:
    if span.is_recording():
        span.set_attribute("rpc.grpc.status_code", code)
        if code != 0:
            fail(span, code_name)
    span.end()


#: gRPC codes whose SERVER span has status ERROR (OpenTelemetry's RPC conventions: the server's own
#: failures; a refusal such as NOT_FOUND or FAILED_PRECONDITION is an answer, its status stays unset):
#: UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
SERVER_ERROR_CODES = frozenset({2, 4, 12, 13, 14, 15})
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
#: The metadata keys the global propagator (W3C trace context and baggage) reads.
_CARRIER_KEYS = frozenset({"traceparent", "tracestate", "baggage"})


class ServerSpans:
    """The SERVER spans of one served method (service_runtime.inbound makes one per method, at
    registration): `start` per call."""

    def __init__(self, method: str) -> None:
        service, _, name = method.lstrip("/").partition("/")
        self._name = method
        self._attributes: dict[str, str | int] = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}

    def start(self, metadata: Sequence[tuple[str, str | bytes]]) -> ServerSpan:
        """The call's span, current until `end`: a child of the caller's trace context (its metadata's
        `traceparent`), or a new trace's root when the caller sent none. Unsampled, it is a non-recording
        span that still carries the trace id and the caller's decision to the calls made under it."""
        carrier: dict[str, str] | None = None
        for key, value in metadata:
            if key in _CARRIER_KEYS and isinstance(value, str):
                if carrier is None:
                    carrier = {}
                carrier[key] = value
        parent = propagate.extract(carrier, context=otel_context.Context()) if carrier else otel_context.Context()
        current = tracer().start_span(self._name, context=parent, kind=SpanKind.SERVER, attributes=self._attributes)
        return ServerSpan(current, otel_context.attach(trace.set_span_in_context(current, parent)))


class ServerSpan:
    __slots__ = ("_span", "_token")

    def __init__(self, span: trace.Span, token: object) -> None:
        self._span = span
        self._token = token

    def end(self, code: int) -> None:
        """Ends the span with the call's gRPC status `code` and makes the caller's context current again."""
        span = self._span
        if span.is_recording():
            span.set_attribute("rpc.grpc.status_code", code)
            if code in SERVER_ERROR_CODES:
                fail(span, _CODE_NAMES.get(code, str(code)))
        span.end()
        otel_context.detach(self._token)  # type: ignore[arg-type]


def shutdown_tracing() -> None:
    provider = _state.get("provider")
    if provider is not None:
        provider.force_flush(timeout_millis=2000)


@functools.cache
def tracer() -> trace.Tracer:
    """Our code's tracer (a proxy until `configure_tracing` installs the provider; made once, since
    `get_tracer` builds a new one on every call)."""
    return trace.get_tracer(SCOPE)


# Trace context carried with stored work (outbox events, saga rows) and messages


def current_traceparent() -> str:
    """The W3C `traceparent` of the current span ("" when there is none or it is not sampled)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")


def context_of(carrier: Mapping[str, str]) -> otel_context.Context:
    """The context a `traceparent`/`tracestate` carrier continues (an empty context when it has none)."""
    return propagate.extract(carrier, context=otel_context.Context())


def link_to(traceparent: str) -> list[Link]:
    """A link to the span a stored `traceparent` names (none when it is empty or malformed)."""
    if not traceparent:
        return []
    span_context = trace.get_current_span(context_of({"traceparent": traceparent})).get_span_context()
    return [Link(span_context)] if span_context.is_valid else []


@contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Attributes = None,
    parent: otel_context.Context | None = None,
    links: Sequence[Link] = (),
) -> Iterator[trace.Span]:
    """A span of our own code, current inside the block; an exception sets its status to ERROR."""
    with tracer().start_as_current_span(
        name, context=parent, kind=kind, attributes=attributes, links=links, record_exception=False
    ) as current:
        yield current


def fail(current: trace.Span, description: str) -> None:
    """Marks a span failed with a short description (a status code or reason, never request data)."""
    current.set_status(Status(StatusCode.ERROR, description))
