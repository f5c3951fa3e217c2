"""Child processes that devstack starts, restarting them when they die, and stopping them in order.

Every child runs in a session of its own, so a Ctrl-C in the terminal reaches only devstack, which
then stops the services before the servers they depend on. Output goes to a log file whose last
lines are shown when a child dies. A child remembers how it was started, so `ProcessGroup.respawn`
starts it again the same way (same command, environment, port and log), and `Supervisor` does that
for every child that exits, with backoff, as Kubernetes restarts a container.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Coroutine, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

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
    #: How it was started, for `ProcessGroup.respawn`.
    argv: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    user: str | None = None

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
        process = ManagedProcess(
            name,
            popen,
            log_path,
            stop_signal,
            is_server,
            argv=tuple(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            user=user,
        )
        self.processes.append(process)
        self._record()
        return process

    def respawn(self, process: ManagedProcess) -> ManagedProcess:
        """Starts an exited child again as it was started (its log goes on); the new one replaces it."""
        if process.is_running():
            raise ValueError(f"{process.name} (pid {process.pid}) is still running")
        with contextlib.suppress(ValueError):
            self.processes.remove(process)
        return self.spawn(
            process.name,
            process.argv,
            log_path=process.log_path,
            env=process.env,
            cwd=process.cwd,
            user=process.user,
            stop_signal=process.stop_signal,
            append_log=True,
            is_server=process.is_server,
        )

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


def describe_exit(code: int | None) -> str:
    """`exit code 3`, `killed by SIGKILL`, or `still running`."""
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff between restarts of a child that keeps dying (Kubernetes' CrashLoopBackOff, shorter)."""

    #: Wait before the first restart; doubled for each further death in a row, up to `max_backoff_seconds`.
    initial_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    #: A child that ran this long before it died is restarted after the initial backoff again.
    reset_after_seconds: float = 30.0

    def backoff(self, deaths_in_a_row: int) -> float:
        return float(min(self.max_backoff_seconds, self.initial_backoff_seconds * 2 ** max(deaths_in_a_row - 1, 0)))


@dataclass
class _Watched:
    started_at: float
    deaths_in_a_row: int = 0
    restarts: int = 0
    restart_at: float | None = None


@dataclass
class Supervisor:
    """Restarts every watched child that exits, with backoff, and says so on the console; never returns.

    `processes` (name → child) is updated in place with each new child. `on_restart` is awaited in
    the background after each restart (e.g. to report when the service answers again).
    """

    group: ProcessGroup
    processes: MutableMapping[str, ManagedProcess]
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    on_restart: Callable[[str, ManagedProcess, float], Coroutine[Any, Any, None]] | None = None
    poll_seconds: float = 0.25
    _watched: dict[str, _Watched] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def run(self) -> NoReturn:
        loop = asyncio.get_running_loop()
        for name in self.processes:
            self._watched.setdefault(name, _Watched(started_at=loop.time()))
        while True:
            for name, process in list(self.processes.items()):
                self._look_at(name, process, loop.time())
            await asyncio.sleep(self.poll_seconds)

    def _look_at(self, name: str, process: ManagedProcess, now: float) -> None:
        watched = self._watched.setdefault(name, _Watched(started_at=now))
        if process.is_running():
            return
        if watched.restart_at is None:
            ran = now - watched.started_at
            watched.deaths_in_a_row = 1 if ran >= self.policy.reset_after_seconds else watched.deaths_in_a_row + 1
            delay = self.policy.backoff(watched.deaths_in_a_row)
            watched.restart_at = now + delay
            console.warn(
                f"{name} (pid {process.pid}) exited ({describe_exit(process.exit_code)}) after {ran:.1f} s; "
                f"restarting it in {delay:.1f} s (restart {watched.restarts + 1}; log {process.log_path})"
            )
            return
        if now < watched.restart_at:
            return
        try:
            restarted = self.group.respawn(process)
        except OSError as error:
            watched.deaths_in_a_row += 1
            delay = self.policy.backoff(watched.deaths_in_a_row)
            watched.restart_at = now + delay
            console.warn(f"{name}: restart failed ({error}); trying again in {delay:.1f} s")
            return
        self.processes[name] = restarted
        watched.restarts += 1
        watched.started_at = now
        watched.restart_at = None
        console.step(f"{name} restarted (pid {restarted.pid}, restart {watched.restarts})")
        if self.on_restart is not None:
            task = asyncio.create_task(self.on_restart(name, restarted, now))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


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
