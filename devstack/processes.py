"""Child processes that devstack starts, and stopping them in order within a time budget.

Every child runs in a session of its own, so a Ctrl-C in the terminal reaches only devstack, which
then stops the services before the servers they depend on. Output goes to a log file whose last
lines are shown when a child dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack import console, leftovers

#: How often a waiting loop looks at its children again.
POLL_SECONDS = 0.1
#: Part of the stop budget the services get before they are killed; the servers get the rest.
SERVICES_SHARE_OF_BUDGET = 0.65


@dataclass
class ManagedProcess:
    """A child process with a name, its log file and the signal that asks it to stop."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: signal.Signals = signal.SIGTERM
    #: PostgreSQL or Redis: stopped after the services that use them.
    is_server: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def is_running(self) -> bool:
        return self.popen.poll() is None

    @property
    def exit_code(self) -> int | None:
        return self.popen.poll()

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log file)"
        tail = text.rstrip().splitlines()[-lines:]
        return "\n".join(tail) if tail else "(log is empty)"

    def signal(self, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def kill_group(self) -> None:
        """SIGKILL the child and anything it started (it leads its own process group)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self.signal(signal.SIGKILL)


class ProcessGroup:
    """Starts children and remembers them, so every one of them is stopped whatever happens."""

    def __init__(self, registry: Path) -> None:
        self.processes: list[ManagedProcess] = []
        #: Where the running children are recorded, for the next run if this one is killed.
        self.registry = registry

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        append_log: bool = False,
        is_server: bool = False,
    ) -> ManagedProcess:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab" if append_log else "wb") as log:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                user=user,
                group=_primary_group(user),
                extra_groups=[] if user is not None else None,
                start_new_session=True,
            )
        process = ManagedProcess(name, popen, log_path, stop_signal, is_server)
        self.processes.append(process)
        self._record()
        return process

    def _record(self) -> None:
        leftovers.record(self.registry, [(p.name, p.pid, int(p.stop_signal)) for p in self.processes if p.is_running()])

    async def stop_all(self, *, budget_seconds: float) -> int:
        """Stops the services first, then the servers, all within the budget; returns how many were running."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        running = [p for p in self.processes if p.is_running()]
        services = [p for p in running if not p.is_server]
        servers = [p for p in running if p.is_server]
        await self.stop(services, deadline=start + budget_seconds * SERVICES_SHARE_OF_BUDGET)
        await self.stop(servers, deadline=start + budget_seconds)
        if not any(p.is_running() for p in self.processes):
            leftovers.forget(self.registry)
        return len(running)

    async def stop(self, processes: Sequence[ManagedProcess], *, deadline: float) -> None:
        """Asks each process to stop, waits until `deadline` (loop time), then SIGKILLs what is left."""
        loop = asyncio.get_running_loop()
        running = [p for p in processes if p.is_running()]
        for process in running:
            process.signal(process.stop_signal)
        while any(p.is_running() for p in running) and loop.time() < deadline:
            await asyncio.sleep(POLL_SECONDS)
        for process in running:
            if process.is_running():
                console.warn(f"{process.name} (pid {process.pid}) did not stop in time; sending SIGKILL")
                process.kill_group()
        for process in running:
            await wait_for_exit(process, timeout=2.0)


async def wait_for_exit(process: ManagedProcess, *, timeout: float) -> int | None:
    """Waits for the process to exit (reaping it); returns its exit code, or None on timeout."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    while process.is_running() and loop.time() < give_up:
        await asyncio.sleep(POLL_SECONDS)
    return process.exit_code


def _primary_group(user: str | None) -> int | None:
    if user is None:
        return None
    import pwd

    return pwd.getpwnam(user).pw_gid
