"""Client channels to other services, and deadlines derived from the inbound call.

Channels use a service config: round_robin across every address a `dns:///` target resolves to
(headless Services in Kubernetes), and transparent retry of UNAVAILABLE only, which is safe because
UNAVAILABLE means the request was not processed or the method is idempotent by contract.
"""

from __future__ import annotations

import json
import time
from typing import Protocol

import grpc

from service_runtime import errors, metrics, telemetry
from service_runtime.identity import SERVICE_TOKEN, ServiceTokens
from service_runtime.sql import in_transaction
from service_runtime.tls import MutualTls

#: grpc reports "no deadline" as a huge remaining time; anything above this is treated as none.
_NO_DEADLINE = 365 * 24 * 3600.0

_SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{}],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.05s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}

#: The longest wait between a channel's attempts to reach a peer that went away.
MAX_RECONNECT_BACKOFF_SECONDS = 2.0

CHANNEL_OPTIONS = (
    ("grpc.service_config", json.dumps(_SERVICE_CONFIG)),
    ("grpc.enable_retries", 1),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
    # A peer that restarts (a pod rolled, a process crashed) is found again within ~2 s: gRPC's default
    # reconnect backoff grows to 120 s, during which every call fails fast with UNAVAILABLE.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", int(MAX_RECONNECT_BACKOFF_SECONDS * 1000)),
    # The servers' limits (service_runtime.server): an answer larger than this is refused here too.
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
)


class RpcInsideTransaction(RuntimeError):
    """An RPC was started while a database transaction was open: a bug (locks would be held across the
    network, and a retried transaction would send the RPC again)."""


class OutboundGuard(grpc.aio.UnaryUnaryClientInterceptor):
    """Every outbound call passes here: it must not start inside a database transaction, a call made
    without a timeout gets the channel's default (no outbound call can wait forever), and it carries this
    service's token, which makes it a trusted caller (service_runtime.identity). It is also the call's
    CLIENT span and trace context (service_runtime.telemetry) and its `rpc.client.duration`
    (service_runtime.metrics): one interceptor layer for all of it."""

    def __init__(self, default_timeout_seconds: float, tokens: ServiceTokens | None) -> None:
        self._seconds = default_timeout_seconds
        self._tokens = tokens

    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        if in_transaction.get():
            raise RpcInsideTransaction(f"{client_call_details.method!r} called inside a database transaction")
        if client_call_details.timeout is None:
            client_call_details = client_call_details._replace(timeout=self._seconds)
        method = client_call_details.method
        method = method.decode() if isinstance(method, bytes) else str(method)
        extra: list[tuple[str, str]] = []
        if self._tokens is not None:
            extra.append((SERVICE_TOKEN, self._tokens.current()))
        span = None
        if telemetry.enabled():
            span, carrier = telemetry.start_client_span(method)
            extra.extend(carrier.items())
        if extra:
            replaced = {name for name, _ in extra}
            metadata = [(key, value) for key, value in (client_call_details.metadata or ()) if key not in replaced]
            client_call_details = client_call_details._replace(metadata=grpc.aio.Metadata(*metadata, *extra))
        timed = metrics.enabled()
        if span is None and not timed:
            return await continuation(client_call_details, request)
        started = time.perf_counter()
        try:
            call = await continuation(client_call_details, request)
            status = await call.code()
        except BaseException as error:
            if span is not None:
                telemetry.end_client_span(span, 2, type(error).__name__)
            raise
        code = metrics.code_number(status)
        if span is not None:
            telemetry.end_client_span(span, code, getattr(status, "name", str(status)))
        if timed:
            metrics.record_client_call(method, code, started)
        return call


class HasDeadline(Protocol):
    """What `outbound_timeout` needs of an inbound call's context."""

    def time_remaining(self) -> float | None: ...


class Channels:
    """Opens one channel per target and closes them all at shutdown (never one per call).

    Calls should pass `timeout=outbound_timeout(context, cap=...)`; one that passes none still gets
    `default_timeout_seconds`.
    """

    def __init__(
        self,
        *,
        default_timeout_seconds: float = 5.0,
        tokens: ServiceTokens | None = None,
        tls: MutualTls | None = None,
    ) -> None:
        self._open: dict[str, grpc.aio.Channel] = {}
        # Under mutual TLS the client certificate is the service's identity: no token is sent.
        self._guard = OutboundGuard(default_timeout_seconds, None if tls is not None else tokens)
        self._credentials = tls.channel_credentials() if tls is not None else None

    def get(self, target: str) -> grpc.aio.Channel:
        channel = self._open.get(target)
        if channel is None:
            interceptors = [self._guard]  # which also times the call when metrics are on
            if self._credentials is not None:
                channel = grpc.aio.secure_channel(
                    target, self._credentials, options=CHANNEL_OPTIONS, interceptors=interceptors
                )
            else:
                channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS, interceptors=interceptors)
            self._open[target] = channel
        return channel

    async def close(self) -> None:
        for channel in self._open.values():
            await channel.close()
        self._open.clear()


def outbound_timeout(context: HasDeadline | None, *, cap: float, reserve: float = 0.02) -> float:
    """Timeout for a downstream call made while serving `context`.

    It is the inbound call's remaining time less `reserve` (to answer our own caller), clamped to `cap`.
    Raises DeadlineExceeded when nothing useful remains.
    """
    remaining = context.time_remaining() if context is not None else None
    if remaining is None or remaining > _NO_DEADLINE:
        return cap
    budget = min(remaining - reserve, cap)
    if budget <= 0.001:
        raise errors.DeadlineExceeded("the caller's deadline leaves no time for a downstream call")
    return budget
