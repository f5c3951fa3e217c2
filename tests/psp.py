"""The sandbox PSP as a real process for tests: `python -m psp_sandbox` on a free port, its ledger in the
test's own database (schema `psp_sandbox`, migrated by the process at start).

Other tests import it (the gateway and order tests need a card network too):

    from tests.psp import Psp, start_psp
    psp = await start_psp(database_url, PSP_HANG_SECONDS="2")
    ...
    await psp.stop()

`Psp` also reads the PSP's own ledger, so tests count charges from the PSP's side.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

_LISTENING = "psp_sandbox listening on "


@dataclass
class Psp:
    base_url: str
    database_url: str
    process: asyncio.subprocess.Process

    async def _rows(self, query: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        async with (
            await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as connection,
            connection.cursor(row_factory=dict_row) as cursor,
        ):
            await cursor.execute(query, params)
            return list(await cursor.fetchall())

    async def authorizations(self) -> list[dict[str, Any]]:
        """Every authorization the PSP holds or held, oldest first."""
        return await self._rows("SELECT * FROM psp_sandbox.authorizations ORDER BY created_at")

    async def refunds(self) -> list[dict[str, Any]]:
        return await self._rows("SELECT * FROM psp_sandbox.refunds ORDER BY created_at")

    async def operations(self) -> list[dict[str, Any]]:
        return await self._rows("SELECT * FROM psp_sandbox.operations ORDER BY created_at")

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def start_psp(database_url: str, **env: str) -> Psp:
    """Starts the sandbox on 127.0.0.1 and a free port; returns once it accepts requests."""
    environ = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PSP_LISTEN_HOST": "127.0.0.1",
        "PSP_LISTEN_PORT": "0",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "psp_sandbox", env=environ, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        while True:
            line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            if not line:
                raise RuntimeError(f"psp_sandbox exited with {await process.wait()} before listening")
            if line.startswith(_LISTENING):
                return Psp(line[len(_LISTENING) :].strip(), database_url, process)
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
