"""Expected failures, as one line each: a refused or failed call names its status code and ErrorInfo reason."""

from __future__ import annotations

import grpc

from service_runtime.downstream import DownstreamError


class CtlError(Exception):
    """A failure checkoutctl expects (the mesh is down, a checkout is unknown, a card was declined…):
    printed as one line, exit status 1, no traceback."""


#: What to add to the message when the code alone says what to do next.
_HINTS = {
    grpc.StatusCode.UNAVAILABLE: "is the mesh running? Start it with `make up`",
    grpc.StatusCode.DEADLINE_EXCEEDED: "the service did not answer in time; is the mesh overloaded or stopped?",
    grpc.StatusCode.UNAUTHENTICATED: "checkoutctl signs with the development keys; set AUTH_JWT_KEYS / "
    "SERVICE_TOKEN_SECRET as the mesh has them",
    grpc.StatusCode.PERMISSION_DENIED: "the mesh does not accept checkoutctl's service token; set SERVICE_TOKEN_SECRET "
    "as the mesh has it",
}


def describe(action: str, error: grpc.aio.AioRpcError) -> str:
    """One line for a failed call: `<action> failed: <CODE> <REASON>: <message> (<metadata>) — <hint>`."""
    failure = DownstreamError.of(error)
    parts = [f"{action} failed: {failure.code.name}"]
    if failure.reason:
        parts.append(f" {failure.reason}")
    if failure.message:
        parts.append(f": {failure.message}")
    if failure.metadata:
        parts.append(" (" + ", ".join(f"{key}={value}" for key, value in sorted(failure.metadata.items())) + ")")
    hint = _HINTS.get(failure.code)
    if hint:
        parts.append(f" — {hint}")
    return "".join(parts)


def refused(action: str, error: grpc.aio.AioRpcError) -> CtlError:
    return CtlError(describe(action, error))
