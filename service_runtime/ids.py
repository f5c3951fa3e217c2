"""New ids for the mesh's resources (orders, payments, checkouts…).

An id is `<prefix>_` and 32 lower-case letters from a random UUID, with no digit at all: every id may
travel through the payment service, which refuses any request field that looks like a card number,
and a hex id holds a run of 13+ digits often enough to fail about one checkout in 600.
"""

from __future__ import annotations

import uuid

_LETTERS = str.maketrans("0123456789", "qrstuvwxyz")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex.translate(_LETTERS)}"
