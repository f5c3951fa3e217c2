"""Reads a failed gRPC call for assertions, with the runtime's own decoder (`service_runtime.downstream`).

Every failure read here is also checked against the mesh's error convention (AIP-193): a status our
services write carries exactly one ErrorInfo, and its metadata keys are lowerCamelCase.
"""

from __future__ import annotations

import grpc

from service_runtime.downstream import DownstreamError
from service_runtime.errors import METADATA_KEY

RpcFailure = DownstreamError


def failure_of(error: grpc.aio.AioRpcError) -> DownstreamError:
    failure = DownstreamError.of(error)
    if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:  # a deadline is the client's own verdict: no details
        assert failure.error_info_count == 1, f"{error.code()} carries {failure.error_info_count} ErrorInfo details"
        assert all(METADATA_KEY.fullmatch(key) for key in failure.metadata), failure.metadata
    return failure


async def expect_failure(call) -> DownstreamError:
    """Awaits a call that must fail and returns what it failed with."""
    try:
        response = await call
    except grpc.aio.AioRpcError as error:
        return failure_of(error)
    raise AssertionError(f"expected the call to fail, it returned {response!r}")
