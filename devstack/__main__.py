"""Command line: `python -m devstack up | test [pytest args] | reset | postgres-bin`.

up            the whole mesh on loopback, with PostgreSQL/Redis found or started privately; Ctrl-C stops all
test [args]   pytest (with args) against real PostgreSQL/Redis; exit code is pytest's
reset         drop the mesh's database and Redis keys (after migrations were rewritten); `up` recreates them
postgres-bin  print the PostgreSQL binaries a private server would use; exit 1 when there are none

Settings (environment): see devstack/settings.py.
"""

from __future__ import annotations

import asyncio
import os
import sys

from devstack import commands, console, embedded
from devstack.errors import DevstackError
from devstack.settings import DevstackSettings


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__.strip())
        return 0 if argv else 2
    command, arguments = argv[0], argv[1:]
    try:
        settings = DevstackSettings.from_environ(os.environ)
        if command == "up" and not arguments:
            return asyncio.run(commands.up(settings))
        if command == "test":
            return asyncio.run(commands.test(settings, arguments))
        if command == "reset" and not arguments:
            return asyncio.run(commands.reset(settings))
        if command == "postgres-bin" and not arguments:
            return print_postgres_binaries(settings)
    except DevstackError as error:
        commands.report(error)
        return 1
    console.error(f"unknown command: {' '.join(argv)}")
    print(__doc__.strip(), file=sys.stderr)
    return 2


def print_postgres_binaries(settings: DevstackSettings) -> int:
    binaries = embedded.find_postgres_binaries(settings.postgres_bin)
    if binaries is None:
        print("no PostgreSQL binaries found", file=sys.stderr)
        return 1
    print(f"{binaries.bindir} (PostgreSQL {binaries.major_version}, {binaries.source})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
