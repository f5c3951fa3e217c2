"""Identities for tests, minted with the development keys every service accepts when nothing else is
configured (service_runtime.settings): a customer's or an anonymous session's bearer token, and the
service token that makes a caller trusted.

Modules keep these as constants made at import, and a whole `make test` runs for many minutes: the
tokens live `TEST_TOKEN_LIFETIME_SECONDS` (a day), not the few minutes production tokens do. Tests of
expiry mint their own with `lifetime_seconds`."""

from __future__ import annotations

from typing import Any

import grpc

from service_runtime.identity import AUTHORIZATION, SERVICE_TOKEN, ServiceTokens, mint_customer_token
from service_runtime.settings import CommonSettings, EnvReader

Metadata = tuple[tuple[str, str], ...]
TEST_TOKEN_LIFETIME_SECONDS = 24 * 3600


def _settings() -> CommonSettings:
    return CommonSettings.from_env(EnvReader({}), service_name="tests", default_port=0)


def customer_token(
    *, sub: str | None = None, sid: str | None = None, lifetime_seconds: int = TEST_TOKEN_LIFETIME_SECONDS
) -> str:
    return mint_customer_token(_settings().identity, sub=sub, sid=sid, lifetime_seconds=lifetime_seconds)


def as_customer(user_id: str) -> Metadata:
    """Call metadata of a signed-in customer."""
    return ((AUTHORIZATION, f"Bearer {customer_token(sub=user_id)}"),)


def as_session(session_id: str) -> Metadata:
    """Call metadata of an anonymous shopper."""
    return ((AUTHORIZATION, f"Bearer {customer_token(sid=session_id)}"),)


def as_service(name: str = "gateway") -> Metadata:
    """Call metadata of a trusted mesh service."""
    settings = CommonSettings.from_env(EnvReader({}), service_name=name, default_port=0)
    tokens = ServiceTokens(settings.identity, lifetime_seconds=TEST_TOKEN_LIFETIME_SECONDS)
    return ((SERVICE_TOKEN, tokens.current()),)


class _AsService(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds a mesh service's token to every call of a channel (what the runtime's channels do)."""

    def __init__(self, name: str) -> None:
        self._metadata = as_service(name)

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        metadata = [(k, v) for k, v in (client_call_details.metadata or ()) if k != SERVICE_TOKEN]
        details = client_call_details._replace(metadata=grpc.aio.Metadata(*metadata, *self._metadata))
        return await continuation(details, request)


def trusted_channel(address: str, name: str = "gateway", **options: Any) -> grpc.aio.Channel:
    """A plaintext channel whose every call comes from the trusted mesh service `name`: for tests that
    drive a trusted-only service (inventory's stock and reservations) the way a mesh service would."""
    return grpc.aio.insecure_channel(address, interceptors=[_AsService(name)], **options)
