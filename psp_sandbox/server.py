"""The sandbox PSP's HTTP/JSON API (aiohttp), shaped like a real PSP's.

    POST /v1/authorizations                    {amount_minor, currency, token}   hold funds
    POST /v1/authorizations/{id}/capture       {amount_minor?}                   take all or part; the rest is released
    POST /v1/authorizations/{id}/void          {}                                release the hold
    POST /v1/refunds                           {authorization, amount_minor}     return captured money
    GET  /v1/authorizations/{id}
    GET  /v1/operations/{operation_id}         an idempotent request and its answer
    GET  /v1/operations?idempotency_key=K
    POST /v1/operations/fence                  close an unused Idempotency-Key for good
    GET  /healthz
    GET|PUT /v1/sandbox/faults                 {delay_ms, error_rate, drop_rate}: faults for every token

Every POST takes an `Idempotency-Key` header with Stripe's semantics: a replay returns the first
answer (header `Idempotent-Replayed: true`); the same key with another body is 422
(`idempotency_key_reused`); a duplicate while the first is still running is 409
(`idempotency_request_in_progress`); a key that was fenced is 409 (`idempotency_key_fenced`). A 5xx
is never recorded, so a retry with the key runs the request; so is a request whose work failed or
whose process died (its key is taken over by the next request with the same body). Declines are HTTP 402 with
`error.type = "card_error"` and a `decline_code`.

The fault switch (`/v1/sandbox/faults`, for fault drills such as `python -m chaos`) makes the whole
sandbox slow (`delay_ms` before every mutation), failing (`error_rate`: that share of mutations answer
500 unprocessed) or lossy (`drop_rate`: that share is processed, recorded, then the connection is
dropped), whatever the token; PUT `{}` clears it. Reads and /healthz are never affected.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import logging
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from aiohttp import web

from psp_sandbox.ledger import Ledger, LedgerTx, Row
from psp_sandbox.tokens import Behaviour, behaviour

Answer = tuple[int, dict[str, Any]]


@dataclass(frozen=True)
class SandboxConfig:
    #: How long a `tok_hang` request is held before it is processed.
    hang_seconds: float = 30.0
    #: Latency added to every request (zero by default).
    latency_ms: int = 0


@dataclass(frozen=True)
class Faults:
    """Faults the switch applies to every mutation (on top of what the token selects)."""

    delay_ms: int = 0
    error_rate: float = 0.0
    drop_rate: float = 0.0

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Faults:
        unknown = set(body) - {"delay_ms", "error_rate", "drop_rate"}
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
        delay = body.get("delay_ms", 0)
        if not isinstance(delay, int) or isinstance(delay, bool) or not 0 <= delay <= 600_000:
            raise BadRequest("delay_ms must be an integer from 0 to 600000")
        rates = {}
        for name in ("error_rate", "drop_rate"):
            rate = body.get(name, 0)
            if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 <= rate <= 1:
                raise BadRequest(f"{name} must be a number from 0 to 1")
            rates[name] = float(rate)
        return cls(delay_ms=delay, **rates)

    def as_json(self) -> dict[str, Any]:
        return {"delay_ms": self.delay_ms, "error_rate": self.error_rate, "drop_rate": self.drop_rate}


def _error(kind: str, code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": kind, "code": code, "message": message, **extra}}


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def authorization_json(row: Row) -> dict[str, Any]:
    return {
        "id": row["authorization_id"],
        "object": "authorization",
        "status": row["status"],
        "currency": row["currency_code"],
        "amount_minor": row["amount_minor"],
        "captured_minor": row["captured_minor"],
        "refunded_minor": row["refunded_minor"],
        "card": behaviour(row["token"]).card.as_json(),
        "created_at": _time(row["created_at"]),
        "expires_at": _time(row["expires_at"]),
    }


def operation_json(row: Row) -> dict[str, Any]:
    return {
        "id": row["operation_id"],
        "object": "operation",
        "idempotency_key": row["idempotency_key"],
        "kind": row["kind"],
        "state": row["state"],
        "http_status": row["http_status"],
        "response": row["response"],
    }


class BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _amount(body: dict[str, Any], name: str, *, required: bool) -> int | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10**12:
        raise BadRequest(f"{name} must be a positive integer of minor units")
    return value


class Sandbox:
    def __init__(self, ledger: Ledger, config: SandboxConfig) -> None:
        self._ledger = ledger
        self._config = config
        self._faults = Faults()
        self._dice = random.Random()
        #: Requests of this process in flight per idempotency key, counted from before they claim it: an
        #: in-progress claim whose key no other request here has in flight was abandoned (its request failed,
        #: or the process that took it died), and the next request with the same body takes it over.
        self._in_flight: collections.Counter[str] = collections.Counter()

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes(
            [
                web.get("/healthz", self.health),
                web.post("/v1/authorizations", self.create_authorization),
                web.post("/v1/authorizations/{id}/capture", self.capture),
                web.post("/v1/authorizations/{id}/void", self.void),
                web.post("/v1/refunds", self.refund),
                web.get("/v1/authorizations/{id}", self.get_authorization),
                web.post("/v1/operations/fence", self.fence),
                web.get("/v1/operations", self.find_operation),
                web.get("/v1/operations/{id}", self.get_operation),
                web.get("/v1/sandbox/faults", self.get_faults),
                web.put("/v1/sandbox/faults", self.set_faults),
            ]
        )
        return app

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    # The fault switch

    async def get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self._faults.as_json())

    async def set_faults(self, request: web.Request) -> web.Response:
        try:
            body = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict):
                raise BadRequest("body must be an object")
            self._faults = Faults.from_json(body)
        except json.JSONDecodeError:
            return web.json_response(_error("invalid_request_error", "invalid_json", "body is not JSON"), status=400)
        except BadRequest as bad:
            return web.json_response(_error("invalid_request_error", "parameter_invalid", bad.message), status=400)
        logging.getLogger(__name__).warning("fault switch set: %s", self._faults.as_json())
        return web.json_response(self._faults.as_json())

    # Reads

    async def get_authorization(self, request: web.Request) -> web.Response:
        row = await self._ledger.authorization(request.match_info["id"])
        if row is None:
            return web.json_response(
                _error("invalid_request_error", "resource_missing", "no such authorization"), status=404
            )
        return web.json_response(authorization_json(row))

    async def get_operation(self, request: web.Request) -> web.Response:
        return self._operation_answer(await self._ledger.operation(operation_id=request.match_info["id"]))

    async def find_operation(self, request: web.Request) -> web.Response:
        key = request.query.get("idempotency_key", "")
        if not key:
            return web.json_response(
                _error("invalid_request_error", "parameter_missing", "idempotency_key is required"), status=400
            )
        return self._operation_answer(await self._ledger.operation(key=key))

    @staticmethod
    def _operation_answer(row: Row | None) -> web.Response:
        if row is None:
            return web.json_response(
                _error("invalid_request_error", "resource_missing", "no such operation"), status=404
            )
        return web.json_response(operation_json(row))

    async def fence(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key", "")
        if not key:
            return web.json_response(
                _error("invalid_request_error", "idempotency_key_missing", "Idempotency-Key is required"), status=400
            )
        return web.json_response(operation_json(await self._ledger.fence(key)))

    # Mutations

    async def create_authorization(self, request: web.Request) -> web.StreamResponse:
        return await self._idempotent(request, "authorize", self._authorize)

    async def capture(self, request: web.Request) -> web.StreamResponse:
        return await self._idempotent(request, "capture", self._capture)

    async def void(self, request: web.Request) -> web.StreamResponse:
        return await self._idempotent(request, "void", self._void)

    async def refund(self, request: web.Request) -> web.StreamResponse:
        return await self._idempotent(request, "refund", self._refund)

    async def _idempotent(self, request: web.Request, kind: str, run: Any) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key", "")
        if not key or len(key) > 255:
            return web.json_response(
                _error("invalid_request_error", "idempotency_key_missing", "Idempotency-Key is required"), status=400
            )
        try:
            body = await request.json() if request.can_read_body else {}
        except json.JSONDecodeError:
            return web.json_response(_error("invalid_request_error", "invalid_json", "body is not JSON"), status=400)
        if not isinstance(body, dict):
            return web.json_response(
                _error("invalid_request_error", "invalid_json", "body must be an object"), status=400
            )
        faults = self._faults
        if self._config.latency_ms or faults.delay_ms:
            await asyncio.sleep((self._config.latency_ms + faults.delay_ms) / 1000)
        canonical = json.dumps({"path": request.path, "body": body}, sort_keys=True, separators=(",", ":"))
        request_hash = hashlib.sha256(canonical.encode()).hexdigest()
        prepared = await self._prepare(request, kind, body)
        if faults.error_rate or faults.drop_rate:
            roll = self._dice.random()
            prepared = Sandbox._Prepared(
                server_error=prepared.server_error or roll < faults.error_rate,
                delay_seconds=prepared.delay_seconds,
                drop=prepared.drop or faults.error_rate <= roll < faults.error_rate + faults.drop_rate,
            )
        self._in_flight[key] += 1
        try:
            return await self._claim_and_run(request, key, kind, request_hash, prepared, run, body)
        finally:
            self._in_flight[key] -= 1
            if not self._in_flight[key]:
                del self._in_flight[key]

    async def _claim_and_run(
        self,
        request: web.Request,
        key: str,
        kind: str,
        request_hash: str,
        prepared: Sandbox._Prepared,
        run: Any,
        body: dict[str, Any],
    ) -> web.Response:
        claim = await self._ledger.claim(key, kind, request_hash)
        operation_id = claim.operation_id
        if operation_id is None:
            operation_id = await self._take_over(claim.existing, request_hash, key)
        if operation_id is None:
            replay = self._replay(await self._ledger.operation(key=key), request_hash)
            if prepared.drop and replay.status < 300:
                self._drop(request)  # the partition persists: replays are lost too
            return replay
        if prepared.server_error:
            await self._ledger.forget(operation_id)
            return web.json_response(_error("api_error", "server_error", "sandbox server error"), status=500)
        if prepared.delay_seconds:
            await asyncio.sleep(prepared.delay_seconds)
        async with self._ledger.transaction() as tx:
            try:
                status, answer = await run(tx, request, body)
            except BadRequest as bad:
                status, answer = 400, _error("invalid_request_error", "parameter_invalid", bad.message)
            answer = {**answer, "operation_id": operation_id}
            await tx.complete(operation_id, status, answer)
        if prepared.drop:
            self._drop(request)  # processed and recorded; the client never hears the answer
        return web.json_response(answer, status=status, headers={"Idempotent-Replayed": "false"})

    async def _take_over(self, existing: Row | None, request_hash: str, key: str) -> str | None:
        """The operation id of an abandoned in-progress claim with this body, now ours; else None."""
        if existing is None or existing["state"] != "in_progress" or existing["request_hash"] != request_hash:
            return None
        if self._in_flight[key] > 1:
            return None  # another request here holds it, or is about to: really in progress (409)
        operation_id = str(existing["operation_id"])
        if await self._ledger.retake(operation_id):
            logging.getLogger(__name__).warning("taking over abandoned operation %s", operation_id)
            return operation_id
        return None  # it was completed meanwhile: replay it

    @staticmethod
    def _drop(request: web.Request) -> NoReturn:
        assert request.transport is not None
        request.transport.abort()
        raise asyncio.CancelledError

    @staticmethod
    def _replay(row: Row | None, request_hash: str) -> web.Response:
        assert row is not None
        if row["state"] != "fenced" and row["request_hash"] != request_hash:
            return web.json_response(
                _error("idempotency_error", "idempotency_key_reused", "this key was used with another request"),
                status=422,
            )
        if row["state"] == "fenced":
            return web.json_response(
                _error("idempotency_error", "idempotency_key_fenced", "this Idempotency-Key was closed"), status=409
            )
        if row["state"] == "in_progress":
            return web.json_response(
                _error("idempotency_error", "idempotency_request_in_progress", "a request with this key is running"),
                status=409,
            )
        return web.json_response(row["response"], status=row["http_status"], headers={"Idempotent-Replayed": "true"})

    @dataclass(frozen=True)
    class _Prepared:
        server_error: bool = False
        delay_seconds: float = 0.0
        drop: bool = False

    async def _prepare(self, request: web.Request, kind: str, body: dict[str, Any]) -> Sandbox._Prepared:
        """The token's behaviour for this operation: errors, delays and drops happen around the ledger work."""
        token_behaviour: Behaviour | None = None
        if kind == "authorize":
            token = body.get("token")
            token_behaviour = behaviour(token) if isinstance(token, str) else None
        else:
            authorization_id = request.match_info.get("id") or body.get("authorization")
            if isinstance(authorization_id, str):
                row = await self._ledger.authorization(authorization_id)
                token_behaviour = behaviour(row["token"]) if row is not None else None
        if token_behaviour is None:
            return Sandbox._Prepared()
        delay = token_behaviour.delay_ms / 1000
        if token_behaviour.hang and kind == "authorize":
            delay = self._config.hang_seconds
        return Sandbox._Prepared(
            server_error=token_behaviour.server_error,
            delay_seconds=delay,
            drop=token_behaviour.drop_on == kind,
        )

    @staticmethod
    async def _authorize(tx: LedgerTx, request: web.Request, body: dict[str, Any]) -> Answer:
        amount = _amount(body, "amount_minor", required=True)
        currency = body.get("currency")
        token = body.get("token")
        if not isinstance(currency, str) or len(currency) != 3 or not currency.isupper():
            raise BadRequest("currency must be a 3-letter ISO 4217 code")
        if not isinstance(token, str) or not token:
            raise BadRequest("token is required")
        assert amount is not None
        chosen = behaviour(token)
        if chosen.decline_code:
            code = "invalid_token" if chosen.decline_code == "invalid_token" else "card_declined"
            return 402, _error(
                "card_error",
                code,
                "the card was declined",
                decline_code=chosen.decline_code,
                card=chosen.card.as_json(),
            )
        row = await tx.create_authorization(
            token=token,
            currency_code=currency,
            amount_minor=amount,
            lapse_seconds=chosen.lapse_seconds,
            now=datetime.now(UTC),
        )
        return 201, authorization_json(row)

    @staticmethod
    async def _locked(tx: LedgerTx, authorization_id: str) -> Row | Answer:
        row = await tx.lock_authorization(authorization_id)
        if row is None:
            return 404, _error("invalid_request_error", "resource_missing", "no such authorization")
        if row["status"] == "authorized" and row["expires_at"] <= datetime.now(UTC):
            row = await tx.update_authorization(authorization_id, status="expired", captured_minor=0, refunded_minor=0)
        return row

    @classmethod
    async def _capture(cls, tx: LedgerTx, request: web.Request, body: dict[str, Any]) -> Answer:
        amount = _amount(body, "amount_minor", required=False)
        row = await cls._locked(tx, request.match_info["id"])
        if isinstance(row, tuple):
            return row
        if row["status"] == "expired":
            return 402, _error("invalid_request_error", "authorization_expired", "the authorization has lapsed")
        if row["status"] != "authorized":
            return 409, _error(
                "invalid_request_error", f"authorization_{row['status']}", f"the authorization is {row['status']}"
            )
        amount = row["amount_minor"] if amount is None else amount
        if amount > row["amount_minor"]:
            return 400, _error("invalid_request_error", "amount_too_large", "capture exceeds the authorized amount")
        row = await tx.update_authorization(
            row["authorization_id"], status="captured", captured_minor=amount, refunded_minor=0
        )
        return 200, authorization_json(row)

    @classmethod
    async def _void(cls, tx: LedgerTx, request: web.Request, body: dict[str, Any]) -> Answer:
        row = await cls._locked(tx, request.match_info["id"])
        if isinstance(row, tuple):
            return row
        if row["status"] == "expired":
            return 402, _error("invalid_request_error", "authorization_expired", "the authorization has lapsed")
        if row["status"] == "captured":
            return 409, _error("invalid_request_error", "authorization_captured", "the authorization was captured")
        if row["status"] == "authorized":
            row = await tx.update_authorization(
                row["authorization_id"], status="voided", captured_minor=0, refunded_minor=0
            )
        return 200, authorization_json(row)

    @classmethod
    async def _refund(cls, tx: LedgerTx, request: web.Request, body: dict[str, Any]) -> Answer:
        amount = _amount(body, "amount_minor", required=True)
        authorization_id = body.get("authorization")
        if not isinstance(authorization_id, str) or not authorization_id:
            raise BadRequest("authorization is required")
        assert amount is not None
        row = await cls._locked(tx, authorization_id)
        if isinstance(row, tuple):
            return row
        if row["status"] != "captured":
            return 409, _error("invalid_request_error", "authorization_not_captured", "nothing was captured")
        if behaviour(row["token"]).refund_declined:
            return 402, _error(
                "card_error", "refund_declined", "the issuer refused the refund", decline_code="refund_declined"
            )
        if amount > row["captured_minor"] - row["refunded_minor"]:
            return 400, _error(
                "invalid_request_error", "amount_too_large", "refund exceeds what is left of the capture"
            )
        refund = await tx.create_refund(authorization_id, amount)
        await tx.update_authorization(
            authorization_id,
            status="captured",
            captured_minor=row["captured_minor"],
            refunded_minor=row["refunded_minor"] + amount,
        )
        return 201, {
            "id": refund["refund_id"],
            "object": "refund",
            "status": "succeeded",
            "authorization": authorization_id,
            "amount_minor": amount,
            "created_at": _time(refund["created_at"]),
        }
