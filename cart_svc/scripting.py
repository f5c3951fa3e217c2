"""The cart's Lua scripts over one multiplexed Redis connection: pipelined writes, replies parsed by hiredis.

Why not redis-py's client for these calls: it takes a pooled connection per command, and every command is
its own write and read system calls plus its retry, pool and encoder layers, about 180 µs of CPU per
EVALSHA on the 2-core development box. Here every command issued in the same event-loop turn leaves in one
write, replies are read as they come (many per read under load) and parsed by hiredis: about 20 µs per
EVALSHA at 32 concurrent calls (docs/cart.md, Speed). Redis runs one connection's commands in order, one
at a time, as it runs those of many connections: every script stays atomic.

What is kept from the runtime's client (`service_runtime.keyspace.create_redis`), whose settings are read
from it (`ConnectionPool.make_connection()`, never connected): host and port, TLS (rediss://), Unix socket,
user and password, database, client name, connect and reply timeouts.

- Errors are redis-py's: no connection, or the connection lost → ConnectionError; no reply within the socket
  timeout → TimeoutError, and the connection is closed (as redis-py closes a timed-out one) so the commands
  still waiting on it fail with ConnectionError; both are UNAVAILABLE to the caller
  (`service_runtime.status.redis_outage`). A script's error is ResponseError (LOADING: BusyLoadingError).
  The next command opens a new connection.
- NOSCRIPT (Redis restarted, or SCRIPT FLUSH): the script is sent whole (EVAL), which caches it again.
- Each command is a CLIENT span as the runtime makes for redis-py's commands
  (`service_runtime.telemetry.instrument_redis`), only inside a recording span: named `EVALSHA`, `db.system`
  redis, `db.query.text` `EVALSHA ? ? …` (never the arguments), `db.namespace`, `server.address`/`port`.

A command whose caller gives up (cancelled) still runs if it was sent, and its reply is discarded; like a
timed-out command, it may have been applied: every cart mutation is safe to repeat (idempotency keys).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection, UnixDomainSocketConnection
from redis.credentials import UsernamePasswordCredentialProvider

from service_runtime import telemetry

Arg = str | int | bytes


class Script:
    """A Lua script, known to Redis by its SHA1 once loaded."""

    __slots__ = ("_evalsha", "body", "sha")

    def __init__(self, body: str) -> None:
        self.body = body
        self.sha = hashlib.sha1(body.encode()).hexdigest()
        #: EVALSHA and the digest, packed once.
        self._evalsha = _bulk("EVALSHA") + _bulk(self.sha)

    def evalsha(self, keys: Sequence[str], args: Sequence[Arg]) -> bytes:
        """EVALSHA of the script with `keys` and `args`, packed."""
        return b"*%d\r\n%s%s" % (
            3 + len(keys) + len(args),
            self._evalsha,
            b"".join(map(_bulk, (len(keys), *keys, *args))),
        )

    def eval(self, keys: Sequence[str], args: Sequence[Arg]) -> bytes:
        return pack("EVAL", self.body, len(keys), *keys, *args)


def _bulk(value: Arg) -> bytes:
    if type(value) is str:
        data = value.encode()
    elif type(value) is int:
        data = b"%d" % value
    elif type(value) is bytes:
        data = value
    else:  # bool, float and the rest: what a script gets must be said exactly
        raise TypeError(f"a script argument must be str, int or bytes, not {type(value).__name__}")
    return b"$%d\r\n%s\r\n" % (len(data), data)


def pack(*parts: Arg) -> bytes:
    """One command in the Redis protocol (RESP): an array of bulk strings."""
    return b"*%d\r\n%s" % (len(parts), b"".join(map(_bulk, parts)))


_ERRORS: dict[str, type[redis_errors.RedisError]] = {
    "NOSCRIPT": redis_errors.NoScriptError,
    "LOADING": redis_errors.BusyLoadingError,
    "READONLY": redis_errors.ReadOnlyError,
    "NOAUTH": redis_errors.AuthenticationError,
    "WRONGPASS": redis_errors.AuthenticationError,
    "NOPERM": redis_errors.NoPermissionError,
    "OOM": redis_errors.OutOfMemoryError,
}


#: What the parser answers while a reply is still incomplete.
_NOT_ENOUGH = object()


def _reply_error(message: str) -> redis_errors.RedisError:
    code = message.split(" ", 1)[0]
    return _ERRORS.get(code, redis_errors.ResponseError)(message)


class _Link(asyncio.Protocol):
    """One connection: commands written in order, replies matched to them in order (FIFO)."""

    def __init__(self, timeout: float | None) -> None:
        self._loop = asyncio.get_running_loop()
        self._timeout = timeout
        self._parser = hiredis.Reader(replyError=_reply_error, notEnoughData=_NOT_ENOUGH)
        self._transport: asyncio.Transport | None = None
        #: (future of the reply, when it was sent), oldest first.
        self._waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self._outgoing: list[bytes] = []
        self._watchdog: asyncio.TimerHandle | None = None
        self.closed = False

    # ---- asyncio.Protocol ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        parser.feed(data)
        waiting = self._waiting
        while (reply := parser.gets()) is not _NOT_ENOUGH:
            if not waiting:
                self._fail(redis_errors.ConnectionError("Redis sent a reply to no command"))
                return
            future, _ = waiting.popleft()
            if not future.done():  # its caller may have given up
                if isinstance(reply, redis_errors.RedisError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)

    def eof_received(self) -> bool:
        self._fail(redis_errors.ConnectionError("Connection closed by server."))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(redis_errors.ConnectionError(f"Connection to Redis lost: {exc or 'closed'}"))

    # ---- commands ----

    def send(self, payload: bytes) -> asyncio.Future[Any]:
        """The future reply of one packed command; sent with the others of this event-loop turn."""
        future: asyncio.Future[Any] = self._loop.create_future()
        if self.closed:
            future.set_exception(redis_errors.ConnectionError("Connection to Redis lost"))
            return future
        self._waiting.append((future, self._loop.time()))
        if not self._outgoing:
            self._loop.call_soon(self._flush)
        self._outgoing.append(payload)
        if self._watchdog is None and self._timeout is not None:
            self._watchdog = self._loop.call_later(self._timeout, self._check)
        return future

    def _flush(self) -> None:
        if self._outgoing and not self.closed and self._transport is not None:
            self._transport.write(b"".join(self._outgoing))
        self._outgoing.clear()

    def _check(self) -> None:
        """No reply within the timeout to the oldest command waiting: the connection is given up."""
        self._watchdog = None
        if self.closed or not self._waiting or self._timeout is None:
            return
        overdue = self._waiting[0][1] + self._timeout - self._loop.time()
        if overdue <= 0:
            self._fail(redis_errors.TimeoutError("Timeout reading from Redis"), first=True)
        else:
            self._watchdog = self._loop.call_later(overdue, self._check)

    def _fail(self, error: redis_errors.RedisError, *, first: bool = False) -> None:
        """Closes the connection; the oldest command gets `error` when `first`, every other one waiting a
        ConnectionError (it may or may not have run)."""
        if self.closed:
            return
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._outgoing.clear()
        lost = redis_errors.ConnectionError(f"Connection to Redis closed: {error}")
        while self._waiting:
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(error if first else lost)
            first = False
        if self._transport is not None:
            self._transport.close()

    def close(self) -> None:
        self._fail(redis_errors.ConnectionError("Connection to Redis closed by the cart service"))


class ScriptRunner:
    """Runs Lua scripts (EVALSHA, EVAL when Redis lost its script cache) over one multiplexed connection,
    opened on first use and again after it is lost."""

    def __init__(self, redis: Redis) -> None:
        #: A connection object of the runtime's client, never connected: its settings are ours.
        self._settings: AbstractConnection = redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        self._link: _Link | None = None
        self._opening: asyncio.Future[_Link] | None = None
        self._closed = False
        # the attributes the runtime's Redis spans carry (service_runtime.telemetry.instrument_redis)
        self._attributes = telemetry.redis_attributes(redis)
        self._attributes["db.operation.name"] = "EVALSHA"

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """The script's reply (bytes, ints and lists of them, as hiredis parses them)."""
        span = None
        if trace.get_current_span().is_recording():  # as the runtime's Redis spans: only in a recorded trace
            attributes = dict(self._attributes)
            attributes["db.query.text"] = "EVALSHA" + " ?" * (2 + len(keys) + len(args))
            span = telemetry.tracer().start_span("EVALSHA", kind=SpanKind.CLIENT, attributes=attributes)
        try:
            try:
                return await self._command(script.evalsha(keys, args))
            except redis_errors.NoScriptError:
                return await self._command(script.eval(keys, args))
        except BaseException as error:
            if span is not None and span.is_recording():
                telemetry.fail(span, type(error).__name__)
            raise
        finally:
            if span is not None:
                span.end()

    async def _command(self, payload: bytes) -> Any:
        link = self._link
        if link is None or link.closed:
            if self._closed:
                raise redis_errors.ConnectionError("the cart's Redis connection is closed: the service is stopping")
            link = await self._open()
        return await link.send(payload)

    async def _open(self) -> _Link:
        """The live connection, opened by the first caller to need one while the others wait for it."""
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._connect())
            self._opening.add_done_callback(self._opened)
        return await asyncio.shield(self._opening)

    def _opened(self, opening: asyncio.Future[_Link]) -> None:
        self._opening = None
        if not opening.cancelled() and opening.exception() is None:
            self._link = opening.result()
            if self._closed:  # opened while the runner was being closed: not kept
                self.close()

    async def _connect(self) -> _Link:
        settings = self._settings
        loop = asyncio.get_running_loop()
        link = _Link(settings.socket_timeout)
        try:
            async with asyncio.timeout(settings.socket_connect_timeout):
                if isinstance(settings, UnixDomainSocketConnection):
                    await loop.create_unix_connection(lambda: link, settings.path)
                elif isinstance(settings, SSLConnection):
                    await loop.create_connection(
                        lambda: link, settings.host, settings.port, ssl=settings.ssl_context.get()
                    )
                elif isinstance(settings, Connection):
                    await loop.create_connection(lambda: link, settings.host, settings.port)
                else:
                    raise redis_errors.ConnectionError(f"unsupported Redis connection {type(settings).__name__}")
                await self._handshake(link)
        except TimeoutError:
            link.close()
            raise redis_errors.TimeoutError("Timeout connecting to Redis") from None
        except OSError as error:
            link.close()
            raise redis_errors.ConnectionError(f"Error connecting to Redis: {error}") from None
        except BaseException:
            link.close()
            raise
        return link

    async def _handshake(self, link: _Link) -> None:
        settings = self._settings
        provider = settings.credential_provider
        if provider is None and (settings.username or settings.password):
            provider = UsernamePasswordCredentialProvider(settings.username, settings.password)
        replies = []
        if provider is not None:
            replies.append(link.send(pack("AUTH", *(await provider.get_credentials_async()))))
        if settings.db:
            replies.append(link.send(pack("SELECT", settings.db)))
        if settings.client_name:
            replies.append(link.send(pack("CLIENT", "SETNAME", settings.client_name)))
        for reply in replies:
            await reply

    def close(self) -> None:
        """Closes the connection; the runner opens none after this (its commands fail: ConnectionError)."""
        self._closed = True
        if self._link is not None:
            self._link.close()
            self._link = None

    async def hold(self) -> None:
        """A background worker of the service: closes the connection when the service stops."""
        try:
            await asyncio.Event().wait()
        finally:
            self.close()
