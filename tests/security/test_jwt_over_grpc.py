"""The JWT checks of tests/unit/test_identity.py, end to end: a real service (cart) configured as production
would be (RS256, two public keys during a rollover, an issuer URL) refuses every bad shopper token over gRPC
with UNAUTHENTICATED and the documented reason before any handler runs, and serves tokens signed with
either key of the rollover."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import grpc
import jwt
import pytest

from cart_svc.__main__ import SPEC as CART
from shop.cart.v1 import cart_service_pb2 as pb
from shop.cart.v1 import cart_service_pb2_grpc as pb_grpc
from tests.rpc_errors import expect_failure
from tests.unit.test_identity import (
    NEXT_PRIVATE,
    NEXT_PUBLIC,
    PUBLIC,
    claims,
    hmac_signed_with,
    rsa_pair,
    signed,
    unsigned,
)

PRODUCTION_LIKE = {
    "AUTH_JWT_ALGORITHM": "RS256",
    "AUTH_JWT_KEYS": PUBLIC + NEXT_PUBLIC,
    "AUTH_JWT_ISSUER": "https://auth.example",
    "AUTH_JWT_AUDIENCE": "shop-checkout",
    "INVENTORY_TARGET": "127.0.0.1:9",  # CreateCart calls nothing
}
BAD_TOKENS: dict[str, tuple[Callable[[], str], str]] = {
    "expired": (lambda: signed(claims(exp=int(time.time()) - 60)), "AUTH_TOKEN_EXPIRED"),
    "not yet valid": (lambda: signed(claims(nbf=int(time.time()) + 600)), "AUTH_TOKEN_INVALID"),
    "wrong issuer": (lambda: signed(claims(iss="https://evil.example")), "AUTH_TOKEN_INVALID"),
    "wrong audience": (lambda: signed(claims(aud="another-app")), "AUTH_TOKEN_INVALID"),
    "alg none": (lambda: unsigned(claims()), "AUTH_TOKEN_INVALID"),
    "another key": (lambda: signed(claims(), key=rsa_pair()[0]), "AUTH_TOKEN_INVALID"),
    "HS256 with the RS256 public key": (lambda: hmac_signed_with(PUBLIC), "AUTH_TOKEN_INVALID"),
    "HS256 with the next public key": (lambda: hmac_signed_with(NEXT_PUBLIC), "AUTH_TOKEN_INVALID"),
    "an HS256 development token": (
        lambda: jwt.encode(claims(), "development-only-jwt-signing-key-not-for-production", algorithm="HS256"),
        "AUTH_TOKEN_INVALID",
    ),
}


@pytest.fixture
async def cart(start_service) -> AsyncIterator[pb_grpc.CartServiceAsyncStub]:
    service = await start_service(CART, **PRODUCTION_LIKE)
    channel = grpc.aio.insecure_channel(service.address)
    yield pb_grpc.CartServiceStub(channel)
    await channel.close()


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def test_every_bad_token_is_unauthenticated_over_grpc_and_both_rollover_keys_are_accepted(cart):
    request = pb.CreateCartRequest(user_id="alice")
    refused = {
        case: await expect_failure(cart.CreateCart(request, metadata=bearer(make()), timeout=10))
        for case, (make, _) in BAD_TOKENS.items()
    }
    missing = await expect_failure(cart.CreateCart(request, timeout=10))
    old_key = await cart.CreateCart(request, metadata=bearer(signed(claims())), timeout=10)
    new_key = await cart.CreateCart(request, metadata=bearer(signed(claims(), key=NEXT_PRIVATE)), timeout=10)

    for case, (_, reason) in BAD_TOKENS.items():
        assert (refused[case].code, refused[case].reason) == (grpc.StatusCode.UNAUTHENTICATED, reason), case
    assert (missing.code, missing.reason) == (grpc.StatusCode.UNAUTHENTICATED, "AUTH_TOKEN_MISSING")
    assert old_key.cart.cart_id == new_key.cart.cart_id  # one cart per user, whichever key signed her token
