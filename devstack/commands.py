"""The commands: `up` (the whole mesh on this machine), `test` (pytest against real PostgreSQL and
Redis) and `reset` (an empty database for the next `up`).

Each stops everything it started, whatever happens: an error, Ctrl-C, SIGTERM or SIGHUP. Once the
mesh is up, `up` supervises it: a service, the sandbox PSP or a private server that dies is restarted
with backoff (and said so on the console); only a stop signal stops everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from devstack import console, leftovers, mesh, observe, sandboxes, servers
from devstack.endpoints import Server, redact
from devstack.errors import DevstackError
from devstack.processes import POLL_SECONDS, ManagedProcess, ProcessGroup, Supervisor
from devstack.settings import ROOT, DevstackSettings

#: Everything devstack started is gone within this many seconds of a stop request.
STOP_BUDGET_SECONDS = 9.0
MESH_DATABASE = "shop"
TEST_DATABASE = "shop_test"
#: Tests get their own Redis logical database, so a test that flushes never empties a running `make up`.
MESH_REDIS_DATABASE = 0
TEST_REDIS_DATABASE = 1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
REGISTRY_FILE = "running.json"


class StopRequest:
    """Turns the first stop signal into a cancellation of the running command; later ones only wait.

    While `redirect` is set, signals go to it instead (used to pass them on to pytest).
    """

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self.redirect: Callable[[signal.Signals], None] | None = None
        #: Set once devstack is stopping its processes: nothing may interrupt that.
        self.shutting_down = False
        self._task: asyncio.Task[Any] | None = None

    def install(self) -> None:
        self._task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self._received, signum)

    def _received(self, signum: int) -> None:
        received = signal.Signals(signum)
        if self.redirect is not None:
            self.redirect(received)
            return
        if self.signal_name is not None or self.shutting_down:
            console.detail(f"{received.name}: already stopping, a few seconds at most")
            return
        self.signal_name = received.name
        print(flush=True)
        console.step(f"{received.name} received: stopping")
        if self._task is not None:
            self._task.cancel()


async def stop_everything(group: ProcessGroup, stop: StopRequest) -> None:
    stop.shutting_down = True
    loop = asyncio.get_running_loop()
    started = loop.time()
    running = [p.name for p in group.processes if p.is_running()]
    if not running:
        return
    order = ", services first, then the private servers" if any(p.is_server for p in group.processes) else ""
    console.step(f"stopping {len(running)} process(es){order}")
    await group.stop_all(budget_seconds=STOP_BUDGET_SECONDS)
    console.detail(f"all stopped in {loop.time() - started:.1f} s")


def report(error: DevstackError) -> None:
    console.error(str(error))
    if error.log_tail:
        console.block(error.log_title or "log", error.log_tail)


async def supervise(
    state_dir: Path, work: Callable[[ProcessGroup, StopRequest], Awaitable[int]], *, code_when_stopped: int
) -> int:
    """Runs `work` with the processes it starts; stops them all afterwards, whatever happened.

    Returns work's exit code, `code_when_stopped` after a stop signal, or 1 after a DevstackError.
    """
    stop = StopRequest()
    stop.install()
    group = ProcessGroup(registry=state_dir / REGISTRY_FILE)
    try:
        await leftovers.stop_leftovers(group.registry)
        return await work(group, stop)
    except asyncio.CancelledError:
        if stop.signal_name is None:
            raise
        return code_when_stopped
    except DevstackError as error:
        report(error)
        return 1
    finally:
        await stop_everything(group, stop)


# ---------------------------------------------------------------------------------------------- up


async def up(settings: DevstackSettings) -> int:
    """Brings up the whole mesh, seeds the demo catalogue, prints the table and runs until stopped."""

    async def work(group: ProcessGroup, stop: StopRequest) -> int:
        await bring_up_and_watch(settings, group)

    return await supervise(settings.state_dir, work, code_when_stopped=0)


async def bring_up_and_watch(settings: DevstackSettings, group: ProcessGroup) -> NoReturn:
    from devstack import seed  # needs the generated stubs, which only `up` uses

    loop = asyncio.get_running_loop()
    started = loop.time()
    mesh.check_packages_exist()
    mesh.check_ports_free(settings.port_base)
    sandboxes.check_psp_port_free(settings.port_base)
    console.step("PostgreSQL and Redis")
    postgres = await servers.provide_postgres(group, settings, database_name=MESH_DATABASE)
    # Durable: a supervised restart of a private Redis keeps the carts and the event streams.
    redis = await servers.provide_redis(group, settings, database_number=MESH_REDIS_DATABASE, durable=True)
    console.step(f"applying migrations ({len(mesh.SERVICES)} services)")
    await mesh.migrate_all(group, settings, postgres, redis)
    console.step(f"starting {len(mesh.SERVICES)} services (logs in {display_path(settings.logs_dir)}/)")
    mesh.check_ports_free(settings.port_base)
    processes = mesh.start_all(group, settings, postgres, redis)
    psp = sandboxes.start_psp(group, settings, postgres)
    console.detail(f"{sandboxes.PSP_PACKAGE}: pid {psp.pid}, {sandboxes.psp_url(settings.port_base)}")
    console.step(f"waiting for every service to report SERVING (at most {settings.start_timeout_seconds:.0f} s)")
    states = await mesh.wait_until_serving(settings, processes)
    states[sandboxes.PSP_PACKAGE] = await sandboxes.wait_psp_ready(settings, psp)
    processes[sandboxes.PSP_PACKAGE] = psp
    console.step("demo catalogue")
    inventory = next(s for s in mesh.SERVICES if s.package == "inventory_svc")
    seeded = await seed.seed_catalogue(mesh.address_of(inventory, settings.port_base), mesh.tls_files(settings))
    console.detail(
        f"{len(seed.DEMO_CATALOGUE)} products ({seeded.products_created} new), "
        f"{seeded.receipts_recorded} stock receipt(s) recorded "
        f"({len(seed.DEMO_CATALOGUE) - seeded.receipts_recorded} already there)"
    )
    console.step(f"mesh is up: {len(mesh.SERVICES)} services SERVING after {loop.time() - started:.1f} s")
    print_mesh_table(settings, processes, states, postgres, redis)
    await observe.announce(group, settings)
    console.step("press Ctrl-C to stop everything (a process that dies is restarted)")
    watched: dict[str, ManagedProcess] = dict(processes)
    for server in (postgres, redis):
        if server.process is not None:
            watched[server.name] = server.process

    async def announce(name: str, process: ManagedProcess, restarted_at: float) -> None:
        if name == sandboxes.PSP_PACKAGE:
            with contextlib.suppress(DevstackError):
                await sandboxes.wait_psp_ready(settings, process)
                console.detail(f"{name}: answering again, {loop.time() - restarted_at:.1f} s after the restart")
            return
        if name not in {s.package for s in mesh.SERVICES}:
            return
        took = await mesh.wait_until_serving_again(settings, name, process, timeout=settings.start_timeout_seconds)
        if took is not None:
            console.detail(f"{name}: SERVING again, {loop.time() - restarted_at:.1f} s after the restart")

    await Supervisor(group, watched, on_restart=announce).run()


def print_mesh_table(
    settings: DevstackSettings,
    processes: dict[str, ManagedProcess],
    states: dict[str, str],
    postgres: Server,
    redis: Server,
) -> None:
    rows = [
        [s.package, mesh.address_of(s, settings.port_base), states[s.package], str(processes[s.package].pid)]
        for s in mesh.SERVICES
    ]
    if sandboxes.PSP_PACKAGE in processes:
        psp = processes[sandboxes.PSP_PACKAGE]
        rows.append(
            [sandboxes.PSP_PACKAGE, sandboxes.psp_url(settings.port_base), states[sandboxes.PSP_PACKAGE], str(psp.pid)]
        )
    for server in (postgres, redis):
        rows.append([server.name, server.address, server.origin, str(server.process.pid) if server.process else "-"])
    print(flush=True)
    console.table(["SERVICE", "ADDRESS", "HEALTH", "PID"], rows)
    print(flush=True)
    console.detail(f"DATABASE_URL={redact(postgres.url)}")
    console.detail(f"REDIS_URL={redact(redis.url)}")
    console.detail(f"logs: {display_path(settings.logs_dir)}/<service>.log")
    print(flush=True)


def display_path(path: os.PathLike[str] | str) -> str:
    try:
        return os.path.relpath(path, os.getcwd()) if str(path).startswith(str(ROOT)) else str(path)
    except ValueError:
        return str(path)


# ------------------------------------------------------------------------------------------- reset


async def reset(settings: DevstackSettings) -> int:
    """Drops the mesh's database and its Redis keys, so the next `up` migrates and seeds from scratch."""
    if settings.database_url or settings.redis_url:
        raise DevstackError("DATABASE_URL/REDIS_URL are set: reset only clears the servers devstack chooses itself")

    async def work(group: ProcessGroup, stop: StopRequest) -> int:
        console.step("PostgreSQL and Redis")
        postgres = await servers.provide_postgres(group, settings, database_name=MESH_DATABASE)
        redis = await servers.provide_redis(group, settings, database_number=MESH_REDIS_DATABASE)
        console.step("reset")
        await asyncio.to_thread(servers.drop_database, postgres)
        console.detail(f"dropped database {MESH_DATABASE!r} on {postgres.address}")
        prefix = os.environ.get("REDIS_KEY_PREFIX", "shop:")
        removed = await asyncio.to_thread(servers.delete_keys, redis, prefix)
        console.detail(f"deleted {removed} Redis key(s) under {prefix!r} on {redis.address}")
        console.detail("the next `make up` creates, migrates and seeds it afresh")
        return 0

    return await supervise(settings.state_dir, work, code_when_stopped=130)


