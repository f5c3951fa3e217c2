"""Security tests use the hostile-input tests' mesh (tests/hostile/conftest.py), the observability tests'
in-memory span exporter, and the process's log lines as the services write them (JSON, at INFO)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from service_runtime import logs
from tests.hostile.conftest import mesh  # noqa: F401  (fixture)
from tests.integration.gateway.conftest import shop  # noqa: F401  (fixture)
from tests.integration.observability.conftest import spans  # noqa: F401  (fixture)


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Every line logged at INFO or above while the test runs, formatted by the services' JSON handler."""
    stream = io.StringIO()
    handler = logs.json_handler("tests", stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)
