"""Security tests use the hostile-input tests' mesh (tests/hostile/conftest.py), the observability tests'
in-memory span exporter, and the process's log lines as the services write them (JSON, at INFO)."""

from __future__ import annotations

from tests.hostile.conftest import mesh  # noqa: F401  (fixture)
from tests.integration.gateway.conftest import shop  # noqa: F401  (fixture)
from tests.integration.observability.conftest import log_lines, spans  # noqa: F401  (fixtures)
