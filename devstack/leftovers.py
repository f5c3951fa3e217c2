"""Processes left behind by a devstack that could not clean up (SIGKILL, a crashed terminal…).

Each run records its children in `<state>/running.json` (pid and kernel start time, so a reused pid
is never mistaken for one of ours) and deletes the file once they are stopped. The next run stops
whatever that file still names before it starts anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Sequence
from pathlib import Path

from devstack import console

GRACE_SECONDS = 5.0


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None when it is gone (or a zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def record(registry: Path, children: Sequence[tuple[str, int, int]]) -> None:
    """Writes (name, pid, stop signal) of every child still running."""
    entries = [
        {"name": name, "pid": pid, "start_time": started, "stop_signal": stop_signal}
        for name, pid, stop_signal in children
        if (started := start_time(pid)) is not None
    ]
    registry.parent.mkdir(parents=True, exist_ok=True)
    registry.write_text(json.dumps(entries, indent=1))


def forget(registry: Path) -> None:
    registry.unlink(missing_ok=True)


async def stop_leftovers(registry: Path) -> None:
    try:
        entries = json.loads(registry.read_text())
    except FileNotFoundError:
        return
    except ValueError:
        forget(registry)
        return
    alive = [e for e in entries if start_time(e["pid"]) == e["start_time"]]
    if alive:
        console.step(
            f"stopping {len(alive)} process(es) left by an earlier devstack that did not exit cleanly: "
            + ", ".join(f"{e['name']} (pid {e['pid']})" for e in alive)
        )
        for entry in alive:  # services were recorded first; send all the signals, then wait
            with contextlib.suppress(ProcessLookupError):
                os.kill(entry["pid"], entry["stop_signal"])
        loop = asyncio.get_running_loop()
        give_up = loop.time() + GRACE_SECONDS
        while loop.time() < give_up and any(start_time(e["pid"]) == e["start_time"] for e in alive):
            await asyncio.sleep(0.1)
        for entry in alive:
            if start_time(entry["pid"]) == entry["start_time"]:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(entry["pid"], signal.SIGKILL)
    forget(registry)
