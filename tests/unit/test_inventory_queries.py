"""The inventory repository and queries.sql agree: every statement it runs exists, every statement is used."""

from __future__ import annotations

import re
from pathlib import Path

from inventory_svc.repository import InventoryStatements

REPOSITORY = Path(__file__).resolve().parents[2] / "inventory_svc" / "repository.py"


def test_every_query_the_repository_runs_is_defined_and_every_defined_query_is_run():
    source = REPOSITORY.read_text()
    defined = set(InventoryStatements.queries.statements)
    used = set(re.findall(r'_(?:rows|row|one)\(\s*"([a-z_]+)"', source))
    for locked, unlocked in re.findall(r'name = "([a-z_]+)" if lock else "([a-z_]+)"', source):
        used |= {locked, unlocked}

    assert used <= defined, used - defined
    assert defined <= used, defined - used
