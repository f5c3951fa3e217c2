"""The cart's script runner (one multiplexed Redis connection) against a real Redis: replies reach their own
callers under concurrency, a script Redis does not know is sent whole, a lost connection is opened again,
a silent Redis is a timeout, errors are redis-py's (so the runtime maps an outage to UNAVAILABLE), and a
call in a recorded trace is a CLIENT span that names no argument."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from redis import exceptions as redis_errors

from cart_svc.scripting import Script, ScriptRunner, pack
from service_runtime import telemetry

ECHO = Script("return {KEYS[1], ARGV[1], tonumber(ARGV[2]) * 2}")


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
    yield connection
    await connection.aclose()


async def test_concurrent_calls_get_their_own_replies(client: redis.Redis, redis_prefix: str):
    runner = ScriptRunner(client)
    try:
        replies = await asyncio.gather(
            *(runner.run(ECHO, [f"{redis_prefix}k{index}"], [f"v{index}", index]) for index in range(500))
        )
        assert replies == [
            [f"{redis_prefix}k{index}".encode(), f"v{index}".encode(), 2 * index] for index in range(500)
        ]
    finally:
        runner.close()


async def test_a_script_redis_does_not_know_is_sent_whole_and_then_known(client: redis.Redis, redis_prefix: str):
    fresh = Script(f"return '{uuid.uuid4().hex}'")  # never loaded: EVALSHA answers NOSCRIPT
    assert await client.script_exists(fresh.sha) == [False]
    runner = ScriptRunner(client)
    try:
        assert await runner.run(fresh, [], []) == fresh.body.split("'")[1].encode()
        assert await client.script_exists(fresh.sha) == [True]
    finally:
        runner.close()


async def test_a_lost_connection_is_opened_again(client: redis.Redis, redis_url: str):
    name = f"cart-scripting-{uuid.uuid4().hex[:8]}"
    named = redis.Redis.from_url(redis_url, client_name=name)  # the runner's handshake names its connection
    runner = ScriptRunner(named)
    try:
        assert await runner.run(ECHO, ["k"], ["v", 0]) == [b"k", b"v", 0]
        assert await client.execute_command("CLIENT", "KILL", "ID", await _client_id(client, name)) == 1
        for _ in range(100):
            try:
                assert await runner.run(ECHO, ["k"], ["v", 1]) == [b"k", b"v", 2]
                break
            except redis_errors.ConnectionError:
                await asyncio.sleep(0.01)  # a call sent before the runner saw the socket close
        else:
            raise AssertionError("the runner never opened a new connection")
        await _client_id(client, name)  # the new one, named again
    finally:
        runner.close()
        await named.aclose()


async def _client_id(client: redis.Redis, name: str) -> int:
    for entry in await client.client_list():
        if entry.get("name") == name:
            return int(entry["id"])
    raise AssertionError(f"no client named {name}")


async def test_no_reply_within_the_socket_timeout_is_a_timeout(redis_url: str):
    slow = redis.Redis.from_url(redis_url, socket_timeout=0.1, socket_connect_timeout=2.0)
    runner = ScriptRunner(slow)
    # keeps Redis busy for half a second (read-only, so Redis lets it finish; other clients wait as long)
    busy = Script(
        "local function now() local t = redis.call('TIME') return t[1] * 1000000 + t[2] end "
        "local stop = now() + 500000 while now() < stop do end return 1"
    )
    try:
        with pytest.raises(redis_errors.TimeoutError):
            await runner.run(busy, [], [])
        await asyncio.sleep(0.6)  # Redis is free again
        assert await runner.run(ECHO, ["k"], ["v", 2]) == [b"k", b"v", 4]
    finally:
        runner.close()
        await slow.aclose()


async def test_a_caller_that_gives_up_does_not_shift_the_replies_of_the_others(client: redis.Redis):
    runner = ScriptRunner(client)
    try:
        gone = asyncio.ensure_future(runner.run(ECHO, ["gone"], ["x", 0]))
        kept = asyncio.ensure_future(runner.run(ECHO, ["kept"], ["y", 5]))
        await asyncio.sleep(0)
        gone.cancel()
        assert await kept == [b"kept", b"y", 10]
        assert await runner.run(ECHO, ["next"], ["z", 1]) == [b"next", b"z", 2]
    finally:
        runner.close()


async def test_errors_are_redis_py_errors(client: redis.Redis, redis_url: str):
    runner = ScriptRunner(client)
    try:
        with pytest.raises(redis_errors.ResponseError, match="boom"):
            await runner.run(Script("return redis.error_reply('boom')"), [], [])
        assert await runner.run(ECHO, ["k"], ["v", 3]) == [b"k", b"v", 6]  # the connection is still good
    finally:
        runner.close()
    nowhere = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1.0)
    unreachable = ScriptRunner(nowhere)
    with pytest.raises(redis_errors.ConnectionError):
        await unreachable.run(ECHO, ["k"], ["v", 1])
    await nowhere.aclose()


async def test_a_closed_runner_keeps_no_connection_and_opens_none(client: redis.Redis):
    runner = ScriptRunner(client)
    first = asyncio.ensure_future(runner.run(ECHO, ["k"], ["v", 1]))  # its connection is being opened
    await asyncio.sleep(0)
    runner.close()
    with pytest.raises(redis_errors.ConnectionError):  # the connection opened meanwhile is closed, not kept
        await first
    assert runner._link is None or runner._link.closed
    with pytest.raises(redis_errors.ConnectionError, match="closed"):
        await runner.run(ECHO, ["k"], ["v", 1])


def test_commands_are_packed_as_resp_arrays():
    assert pack("SET", "k", 12) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n"
    assert ECHO.evalsha(["a"], ["é", 7]) == pack("EVALSHA", ECHO.sha, 1, "a", "é", 7)
    with pytest.raises(TypeError):
        pack("SET", "k", 1.5)  # type: ignore[arg-type]


async def test_a_call_inside_a_recorded_trace_is_a_client_span_without_its_arguments(client: redis.Redis):
    provider = telemetry.configure_tracing("tests")
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    runner = ScriptRunner(client)
    try:
        await runner.run(ECHO, ["untraced"], ["secret-0", 1])  # no recording span: no span of its own
        with telemetry.tracer().start_as_current_span("request"):
            await runner.run(ECHO, ["traced-key"], ["secret-1", 1])
        redis_spans = [span for span in exporter.get_finished_spans() if span.name == "EVALSHA"]
        assert len(redis_spans) == 1
        (span,) = redis_spans
        attributes = dict(span.attributes or {})
        assert span.kind is SpanKind.CLIENT and span.parent is not None
        assert attributes["db.system"] == "redis" and attributes["db.operation.name"] == "EVALSHA"
        assert attributes["db.query.text"] == "EVALSHA ? ? ? ? ?"
        assert "secret" not in repr(attributes) and "traced-key" not in repr(attributes)
    finally:
        runner.close()
        exporter.shutdown()
