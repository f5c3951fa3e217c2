"""Stand-ins for the truly external systems, run as their own processes beside the mesh.

The sandbox card network (`python -m psp_sandbox`, an HTTP/JSON PSP) listens on port base + 10 (50060 by
default) and keeps its ledger in the mesh database's `psp_sandbox` schema (it migrates itself at start);
the payment service finds it through PSP_BASE_URL.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Mapping

import aiohttp

from devstack.endpoints import LOOPBACK, Server
from devstack.errors import DevstackError
from devstack.processes import ManagedProcess, ProcessGroup
from devstack.settings import ROOT, DevstackSettings

PSP_PACKAGE = "psp_sandbox"
PSP_PORT_OFFSET = 10


def psp_address(port_base: int) -> str:
    return f"{LOOPBACK}:{port_base + PSP_PORT_OFFSET}"


def psp_url(port_base: int) -> str:
    return f"http://{psp_address(port_base)}"


def check_psp_port_free(port_base: int) -> None:
    port = port_base + PSP_PORT_OFFSET
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            raise DevstackError(
                f"port {port} ({PSP_PACKAGE}) is already in use on {LOOPBACK}; move the mesh with DEVSTACK_PORT_BASE"
            ) from None


def start_psp(
    group: ProcessGroup, settings: DevstackSettings, postgres: Server, overrides: Mapping[str, str] | None = None
) -> ManagedProcess:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=postgres.url,
        PSP_LISTEN_HOST=LOOPBACK,
        PSP_LISTEN_PORT=str(settings.port_base + PSP_PORT_OFFSET),
        LOG_LEVEL=os.environ.get("LOG_LEVEL", "INFO"),
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), str(ROOT / "generated"), os.environ.get("PYTHONPATH")])),
    )
    env.update(overrides or {})
    return group.spawn(
        PSP_PACKAGE,
        [sys.executable, "-m", PSP_PACKAGE],
        log_path=settings.logs_dir / f"{PSP_PACKAGE}.log",
        env=env,
        cwd=ROOT,
    )


async def wait_psp_ready(settings: DevstackSettings, process: ManagedProcess) -> str:
    """Polls GET /healthz until it answers 200; returns "ok"."""
    deadline = asyncio.get_running_loop().time() + settings.start_timeout_seconds
    async with aiohttp.ClientSession() as http:
        while True:
            if not process.is_running():
                raise DevstackError(
                    f"{PSP_PACKAGE} exited during start-up (exit code {process.exit_code})",
                    log_title=f"last lines of {process.log_path}",
                    log_tail=process.log_tail(),
                )
            try:
                async with http.get(f"{psp_url(settings.port_base)}/healthz", timeout=aiohttp.ClientTimeout(total=1)):
                    return "ok"
            except (aiohttp.ClientError, TimeoutError):
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise DevstackError(f"{PSP_PACKAGE} did not answer /healthz in {settings.start_timeout_seconds:.0f} s")
            await asyncio.sleep(0.2)
