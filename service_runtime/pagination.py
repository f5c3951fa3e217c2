"""List RPCs page the same way everywhere (AIP-158).

- `page_size`: 0 means `DEFAULT_PAGE_SIZE`; above `MAX_PAGE_SIZE` it is clamped, not refused;
  negative is INVALID_ARGUMENT.
- Page tokens are opaque and tamper-evident: a token carries where the last page ended and a
  fingerprint of the query (its filters), signed with HMAC-SHA256 under the deployment's
  `PAGE_TOKEN_SECRET`. A token that was altered, forged, issued by another RPC, or reused with other
  filters is INVALID_ARGUMENT on `page_token`; it can never select a wrong page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from service_runtime.errors import FieldViolation, InvalidArgument, Violations

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

_VERSION = 1
_SIGNATURE_BYTES = 16


def page_size(requested: int, field: str = "page_size") -> int:
    """The number of items to return for a requested page size (see the module docstring)."""
    violations = Violations()
    violations.check(requested >= 0, field, f"must not be negative (0 means {DEFAULT_PAGE_SIZE})")
    violations.raise_if_any()
    return min(requested, MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _bad_token(description: str) -> InvalidArgument:
    return InvalidArgument([FieldViolation("page_token", description)])


class PageTokens:
    """Issues and reads the page tokens of one List RPC (`purpose`, e.g. "inventory.ListProducts")."""

    def __init__(self, secret: bytes, *, purpose: str) -> None:
        self._key = hmac.new(secret, purpose.encode(), hashlib.sha256).digest()

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]

    @staticmethod
    def _fingerprint(query: Mapping[str, Any]) -> str:
        canonical = json.dumps(query, sort_keys=True, separators=(",", ":"))
        return _b64(hashlib.sha256(canonical.encode()).digest()[:12])

    def issue(self, position: Any, query: Mapping[str, Any]) -> str:
        """A token for the page after `position` (any JSON value: the last item's sort key)."""
        payload = json.dumps({"v": _VERSION, "p": position, "q": self._fingerprint(query)}, separators=(",", ":"))
        raw = payload.encode()
        return f"{_b64(raw)}.{_b64(self._sign(raw))}"

    def read(self, token: str, query: Mapping[str, Any]) -> Any:
        """The position a token continues from; None for the first page (an empty token)."""
        if not token:
            return None
        try:
            encoded_payload, encoded_signature = token.split(".", 1)
            raw, signature = _unb64(encoded_payload), _unb64(encoded_signature)
        except (ValueError, binascii.Error):
            raise _bad_token("is not a token this service issued") from None
        if not hmac.compare_digest(signature, self._sign(raw)):
            raise _bad_token("is not a token this service issued")
        content = json.loads(raw)
        if content.get("v") != _VERSION:
            raise _bad_token("has expired: start again from the first page")
        if content.get("q") != self._fingerprint(query):
            raise _bad_token("was issued for a different query")
        return content.get("p")
