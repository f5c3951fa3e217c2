"""How a service describes itself to the runtime: its `ServiceSpec`, and the `Assembly` its composition
root builds from the shared `Infrastructure`."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import grpc
from redis.asyncio import Redis

from service_runtime.channels import Channels
from service_runtime.database import Database
from service_runtime.keyspace import KeySpace
from service_runtime.settings import CommonSettings


class HasCommonSettings(Protocol):
    @property
    def common(self) -> CommonSettings: ...


S = TypeVar("S", bound=HasCommonSettings)


class Need(enum.Enum):
    """How much a service needs a dependency, which decides what its outage does to readiness."""

    #: The service cannot serve without it: health is NOT_SERVING while it is down.
    REQUIRED = "required"
    #: Used when it answers (a cache): an outage degrades the service, health stays SERVING.
    OPTIONAL = "optional"
    #: Never used: not probed.
    UNUSED = "unused"


@dataclass(frozen=True)
class Infrastructure:
    """Shared clients built by the runtime for a service's composition root."""

    database: Database
    redis: Redis
    keys: KeySpace
    channels: Channels


@dataclass(frozen=True)
class Assembly:
    """What a composition root hands back: how to register its servicers and what runs in the background."""

    register: Callable[[grpc.aio.Server], None]
    service_names: Sequence[str]
    background: Sequence[Callable[[], Awaitable[None]]] = field(default_factory=tuple)

    @classmethod
    def of(
        cls,
        add_to_server: Callable[[Any, grpc.aio.Server], None],
        servicer: object,
        service_name: str,
        *,
        background: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> Assembly:
        """One servicer, added with its generated `add_<Service>Servicer_to_server` function."""
        return cls(
            register=lambda server: add_to_server(servicer, server),
            service_names=[service_name],
            background=tuple(background),
        )


@dataclass(frozen=True)
class ServiceSpec(Generic[S]):
    #: Short name: ErrorInfo domain "<name>.shop", log prefix.
    name: str
    #: The PostgreSQL schema the service owns (PostgreSQL is REQUIRED by every service).
    schema: str
    #: Folder of its numbered SQL migrations, inside the service's package.
    migrations: Path
    load_settings: Callable[[Mapping[str, str]], S]
    assemble: Callable[[S, Infrastructure], Assembly]
    #: What a Redis outage means for this service's readiness.
    redis: Need = Need.REQUIRED

    @property
    def package(self) -> str:
        return self.migrations.parent.name

    @property
    def process_name(self) -> str:
        """The name it runs under everywhere else: Kubernetes, traces' service.name, PostgreSQL's
        application_name (inventory_svc → inventory-svc)."""
        return self.package.replace("_", "-")

    @property
    def error_domain(self) -> str:
        """ErrorInfo.domain of every error the service answers."""
        return f"{self.name}.shop"
