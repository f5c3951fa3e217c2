"""Who is calling: an end user (a signed JWT), a mesh service (a trusted caller), or nobody.

**End users** send `authorization: Bearer <JWT>` (the BFF passes the shopper's token on). The token is
verified with PyJWT against the configured keys (`AUTH_JWT_KEYS`, several during a key rollover),
algorithm (`AUTH_JWT_ALGORITHM`: exactly one is accepted, so `alg: none` and key confusion such as
HS256 signed with an RS256 public key are refused), issuer and audience, and must carry `exp`. Its
`sub` names a signed-in customer; an anonymous shopper's token carries `sid` (a session id) instead.

**Trusted callers** are the mesh's own services (the gateway, workers, operator tools). Where mutual
TLS is configured (service_runtime.tls), identity comes from the verified client certificate: its URI
SAN `spiffe://shop/<service>` (`peer_service`), and service tokens are refused. Otherwise a mesh
service proves itself with a short-lived **service token** in `x-shop-service-token`: a JWT
(HS256) signed with the mesh's shared `SERVICE_TOKEN_SECRET`, whose `sub` is the calling service and
whose audience is "shop-mesh". `service_runtime.channels` attaches one to every outbound call, so a
service never handles it by hand.

`identify` (which `service_runtime.inbound` runs around every served method) verifies whatever a call
presents before any handler runs (a bad token is UNAUTHENTICATED with reason `AUTH_TOKEN_INVALID` or
`AUTH_TOKEN_EXPIRED`, whoever the RPC is for) and makes the `Caller` available to the handler through
`current_caller()`. Handlers then ask for what the RPC needs: `require_customer()` (a user or a session;
data is scoped to `caller.owner`) or `require_trusted()` (PERMISSION_DENIED for anyone else).
"""

from __future__ import annotations

import contextvars
import enum
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import jwt

from service_runtime import errors

AUTHORIZATION = "authorization"
SERVICE_TOKEN = "x-shop-service-token"
MESH_AUDIENCE = "shop-mesh"
SERVICE_TOKEN_LIFETIME_SECONDS = 300
#: Tolerated clock difference between machines when checking exp/nbf/iat.
LEEWAY_SECONDS = 5


class CallerKind(enum.Enum):
    ANONYMOUS = "anonymous"  # presented nothing
    CUSTOMER = "customer"  # a signed-in user: JWT with `sub`
    SESSION = "session"  # an anonymous shopper: JWT with `sid` and no `sub`
    SERVICE = "service"  # a mesh service: a valid service token (or, with TLS, client certificate)


@dataclass(frozen=True)
class Caller:
    kind: CallerKind
    #: The user id (CUSTOMER), session id (SESSION) or service name (SERVICE); "" when ANONYMOUS.
    subject: str = ""
    #: A CUSTOMER's token that also names the anonymous session it signed in from (`sid` beside `sub`):
    #: that session's id, e.g. for the cart's sign-in merge; "" otherwise.
    session: str = ""

    @property
    def owner(self) -> str:
        """What a customer's data is keyed by: "user:<sub>" or "session:<sid>"."""
        if self.kind is CallerKind.CUSTOMER:
            return f"user:{self.subject}"
        if self.kind is CallerKind.SESSION:
            return f"session:{self.subject}"
        return ""

    @property
    def trusted(self) -> bool:
        return self.kind is CallerKind.SERVICE


ANONYMOUS = Caller(CallerKind.ANONYMOUS)
_current: contextvars.ContextVar[Caller] = contextvars.ContextVar("caller", default=ANONYMOUS)


def current_caller() -> Caller:
    return _current.get()


def require_customer() -> Caller:
    """The calling shopper (signed in or anonymous session); UNAUTHENTICATED when there is none."""
    caller = current_caller()
    if caller.kind not in (CallerKind.CUSTOMER, CallerKind.SESSION):
        raise errors.Unauthenticated("this call needs a customer's token", reason="AUTH_TOKEN_MISSING")
    return caller


def require_trusted() -> Caller:
    """A mesh service; PERMISSION_DENIED for customers, UNAUTHENTICATED for no identity at all."""
    caller = current_caller()
    if caller.kind is CallerKind.ANONYMOUS:
        raise errors.Unauthenticated("this call is for mesh services only", reason="AUTH_TOKEN_MISSING")
    if not caller.trusted:
        raise errors.PermissionDenied("this call is for mesh services only", reason="TRUSTED_CALLER_REQUIRED")
    return caller


def _invalid(message: str) -> errors.Unauthenticated:
    return errors.Unauthenticated(message, reason="AUTH_TOKEN_INVALID")


