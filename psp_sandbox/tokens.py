"""Test tokens: each selects an outcome, as a real sandbox's test cards do, and carries a card summary.

- approved: `tok_visa`, `tok_mastercard`, `tok_amex`, `tok_visa_debit`;
- declined (HTTP 402): `tok_decline_insufficient_funds`, `tok_decline_expired_card`,
  `tok_decline_incorrect_cvc`, `tok_decline_fraud`, `tok_decline_generic`;
- `tok_psp_error`: HTTP 500 on every request, nothing processed;
- `tok_hang`: the authorization is held `PSP_HANG_SECONDS` (default 30) unanswered, then processed;
- `tok_slow_<ms>`: approved after `<ms>` milliseconds;
- `tok_drop`, `tok_drop_capture`, `tok_drop_void`, `tok_drop_refund`: that operation is processed and
  recorded, then the connection is dropped before the answer (replays of it are dropped too, as in a
  lasting partition; `GET /v1/operations` still finds it);
- `tok_lapse_<s>`: approved; the authorization lapses after `<s>` seconds (default lapse: 7 days);
- `tok_refund_decline`: approved; its refunds are declined.

Any other token is declined as `invalid_token`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_LAPSE_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class Card:
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    funding: str

    def as_json(self) -> dict[str, object]:
        return {
            "brand": self.brand,
            "last4": self.last4,
            "exp_month": self.exp_month,
            "exp_year": self.exp_year,
            "funding": self.funding,
        }


@dataclass(frozen=True)
class Behaviour:
    card: Card
    decline_code: str = ""
    server_error: bool = False
    hang: bool = False
    delay_ms: int = 0
    drop_on: str = ""
    lapse_seconds: int = DEFAULT_LAPSE_SECONDS
    refund_declined: bool = False


_VISA = Card("visa", "4242", 12, 2034, "credit")
_CARDS = {
    "tok_visa": _VISA,
    "tok_mastercard": Card("mastercard", "4444", 11, 2033, "credit"),
    "tok_amex": Card("amex", "8431", 10, 2032, "credit"),
    "tok_visa_debit": Card("visa", "5556", 9, 2031, "debit"),
}
_DECLINES = {
    "tok_decline_insufficient_funds": ("insufficient_funds", Card("visa", "9995", 12, 2034, "credit")),
    "tok_decline_expired_card": ("expired_card", Card("visa", "0069", 1, 2020, "credit")),
    "tok_decline_incorrect_cvc": ("incorrect_cvc", Card("visa", "0127", 12, 2034, "credit")),
    "tok_decline_fraud": ("fraudulent", Card("visa", "0019", 12, 2034, "credit")),
    "tok_decline_generic": ("generic_decline", Card("visa", "0002", 12, 2034, "credit")),
}
_SLOW = re.compile(r"tok_slow_(\d{1,6})")
_LAPSE = re.compile(r"tok_lapse_(\d{1,9})")


def behaviour(token: str) -> Behaviour:
    """What the sandbox does for `token`; an unknown token is declined as `invalid_token`."""
    if token in _CARDS:
        return Behaviour(_CARDS[token])
    if token in _DECLINES:
        code, card = _DECLINES[token]
        return Behaviour(card, decline_code=code)
    if token == "tok_psp_error":
        return Behaviour(_VISA, server_error=True)
    if token == "tok_hang":
        return Behaviour(_VISA, hang=True)
    if token == "tok_refund_decline":
        return Behaviour(_VISA, refund_declined=True)
    if token == "tok_drop":
        return Behaviour(_VISA, drop_on="authorize")
    if token.startswith("tok_drop_") and token[len("tok_drop_") :] in ("capture", "void", "refund"):
        return Behaviour(_VISA, drop_on=token[len("tok_drop_") :])
    if slow := _SLOW.fullmatch(token):
        return Behaviour(_VISA, delay_ms=int(slow.group(1)))
    if lapse := _LAPSE.fullmatch(token):
        return Behaviour(_VISA, lapse_seconds=int(lapse.group(1)))
    return Behaviour(Card("unknown", "0000", 1, 2000, "unknown"), decline_code="invalid_token")
