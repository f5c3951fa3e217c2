"""End-user JWTs and mesh service tokens: what is accepted, and every way a token is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from service_runtime import errors
from service_runtime.identity import (
    ANONYMOUS,
    AUTHORIZATION,
    SERVICE_TOKEN,
    Caller,
    CallerKind,
    IdentityConfig,
    ServiceTokens,
    Verifier,
    caller_from_metadata,
)

SERVICE_SECRET = "a-service-token-secret-of-at-least-32-chars"


def rsa_pair() -> tuple[Any, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public_pem.decode()


PRIVATE, PUBLIC = rsa_pair()
NEXT_PRIVATE, NEXT_PUBLIC = rsa_pair()


def config(*keys: str, algorithm: str = "RS256") -> IdentityConfig:
    return IdentityConfig(
        jwt_algorithm=algorithm,
        jwt_keys=keys or (PUBLIC,),
        jwt_issuer="https://auth.example",
        jwt_audience="shop-checkout",
        service_token_secret=SERVICE_SECRET,
        service_name="gateway",
    )


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"sub": "alice", "iss": "https://auth.example", "aud": "shop-checkout", "iat": now, "exp": now + 60}
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def signed(payload: dict[str, Any], key: Any = None, algorithm: str = "RS256") -> str:
    return jwt.encode(payload, PRIVATE if key is None else key, algorithm=algorithm)


def refusal(token: str, verifier: Verifier | None = None) -> str:
    with pytest.raises(errors.Unauthenticated) as refused:
        (verifier or Verifier(config())).customer(token)
    assert refused.value.reason is not None
    return refused.value.reason


def test_a_signed_in_customer_and_an_anonymous_session_are_told_apart():
    verifier = Verifier(config())

    assert verifier.customer(signed(claims())) == Caller(CallerKind.CUSTOMER, "alice")
    session = verifier.customer(signed(claims(sub=None, sid="s-123")))
    assert session == Caller(CallerKind.SESSION, "s-123")
    assert (Caller(CallerKind.CUSTOMER, "alice").owner, session.owner) == ("user:alice", "session:s-123")


def _part(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unsigned(payload: dict[str, Any]) -> str:
    return f"{_part({'alg': 'none', 'typ': 'JWT'})}.{_part(payload)}."


def hmac_signed_with(public_pem: str) -> str:
    """The key-confusion attack: HS256 keyed with the (public) RS256 verification key. PyJWT will not
    even mint such a token, so it is put together by hand."""
    signing_input = f"{_part({'alg': 'HS256', 'typ': 'JWT'})}.{_part(claims())}"
    signature = hmac.new(public_pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_part(signature)}"


@pytest.mark.parametrize(
    ("case", "token", "reason"),
    [
        ("expired", lambda: signed(claims(exp=int(time.time()) - 60)), "AUTH_TOKEN_EXPIRED"),
        ("not yet valid", lambda: signed(claims(nbf=int(time.time()) + 600)), "AUTH_TOKEN_INVALID"),
        ("without exp", lambda: signed(claims(exp=None)), "AUTH_TOKEN_INVALID"),
        ("wrong issuer", lambda: signed(claims(iss="https://evil.example")), "AUTH_TOKEN_INVALID"),
        ("wrong audience", lambda: signed(claims(aud="another-app")), "AUTH_TOKEN_INVALID"),
        ("alg none", lambda: unsigned(claims()), "AUTH_TOKEN_INVALID"),
        ("signed with another key", lambda: signed(claims(), key=rsa_pair()[0]), "AUTH_TOKEN_INVALID"),
        ("HS256 signed with the RS256 public key", lambda: hmac_signed_with(PUBLIC), "AUTH_TOKEN_INVALID"),
        ("no user and no session", lambda: signed(claims(sub=None)), "AUTH_TOKEN_INVALID"),
        ("garbage", lambda: "not.a.jwt", "AUTH_TOKEN_INVALID"),
    ],
)
def test_a_bad_token_is_unauthenticated(case, token, reason):
    assert refusal(token()) == reason, case


def test_an_hs256_token_is_refused_where_rs256_is_configured_whatever_its_key():
    assert refusal(jwt.encode(claims(), "x" * 64, algorithm="HS256")) == "AUTH_TOKEN_INVALID"


def test_during_a_key_rollover_tokens_signed_with_either_key_are_accepted():
    rollover = Verifier(config(PUBLIC, NEXT_PUBLIC))

    assert rollover.customer(signed(claims())).subject == "alice"
    assert rollover.customer(signed(claims(sub="bob"), key=NEXT_PRIVATE)).subject == "bob"
    assert refusal(signed(claims(), key=NEXT_PRIVATE)) == "AUTH_TOKEN_INVALID"  # old verifier: new key unknown


def test_service_tokens_make_a_trusted_caller_and_are_renewed_before_they_expire():
    now = [time.time()]
    tokens = ServiceTokens(config(), clock=lambda: now[0])
    verifier = Verifier(config())

    first = tokens.current()
    caller = caller_from_metadata(verifier, [(SERVICE_TOKEN, first)])
    assert caller == Caller(CallerKind.SERVICE, "gateway") and caller.trusted
    assert tokens.current() == first
    now[0] += 200  # past half its lifetime: a new one
    assert tokens.current() != first


def test_a_service_token_signed_with_another_secret_or_a_users_token_in_its_place_is_refused():
    other = IdentityConfig("RS256", (PUBLIC,), "i", "a", "another-service-secret-of-32-characters", "evil")
    with pytest.raises(errors.Unauthenticated):
        caller_from_metadata(Verifier(config()), [(SERVICE_TOKEN, ServiceTokens(other).current())])
    with pytest.raises(errors.Unauthenticated):
        caller_from_metadata(Verifier(config()), [(SERVICE_TOKEN, signed(claims(aud="shop-mesh")))])


def test_metadata_without_tokens_is_anonymous_and_a_malformed_header_is_refused():
    verifier = Verifier(config())
    assert caller_from_metadata(verifier, []) == ANONYMOUS
    assert caller_from_metadata(verifier, [(AUTHORIZATION, f"Bearer {signed(claims())}")]).subject == "alice"
    with pytest.raises(errors.Unauthenticated):
        caller_from_metadata(verifier, [(AUTHORIZATION, f"Basic {signed(claims())}")])
    with pytest.raises(errors.Unauthenticated):
        caller_from_metadata(verifier, [(AUTHORIZATION, "Bearer ")])


def test_a_verified_token_is_remembered_until_it_expires_and_then_refused():
    now = [time.time()]
    verifier = Verifier(config(), clock=lambda: now[0])
    token = signed(claims(exp=int(now[0]) - 4))  # inside the 5 s leeway for about a second more
    assert verifier.customer(token) == Caller(CallerKind.CUSTOMER, "alice")

    time.sleep(1.5)  # PyJWT alone would now refuse it as expired
    assert verifier.customer(token) == Caller(CallerKind.CUSTOMER, "alice")  # remembered, not verified again

    now[0] += 10  # past exp + leeway on the verifier's clock: forgotten, verified again, refused
    assert refusal(token, verifier) == "AUTH_TOKEN_EXPIRED"


def test_a_refused_token_is_not_remembered_and_a_remembered_one_vouches_for_no_other():
    verifier = Verifier(config())
    forged = signed(claims(), key=NEXT_PRIVATE)
    assert refusal(forged, verifier) == "AUTH_TOKEN_INVALID"
    assert refusal(forged, verifier) == "AUTH_TOKEN_INVALID"

    good = signed(claims(sub="bob"))
    assert verifier.customer(good).subject == "bob"
    assert refusal(good[:-4] + "AAAA", verifier) == "AUTH_TOKEN_INVALID"  # same claims, another signature


def test_the_remembered_tokens_are_bounded():
    verifier = Verifier(config())
    verifier.CACHE_SIZE = 3
    tokens = [ServiceTokens(config(), lifetime_seconds=60 + n).current() for n in range(5)]
    for token in tokens:
        assert verifier.service(token).subject == "gateway"
    assert len(verifier._verified) == 3
