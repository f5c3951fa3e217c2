"""devstack's own settings, read from the environment in one place.

DATABASE_URL / REDIS_URL   use these servers instead of detecting local ones
DEVSTACK_EMBEDDED=1        always start private PostgreSQL and Redis (ignores the two above)
DEVSTACK_PORT_BASE         first service port (default 50050); service i listens on base + i
DEVSTACK_STATE_DIR         where private server data and logs live (default .devstack/ in the repo)
DEVSTACK_START_TIMEOUT     seconds for every service to report SERVING (default 60)
DEVSTACK_POSTGRES_BIN      folder holding initdb/postgres, to use instead of the ones found
DEVSTACK_OBSERVE=1         also run Prometheus scraping every service (`make observe`; devstack/observe.py)
MESH_TLS=1                 the mesh speaks mutual TLS, with a throwaway CA in <state dir>/tls (devstack/pki.py)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import DevstackError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORT_BASE = 50050


@dataclass(frozen=True)
class DevstackSettings:
    database_url: str | None
    redis_url: str | None
    embedded: bool
    port_base: int
    state_dir: Path
    start_timeout_seconds: float
    postgres_bin: Path | None
    #: DEVSTACK_OBSERVE: `up` also runs Prometheus (devstack/observe.py).
    observe: bool = False
    #: MESH_TLS: every service serves and calls with mutual TLS (certificates in `tls_dir`).
    mesh_tls: bool = False

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "tls"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> DevstackSettings:
        def text(name: str) -> str | None:
            value = environ.get(name, "").strip()
            return value or None

        embedded_flag = (text("DEVSTACK_EMBEDDED") or "0").lower()
        if embedded_flag not in ("0", "1", "true", "false", "yes", "no"):
            raise DevstackError(f"DEVSTACK_EMBEDDED={embedded_flag!r}: use 1 (private servers) or 0 (detect)")
        port_base = _integer(
            text("DEVSTACK_PORT_BASE"), "DEVSTACK_PORT_BASE", DEFAULT_PORT_BASE, minimum=1024, maximum=65535
        )
        start_timeout = _integer(text("DEVSTACK_START_TIMEOUT"), "DEVSTACK_START_TIMEOUT", 60, minimum=5, maximum=3600)
        state_dir = Path(text("DEVSTACK_STATE_DIR") or ROOT / ".devstack").resolve()
        postgres_bin = text("DEVSTACK_POSTGRES_BIN")
        return cls(
            database_url=text("DATABASE_URL"),
            redis_url=text("REDIS_URL"),
            embedded=embedded_flag in ("1", "true", "yes"),
            port_base=port_base,
            state_dir=state_dir,
            start_timeout_seconds=float(start_timeout),
            postgres_bin=Path(postgres_bin) if postgres_bin else None,
            observe=(text("DEVSTACK_OBSERVE") or "0").lower() in ("1", "true", "yes"),
            mesh_tls=(text("MESH_TLS") or "0").lower() in ("1", "true", "yes"),
        )


def _integer(value: str | None, name: str, default: int, *, minimum: int, maximum: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise DevstackError(f"{name}={value!r} is not a whole number") from None
    if not minimum <= number <= maximum:
        raise DevstackError(f"{name}={number} is outside {minimum}..{maximum}")
    return number