@dataclass(frozen=True)
class IdentityConfig:
    """How tokens are verified and minted; built from `CommonSettings` by the runtime."""

    #: The one algorithm end-user tokens may use: "HS256", "RS256" or "ES256".
    jwt_algorithm: str
    #: Verification keys (shared secrets for HS256, PEM public keys otherwise); any one may match.
    jwt_keys: Sequence[str]
    jwt_issuer: str
    jwt_audience: str
    #: Shared secret of the mesh's service tokens.
    service_token_secret: str
    #: This service's name, the `sub` of the service tokens it sends.
    service_name: str
    #: Mutual TLS is configured (service_runtime.tls): a trusted caller is proved by its client certificate
    #: (`peer_service`), and service tokens are refused.
    mtls: bool = False


class Verifier:
    """Verifies tokens, and remembers the ones it verified (see `_remembered`): a shopper's token and a
    peer service's token come with every call, and checking the same signature again on each one was a
    large share of a small RPC's CPU time."""

    #: Most verified tokens remembered; the oldest are forgotten first.
    CACHE_SIZE = 4096

    def __init__(self, config: IdentityConfig, *, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._clock = clock
        #: raw token → (caller, time after which the token is expired): only tokens that verified.
        #: An OrderedDict: forgetting the oldest is popitem(last=False), O(1); `del d[next(iter(d))]` on a
        #: plain dict scans the deleted slots at its front, ~60 µs a call once the cache is full.
        self._verified: OrderedDict[tuple[bool, str], tuple[Caller, float]] = OrderedDict()

    def _remembered(self, service: bool, token: str) -> Caller | None:
        """The caller of a token verified before, while it has not expired (`exp` plus the same leeway
        `jwt.decode` allows); an expired one is forgotten and verified again (and refused as expired)."""
        entry = self._verified.get((service, token))
        if entry is None:
            return None
        caller, expires_at = entry
        if self._clock() > expires_at:
            del self._verified[(service, token)]
            return None
        return caller

    def _remember(self, service: bool, token: str, caller: Caller, claims: dict[str, Any]) -> Caller:
        expiry = claims.get("exp")
        if isinstance(expiry, int | float):
            if len(self._verified) >= self.CACHE_SIZE:
                self._verified.popitem(last=False)
            self._verified[(service, token)] = (caller, float(expiry) + LEEWAY_SECONDS)
        return caller

    @property
    def mtls(self) -> bool:
        return self._config.mtls

    def customer(self, token: str) -> Caller:
        """Verifies an end user's JWT; raises UNAUTHENTICATED for anything wrong with it."""
        known = self._remembered(False, token)
        if known is not None:
            return known
        claims = self._decode(
            token,
            keys=self._config.jwt_keys,
            algorithm=self._config.jwt_algorithm,
            issuer=self._config.jwt_issuer,
            audience=self._config.jwt_audience,
        )
        subject, session = claims.get("sub"), claims.get("sid")
        if isinstance(subject, str) and 0 < len(subject) <= 128:
            signed_in_from = session if isinstance(session, str) and 0 < len(session) <= 128 else ""
            return self._remember(False, token, Caller(CallerKind.CUSTOMER, subject, signed_in_from), claims)
        if subject is None and isinstance(session, str) and 0 < len(session) <= 128:
            return self._remember(False, token, Caller(CallerKind.SESSION, session), claims)
        raise _invalid("the token names no user (sub) or session (sid)")

    def service(self, token: str) -> Caller:
        known = self._remembered(True, token)
        if known is not None:
            return known
        claims = self._decode(
            token,
            keys=[self._config.service_token_secret],
            algorithm="HS256",
            issuer=None,
            audience=MESH_AUDIENCE,
        )
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise _invalid("the service token names no service")
        return self._remember(True, token, Caller(CallerKind.SERVICE, subject), claims)

    @staticmethod
    def _decode(
        token: str, *, keys: Sequence[str], algorithm: str, issuer: str | None, audience: str
    ) -> dict[str, Any]:
        last: jwt.InvalidTokenError = jwt.InvalidSignatureError("no key")
        for key in keys:
            try:
                return jwt.decode(
                    token,
                    key,
                    algorithms=[algorithm],
                    audience=audience,
                    issuer=issuer,
                    leeway=LEEWAY_SECONDS,
                    options={"require": ["exp"]},
                )
            except jwt.ExpiredSignatureError:
                raise errors.Unauthenticated("the token has expired", reason="AUTH_TOKEN_EXPIRED") from None
            except jwt.InvalidSignatureError as error:
                last = error  # perhaps the next key (a rollover) signed it
            except jwt.InvalidTokenError as error:
                raise _invalid(f"the token is not valid: {_reason(error)}") from None
        raise _invalid(f"the token is not valid: {_reason(last)}")


def _reason(error: jwt.InvalidTokenError) -> str:
    return str(error) or type(error).__name__


class ServiceTokens:
    """Mints this service's token for outbound calls, renewed well before it expires."""

    def __init__(
        self,
        config: IdentityConfig,
        *,
        clock: Callable[[], float] = time.time,
        lifetime_seconds: int = SERVICE_TOKEN_LIFETIME_SECONDS,
    ) -> None:
        self._config = config
        self._clock = clock
        self._lifetime = lifetime_seconds
        self._token = ""
        self._renew_at = 0.0

    def current(self) -> str:
        now = self._clock()
        if now >= self._renew_at:
            self._token = jwt.encode(
                {
                    "sub": self._config.service_name,
                    "aud": MESH_AUDIENCE,
                    "iat": int(now),
                    "exp": int(now) + self._lifetime,
                },
                self._config.service_token_secret,
                algorithm="HS256",
            )
            self._renew_at = now + self._lifetime / 2
        return self._token


def mint_customer_token(
    config: IdentityConfig,
    *,
    sub: str | None = None,
    sid: str | None = None,
    lifetime_seconds: int = 600,
    clock: Callable[[], float] = time.time,
) -> str:
    """A shopper's JWT signed with the first configured key: for development tools and tests, which
    share the mesh's HS256 secret (a deployment with RS256/ES256 verifies with public keys only, and
    its identity provider mints the tokens)."""
    if config.jwt_algorithm != "HS256":
        raise ValueError(f"tokens can be minted here with HS256 shared secrets only, not {config.jwt_algorithm}")
    now = int(clock())
    claims: dict[str, object] = {
        "iss": config.jwt_issuer,
        "aud": config.jwt_audience,
        "iat": now,
        "exp": now + lifetime_seconds,
    }
    if sub is not None:
        claims["sub"] = sub
    if sid is not None:
        claims["sid"] = sid
    return jwt.encode(claims, config.jwt_keys[0], algorithm=config.jwt_algorithm)


#: A mesh workload's certificate names it `spiffe://shop/<name>` (one path segment: an edge client such
#: as a BFF gets a longer path, e.g. spiffe://shop/edge/bff, and is not a trusted caller).
MESH_SPIFFE_ID = re.compile(r"spiffe://shop/([a-z0-9][a-z0-9-]{0,62})")


def peer_service(auth_context: Mapping[str, Iterable[bytes]]) -> str | None:
    """The mesh service a verified client certificate names (its SPIFFE id), or None."""
    for value in auth_context.get("peer_spiffe_id", ()):
        match = MESH_SPIFFE_ID.fullmatch(value.decode("utf-8", "replace"))
        if match:
            return match.group(1)
    return None


def caller_from_metadata(
    verifier: Verifier, metadata: Sequence[tuple[str, str | bytes]], *, peer: str | None = None
) -> Caller:
    """The caller a request proves. A mesh service's client certificate (`peer`, under mutual TLS) or
    service token wins over a user's bearer token (the gateway forwards the shopper's token on calls it
    makes as a trusted service). Under mutual TLS a service token is refused: only a certificate proves
    a service there."""
    if peer is not None:
        return Caller(CallerKind.SERVICE, peer)
    values = {key: value for key, value in metadata if isinstance(value, str)}
    service_token = values.get(SERVICE_TOKEN)
    if service_token:
        if verifier.mtls:
            raise _invalid("service tokens are not accepted here: a mesh service presents its certificate")
        return verifier.service(service_token)
    authorization = values.get(AUTHORIZATION)
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _invalid("authorization must be 'Bearer <token>'")
        return verifier.customer(token.strip())
    return ANONYMOUS


def identify(
    verifier: Verifier, context: grpc.aio.ServicerContext[Any, Any], metadata: Sequence[tuple[str, str | bytes]]
) -> contextvars.Token[Caller]:
    """Makes the caller a served call proves (`metadata`: its invocation metadata) the current caller;
    raises Unauthenticated for a bad token. Hand the token back to `forget` when the call ends."""
    peer = peer_service(context.auth_context()) if verifier.mtls else None
    return _current.set(caller_from_metadata(verifier, metadata, peer=peer))


def forget(token: contextvars.Token[Caller]) -> None:
    _current.reset(token)
