"""Hostile requests for every RPC of every service, generated from the descriptors (tests/hostile/requests.py)
and sent as each kind of caller to the real mesh (tests/hostile/conftest.py). Every answer must be OK or a
status code and ErrorInfo reason the RPC's contract names (never UNKNOWN or INTERNAL), come before the
deadline (no hang), and a refusal must leave every table's row count and the Redis keys as they were (no partial write).

`HOSTILE_EXAMPLES` (default 12) is the number of generated requests per RPC; CI runs the default, a longer
hunt sets e.g. `HOSTILE_EXAMPLES=200`.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import cast

import grpc
import pytest
from google.protobuf import descriptor_pool
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service_runtime.downstream import DownstreamError
from service_runtime.server import MAX_MESSAGE_BYTES
from tests.hostile.conftest import SHOPPER, Mesh
from tests.hostile.requests import Contract, Pool, documented_answers, message_strategy
from tests.hostile.state import Snapshot, StateReader, cache_or_bucket, difference
from tests.identity import as_customer, as_service, as_session

EXAMPLES = int(os.environ.get("HOSTILE_EXAMPLES", "12"))
#: No call may take longer: a hang is a failure, not a slow answer.
DEADLINE_SECONDS = 15.0
NEVER = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED})
CALLERS = {
    "service": as_service("gateway"),
    "customer": as_customer(SHOPPER),
    "other customer": as_customer("bob"),
    "session": as_session("sess-1"),
    "nobody": (),
    "garbage token": (("authorization", "Bearer not.a.token"),),
}


@dataclass(frozen=True)
class Finding:
    method: str
    caller: str
    problem: str
    request: str

    def __str__(self) -> str:
        return f"{self.method} as {self.caller}: {self.problem}\n    request: {self.request}"


def _summary(request: Message) -> str:
    """The request in a line; a large one by its fields' sizes (its text form could take gigabytes)."""
    if request.ByteSize() > 2000:
        sizes = ", ".join(
            f"{field.name} ({len(value)} items)" if field.is_repeated else field.name
            for field, value in request.ListFields()
        )
        return f"{request.ByteSize()} bytes; {sizes}"
    return " ".join(str(request).split())[:600]


def _hunt(
    mesh: Mesh, method_name: str, contract: Contract, redis_url: str, prefix: str, findings: list[Finding]
) -> int:
    """Runs the generated requests of one RPC (in a worker thread, with a blocking channel: the servers
    keep running on the test's event loop). Returns how many calls were made."""
    method = descriptor_pool.Default().FindMethodByName(method_name)
    service = method.containing_service.full_name
    request_type = method.input_type
    database_url = mesh.shop.database_url
    pool = Pool(ids=mesh.real_ids)
    channel = grpc.insecure_channel(mesh.addresses[service])
    call: grpc.UnaryUnaryMultiCallable[Message, bytes] = channel.unary_unary(
        f"/{service}/{method.name}",
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=lambda data: data,
    )
    calls = 0

    # The thread's own event loop, for one connection to PostgreSQL and Redis that reads the state.
    loop = asyncio.new_event_loop()
    reader = loop.run_until_complete(StateReader(database_url, redis_url, prefix, cache_or_bucket).__aenter__())

    def state() -> Snapshot:
        return loop.run_until_complete(reader.read())

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        derandomize=os.environ.get("HOSTILE_RANDOM") is None,
    )
    @given(request=message_strategy(request_type, pool), caller=st.sampled_from(sorted(CALLERS)))
    def one(request: Message, caller: str) -> None:
        nonlocal calls
        calls += 1
        before = state()
        started = time.monotonic()
        try:
            call(request, metadata=CALLERS[caller], timeout=DEADLINE_SECONDS)
        except grpc.RpcError as error:
            failed = cast(grpc.Call, error)  # a failed blocking call's error is also its grpc.Call
            code = failed.code()
            details = failed.details() or ""
        else:
            _settle(state)
            return
        where = (method_name, caller)
        if code in NEVER:
            waited = time.monotonic() - started
            findings.append(Finding(*where, f"{code.name} after {waited:.1f} s: {details[:300]}", _summary(request)))
            return
        too_big = code == grpc.StatusCode.RESOURCE_EXHAUSTED and request.ByteSize() > MAX_MESSAGE_BYTES
        if code not in contract.codes and not too_big:
            findings.append(Finding(*where, f"{code.name} is not in its contract: {details[:300]}", _summary(request)))
        # The runtime's reader of a refusal needs only code(), details() and trailing_metadata(), which a
        # blocking call's error has too.
        reason = DownstreamError.of(cast(grpc.aio.AioRpcError, failed)).reason
        if reason and reason not in contract.text and not too_big:
            findings.append(Finding(*where, f"{code.name} {reason}: the reason is not in its contract", ""))
        changed = difference(before, state())
        if changed:
            findings.append(Finding(*where, f"refused with {code.name} but wrote {changed}", _summary(request)))

    started = time.monotonic()
    try:
        one()
    finally:
        channel.close()
        loop.run_until_complete(reader.__aexit__())
        loop.close()
    print(f"{method_name}: {calls} calls in {time.monotonic() - started:.1f} s", flush=True)
    return calls


def _settle(state: object) -> None:
    """After a call that succeeded: wait until its after-commit effects (outbox relays, event consumers)
    have stopped changing the counts, so the next refusal is judged on its own (at most 3 s)."""
    assert callable(state)
    previous = state()
    for _ in range(30):
        time.sleep(0.1)
        current = state()
        if current == previous:
            return
        previous = current


# The servers share this process, and their retry jitter uses `random` while Hypothesis is generating.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
@pytest.mark.timeout(max(300, EXAMPLES * 60))  # a longer hunt gets a longer limit (about 0.1 s a call)
async def test_every_rpc_answers_hostile_requests_with_a_documented_code_and_no_partial_write(
    mesh: Mesh, redis_url: str, redis_prefix: str
):
    contracts = documented_answers()
    assert len(contracts) >= 50, sorted(contracts)
    findings: list[Finding] = []
    calls = 0
    for method_name, contract in sorted(contracts.items()):
        calls += await asyncio.to_thread(_hunt, mesh, method_name, contract, redis_url, redis_prefix, findings)
    print(f"{calls} hostile calls over {len(contracts)} RPCs")
    assert not findings, "\n".join(str(finding) for finding in findings)