# -------------------------------------------------------------------------------------------- test


async def test(settings: DevstackSettings, pytest_args: Sequence[str]) -> int:
    """Runs pytest with DATABASE_URL/REDIS_URL pointing at real servers; returns pytest's exit code."""
    settings = replace(settings, state_dir=settings.state_dir / "test")  # never shares a `make up`'s servers

    async def work(group: ProcessGroup, stop: StopRequest) -> int:
        console.step("PostgreSQL and Redis for the tests")
        postgres = await servers.provide_postgres(group, settings, database_name=TEST_DATABASE)
        redis = await servers.provide_redis(group, settings, database_number=TEST_REDIS_DATABASE)
        env = dict(os.environ, DATABASE_URL=postgres.url, REDIS_URL=redis.url)
        console.step(f"pytest {' '.join(pytest_args)}".rstrip())
        console.detail(f"DATABASE_URL={redact(postgres.url)}  REDIS_URL={redact(redis.url)}")
        code = await run_pytest(pytest_args, env, stop)
        if code == 5:
            console.error("pytest collected no tests (exit code 5); that counts as a failure")
        elif code != 0:
            console.error(f"pytest failed (exit code {code})")
        return code

    return await supervise(settings.state_dir, work, code_when_stopped=130)


async def run_pytest(pytest_args: Sequence[str], env: dict[str, str], stop: StopRequest) -> int:
    """pytest in devstack's process group, so a Ctrl-C in the terminal reaches it directly.

    Other stop signals (and a SIGINT sent to devstack alone) are passed on; devstack itself waits for
    pytest to finish its teardown, then stops the servers.
    """
    pytest = subprocess.Popen([sys.executable, "-m", "pytest", *pytest_args], cwd=ROOT, env=env)

    def pass_on(received: signal.Signals) -> None:
        if received == signal.SIGINT and terminal_signals_our_group():
            console.detail("pytest got the Ctrl-C too; waiting for it to finish")
            return
        console.detail(f"passing {received.name} on to pytest (pid {pytest.pid})")
        pytest.send_signal(received)

    stop.redirect = pass_on
    try:
        while pytest.poll() is None:
            await asyncio.sleep(POLL_SECONDS)
        return pytest.returncode
    finally:
        stop.redirect = None
        if pytest.poll() is None:
            pytest.kill()
            pytest.wait()


def terminal_signals_our_group() -> bool:
    """True when our process group is the terminal's foreground group, so Ctrl-C reached pytest as well."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except OSError:
        return False
