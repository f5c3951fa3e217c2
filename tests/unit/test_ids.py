"""Ids minted by the mesh can travel through the payment service's card-number scan unharmed."""

from __future__ import annotations

import re

from payment_svc.domain import contains_card_number
from service_runtime.ids import new_id


def test_new_ids_hold_no_digits_are_unique_and_never_look_like_card_numbers():
    ids = [new_id("ord") for _ in range(20_000)]

    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"ord_[a-z]{32}", value) for value in ids)
    assert not any(contains_card_number(value) for value in ids)
