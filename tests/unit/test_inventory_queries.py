"""The inventory repository and queries.sql agree: every statement it runs exists, every statement is used."""

from __future__ import annotations

import re
from pathlib import Path

from inventory_svc.repository import queries

REPOSITORY = Path(__file__).resolve().parents[2] / "inventory_svc" / "repository.py"


def test_every_query_the_repository_runs_is_defined_and_every_defined_query_is_run():
    source = REPOSITORY.read_text()
    used = set(re.findall(r'_rows?\(\s*"([a-z_]+)"', source))
    for locked, unlocked in re.findall(r'name = "([a-z_]+)" if lock else "([a-z_]+)"', source):
        used |= {locked, unlocked}

    assert used <= set(queries()), used - set(queries())
    assert set(queries()) <= used, set(queries()) - used
