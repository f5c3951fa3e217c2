"""Every statement in payment_svc/queries.sql is used by the repository, and every one it uses exists."""

from __future__ import annotations

import re
from pathlib import Path

from payment_svc.repository import PaymentStatements

ROOT = Path(__file__).resolve().parents[2] / "payment_svc"


def test_every_statement_is_used_and_every_used_statement_exists() -> None:
    defined = set(PaymentStatements.queries.statements)
    source = (ROOT / "repository.py").read_text()
    used = set(re.findall(r'self\._(?:rows|row|one)\(\s*"([a-z_]+)"', source))
    used |= set(re.findall(r'"(lock_payment|payment)" if lock else "(?:lock_payment|payment)"', source))
    used |= {"payment", "lock_payment"}
    assert used == defined, {"unused": defined - used, "missing": used - defined}
