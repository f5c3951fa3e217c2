"""The PSP client: HTTP/JSON calls with the derived Idempotency-Key, retried with backoff inside the caller's
deadline, and every way a call can end sorted into what the payment service can do with it.

- `Answered`: the PSP processed the request and said so (2xx, or a 4xx/402 business refusal). Final.
- `InProgress`: the PSP is still running the first request with this key (409): try again shortly.
- `Fenced`: the key was closed at the PSP by our reconciler: the operation never happened and never will.
- `OutcomeUnknown`: the request may have been processed (timeout, 5xx, dropped connection) and no
  retry inside the deadline told us; the reconciler settles it by looking the key up.
- `Unreachable`: no attempt reached the PSP (connection refused): nothing happened.

Retries re-send the same key, so a retry can never become a second charge. Declines are answers and
are never retried.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from opentelemetry.trace import SpanKind

from service_runtime import metrics, telemetry


@dataclass(frozen=True)
class Answered:
    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error_code(self) -> str:
        return str(self.body.get("error", {}).get("code", ""))

    @property
    def decline_code(self) -> str:
        error = self.body.get("error", {})
        return str(error.get("decline_code") or error.get("code") or "")


class PspError(Exception):
    pass


class InProgress(PspError):
    pass


class Fenced(PspError):
    pass


class OutcomeUnknown(PspError):
    pass


class Unreachable(PspError):
    pass


_BACKOFF_SECONDS = (0.05, 0.1, 0.2, 0.4, 0.8)


def _operation(path: str) -> str:
    """The operation a path names, without ids: /v1/authorizations/{id}/capture → capture."""
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return last if last in ("authorizations", "capture", "void", "refunds", "fence") else "other"


class PspClient:
    def __init__(self, base_url: str, *, timeout_seconds: float, max_connections: int = 100) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout_seconds = timeout_seconds
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections), raise_for_status=False
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, path: str, body: dict[str, Any], key: str, *, budget: float | None) -> Answered:
        """POSTs with `key`, retrying transport failures with backoff until `budget` seconds are spent.
        Traced as a CLIENT span and counted by outcome (`shop.psp.calls`); neither records the body.
        The span is not made current: nothing is traced under it (as the runtime's statement spans)."""
        operation = _operation(path)
        span = telemetry.tracer().start_span(
            f"psp POST {operation}",
            kind=SpanKind.CLIENT,
            attributes={"http.request.method": "POST", "shop.psp.operation": operation},
        )
        outcome = "error"
        try:
            answered = await self._post(path, json.dumps(body, separators=(",", ":")).encode(), key, budget=budget)
            span.set_attribute("http.response.status_code", answered.status)
            outcome = "accepted" if answered.ok else "refused"
            return answered
        except PspError as error:
            outcome = type(error).__name__.lower()
            telemetry.fail(span, outcome)
            raise
        except BaseException as error:
            telemetry.fail(span, type(error).__name__)
            raise
        finally:
            span.end()
            if metrics.enabled():
                metrics.instruments().psp_calls.add(1, {"operation": operation, "outcome": outcome})

    async def _post(self, path: str, data: bytes, key: str, *, budget: float | None) -> Answered:
        """`data` is the JSON body, encoded once for every attempt."""
        deadline = time.monotonic() + (budget if budget is not None else self._timeout_seconds * 2)
        url = self._base_url + path
        headers = {"Idempotency-Key": key, "Content-Type": "application/json"}
        reached = False
        for attempt in range(len(_BACKOFF_SECONDS) + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0.01:
                break
            try:
                timeout = aiohttp.ClientTimeout(total=min(self._timeout_seconds, remaining))
                async with self._http().post(url, data=data, headers=headers, timeout=timeout) as response:
                    raw = await response.read()
                    status = response.status
                payload = json.loads(raw) if raw.strip() else None
            except aiohttp.ClientConnectorError:
                pass  # nothing was sent
            except (TimeoutError, aiohttp.ClientError, ValueError):
                reached = True
            else:
                if status >= 500:
                    reached = True
                elif status == 409 and isinstance(payload, dict):
                    code = str(payload.get("error", {}).get("code", ""))
                    if code == "idempotency_key_fenced":
                        raise Fenced(key)
                    if code != "idempotency_request_in_progress":
                        return Answered(status, payload)
                    if not reached:
                        raise InProgress(key)  # a concurrent duplicate of ours holds the key
                    # our own earlier attempt is still running at the PSP: keep asking
                elif status == 422:
                    raise RuntimeError(f"the PSP says key {key} was used for another request")
                else:
                    return Answered(status, payload if isinstance(payload, dict) else {})
            if attempt < len(_BACKOFF_SECONDS):
                await asyncio.sleep(min(_BACKOFF_SECONDS[attempt], max(deadline - time.monotonic(), 0)))
        raise OutcomeUnknown(key) if reached else Unreachable(key)

    async def lookup(self, key: str) -> dict[str, Any] | None:
        """The PSP's record of the request sent with `key` (its state and answer), or None if it has none."""
        try:
            timeout = aiohttp.ClientTimeout(total=self._timeout_seconds)
            async with self._http().get(
                f"{self._base_url}/v1/operations", params={"idempotency_key": key}, timeout=timeout
            ) as response:
                if response.status == 404:
                    return None
                if response.status != 200:
                    raise OutcomeUnknown(key)
                found: dict[str, Any] = await response.json()
                return found
        except (TimeoutError, aiohttp.ClientError) as error:
            raise OutcomeUnknown(key) from error

    async def fence(self, key: str) -> dict[str, Any]:
        """Closes `key` at the PSP unless a request used it; returns the key's record either way."""
        try:
            timeout = aiohttp.ClientTimeout(total=self._timeout_seconds)
            async with self._http().post(
                f"{self._base_url}/v1/operations/fence", headers={"Idempotency-Key": key}, timeout=timeout
            ) as response:
                if response.status != 200:
                    raise OutcomeUnknown(key)
                found: dict[str, Any] = await response.json()
                return found
        except (TimeoutError, aiohttp.ClientError) as error:
            raise OutcomeUnknown(key) from error
