"""The server side of every RPC a service serves, composed once per method when the service registers it.

Every unary call a service serves passes through one coroutine (`Inbound.wrap`), which does, outermost
first:

1. tracing (service_runtime.telemetry): the call's SERVER span, a child of the trace context in the
   caller's metadata (`traceparent`), current while the handler runs; `rpc.system`, `rpc.service`,
   `rpc.method`, `rpc.grpc.status_code`, and status ERROR for the codes OpenTelemetry's conventions count
   as server errors (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS);
2. metrics (service_runtime.metrics): `rpc.server.duration` of the call by its final status code;
3. error mapping (service_runtime.status.answer): no exception reaches the client as UNKNOWN;
4. identity (service_runtime.identity.identify): the caller the metadata proves is current, or the call
   is refused UNAUTHENTICATED (mapped by 3, so it leaves with its ErrorInfo).

Before, these were four grpc.aio interceptors (OpenTelemetry's server instrumentation and three of ours):
each ran on every call, built a new method handler and closures, and the instrumentation read the
metadata and peer again; composing them once per method at registration leaves one wrapper per call.
Health checks and reflection are registered on the server directly, so they pass through none of it
(untraced, uncounted, unauthenticated, as before).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, cast

import grpc

from service_runtime import identity, metrics, status, telemetry

Context = grpc.aio.ServicerContext[Any, Any]
Behaviour = Callable[[Any, Context], Awaitable[Any]]


class Inbound:
    """How a service's methods are served: its ErrorInfo `domain`, and the `verifier` of its callers (None:
    no identity, for a test server). Tracing and metrics are on when the process configured them."""

    def __init__(self, *, domain: str, verifier: identity.Verifier | None) -> None:
        self._domain = domain
        self._verifier = verifier

    def wrap(self, method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        """`handler` of `method` ("/package.Service/Method") with everything in the module docstring around
        it; a streaming handler is returned as it is (the mesh serves none)."""
        if handler.unary_unary is None:
            return handler
        # The stubs model synchronous behaviours only; under grpc.aio the behaviour is a coroutine function.
        inner = cast(Behaviour, handler.unary_unary)
        domain = self._domain
        verifier = self._verifier if method.startswith("/shop.") else None
        traced = telemetry.enabled()
        durations = metrics.server_durations() if metrics.enabled() else None
        server_span = telemetry.ServerSpans(method) if traced else None

        async def served(request: Any, context: Context) -> Any:
            started = time.perf_counter()
            span = None
            if server_span is not None:
                span = server_span.start(cast(Sequence[tuple[str, str | bytes]], context.invocation_metadata() or ()))
            failed = 2  # UNKNOWN, unless the call returns or is cancelled
            try:
                if verifier is None:
                    response = await status.answer(inner, request, context, method, domain)
                else:
                    response = await status.answer(_identified, request, context, method, domain)
                failed = 0
                return response
            except asyncio.CancelledError:
                # The caller went away: its deadline passed (DEADLINE_EXCEEDED) or it cancelled (CANCELLED).
                # Neither is the handler's failure, and gRPC leaves no code on the context to say which.
                remaining: float | None = context.time_remaining()  # None without a deadline (the stubs say float)
                failed = 4 if remaining is not None and remaining <= 0 else 1
                raise
            finally:
                # The code an abort (or set_code) left; None when the handler just returned or was cancelled.
                code = metrics.code_number(context.code(), failed)
                if span is not None:
                    span.end(code)
                if durations is not None:
                    durations.record(method, code, started)

        async def _identified(request: Any, context: Context) -> Any:
            assert verifier is not None
            metadata = cast(Sequence[tuple[str, str | bytes]], context.invocation_metadata() or ())
            token = identity.identify(verifier, context, metadata)
            try:
                return await inner(request, context)
            finally:
                identity.forget(token)

        return status.tolerant_handler(handler, served)

    def registrar(self, server: grpc.aio.Server) -> grpc.aio.Server:
        """`server` as a service's `Assembly.register` sees it: the handlers it adds are wrapped, once each."""
        return cast(grpc.aio.Server, _Registrar(server, self))


class _Registrar:
    """Stands in for the server while a composition root registers its servicers (the generated
    `add_<Service>Servicer_to_server` calls these two methods)."""

    def __init__(self, server: grpc.aio.Server, inbound: Inbound) -> None:
        self._server = server
        self._inbound = inbound

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        wrapped: list[grpc.GenericRpcHandler] = []
        for generic in generic_rpc_handlers:
            service = getattr(generic, "service_name", None)
            handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]] | None = getattr(generic, "_method_handlers", None)
            if service is None or handlers is None:
                raise TypeError(f"{generic!r} is not a grpc.method_handlers_generic_handler: cannot wrap its methods")
            wrapped.append(
                grpc.method_handlers_generic_handler(
                    service(),
                    {
                        method.rsplit("/", 1)[1]: self._inbound.wrap(method, handler)
                        for method, handler in handlers.items()
                    },
                )
            )
        self._server.add_generic_rpc_handlers(wrapped)

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        self._server.add_registered_method_handlers(
            service_name,
            {name: self._inbound.wrap(f"/{service_name}/{name}", handler) for name, handler in method_handlers.items()},
        )
