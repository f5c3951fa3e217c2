"""A bad or missing setting stops a service at start with one line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DB_POOL_MAX_SIZE", "many"),
        ("GRPC_LISTEN_ADDRESS", "localhost"),
        ("DATABASE_URL", "mysql://nope"),
        ("RESERVATION_DEFAULT_TTL_SECONDS", "0"),
        ("LOG_LEVEL", "LOUD"),
    ],
)
def test_service_exits_with_one_line_naming_the_bad_variable(variable, value):
    environment = {**os.environ, variable: value}
    result = subprocess.run(
        [sys.executable, "-m", "inventory_svc"], env=environment, capture_output=True, text=True, timeout=30
    )

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]


def test_unknown_command_prints_usage():
    result = subprocess.run(
        [sys.executable, "-m", "inventory_svc", "dance"], capture_output=True, text=True, timeout=30
    )

    assert result.returncode == 2
    assert "usage" in result.stderr
