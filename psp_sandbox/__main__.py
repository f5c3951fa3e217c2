"""`python -m psp_sandbox` serves the sandbox PSP; `python -m psp_sandbox migrate` applies its migrations.

Settings (environment): DATABASE_URL (postgresql://postgres@127.0.0.1:5432/shop), PSP_LISTEN_HOST
(127.0.0.1), PSP_LISTEN_PORT (8089), PSP_HANG_SECONDS (30), PSP_LATENCY_MS (0), LOG_LEVEL (INFO).
The ledger is the `psp_sandbox` schema of that database. On start it prints
`psp_sandbox listening on http://HOST:PORT` once the port is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from psp_sandbox.ledger import Ledger
from psp_sandbox.server import Sandbox, SandboxConfig
from service_runtime.migrations import apply_migrations

SCHEMA = "psp_sandbox"
MIGRATIONS = Path(__file__).with_name("migrations")


def _setting(name: str, default: str) -> str:
    return os.environ.get(name) or default


async def serve(database_url: str, host: str, port: int, config: SandboxConfig) -> None:
    await apply_migrations(database_url, schema=SCHEMA, directory=MIGRATIONS)
    pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
        database_url, min_size=2, max_size=20, kwargs={"autocommit": True}, open=False
    )
    await pool.open(wait=True)
    runner = web.AppRunner(Sandbox(Ledger(pool), config).app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    print(f"psp_sandbox listening on http://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await pool.close()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=_setting("LOG_LEVEL", "INFO"), format="%(asctime)s psp_sandbox %(levelname)s %(message)s")
    database_url = _setting("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/shop")
    if argv[:1] == ["migrate"]:
        asyncio.run(apply_migrations(database_url, schema=SCHEMA, directory=MIGRATIONS))
        return 0
    try:
        port = int(_setting("PSP_LISTEN_PORT", "8089"))
        config = SandboxConfig(
            hang_seconds=float(_setting("PSP_HANG_SECONDS", "30")), latency_ms=int(_setting("PSP_LATENCY_MS", "0"))
        )
    except ValueError as error:
        print(f"psp_sandbox: bad setting: {error}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(database_url, _setting("PSP_LISTEN_HOST", "127.0.0.1"), port, config))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
