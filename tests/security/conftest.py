"""Security tests use the hostile-input tests' mesh (tests/hostile/conftest.py)."""

from tests.hostile.conftest import mesh  # noqa: F401  (fixture)
from tests.integration.gateway.conftest import shop  # noqa: F401  (fixture)
