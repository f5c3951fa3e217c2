"""Where a server is: the `Server` record, loopback ports and connection URLs."""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from psycopg.conninfo import conninfo_to_dict

from devstack.processes import ManagedProcess

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Server:
    """A PostgreSQL or Redis the mesh talks to."""

    name: str
    #: Connection URL (for PostgreSQL: of the mesh's database).
    url: str
    #: "private" (started by devstack), "local" (found on its default port) or "DATABASE_URL"/"REDIS_URL".
    origin: str
    process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname or parts.path)


def port_is_open(port: int, host: str = LOOPBACK) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def postgres_url(port: int, database_name: str) -> str:
    return f"postgresql://postgres@{LOOPBACK}:{port}/{database_name}"


def database_of(url: str) -> str:
    return str(conninfo_to_dict(url).get("dbname") or "postgres")


def redact(url: str) -> str:
    parts = urlsplit(url)
    return url.replace(f":{parts.password}@", ":***@") if parts.password else url
