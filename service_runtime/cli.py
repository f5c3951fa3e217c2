"""The command line of every service: `python -m <package> [serve|migrate]`."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, Protocol, TypeVar

from service_runtime import database, logs, migrations
from service_runtime.server import serve
from service_runtime.settings import SettingsError
from service_runtime.spec import S, ServiceSpec

T = TypeVar("T")


async def _migrate(spec: ServiceSpec[S], settings: S) -> list[int]:
    return await migrations.apply_migrations(
        settings.common.database_url, schema=spec.schema, directory=spec.migrations
    )


def run_service(spec: ServiceSpec[S], argv: Sequence[str] | None = None) -> int:
    """Serves (the default) or applies migrations and exits. Returns the exit code: 2 for bad usage or
    settings (one line naming the variable), 1 when migrations cannot be applied."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else "serve"
    if command not in ("serve", "migrate") or len(args) > 1:
        print(f"usage: python -m {spec.package} [serve|migrate]", file=sys.stderr)
        return 2
    try:
        settings = spec.load_settings(os.environ)
    except SettingsError as error:
        print(f"{spec.name}: invalid setting {error}", file=sys.stderr)
        return 2
    logs.configure_logging(spec.process_name, settings.common.log_level)
    runner = _event_loop_runner()
    if command == "migrate":
        try:
            applied = runner(_migrate(spec, settings))
        except (migrations.MigrationError, OSError) as error:
            print(f"{spec.name}: migration failed: {_one_line(error)}", file=sys.stderr)
            return 1
        except Exception as error:
            if database.is_connection_error(error):
                print(f"{spec.name}: cannot reach PostgreSQL: {_one_line(error)}", file=sys.stderr)
                return 1
            raise
        print(f"{spec.name}: {len(applied)} migration(s) applied" + (f" ({applied})" if applied else ""))
        return 0
    try:
        runner(serve(spec, settings))
    except SettingsError as error:
        print(f"{spec.name}: invalid setting {error}", file=sys.stderr)
        return 2
    return 0


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


class Runner(Protocol):
    def __call__(self, main: Coroutine[Any, Any, T], /) -> T: ...


def _event_loop_runner() -> Runner:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run
    return uvloop.run
