"""Sampling profiles of the mesh's processes while a bench drives them (py-spy, when it is installed).

`record()` runs `py-spy record --gil --format raw` (collapsed stacks of the thread holding the GIL, so a
share is a share of the time the process ran Python) against each pid for the same seconds, in parallel,
while the caller's load runs; `top()` reads one profile back as the functions with most samples on the
stack (inclusive) and on top of it (self). py-spy is a tool, not a dependency: `pip install py-spy` (it
needs ptrace permission: root, or kernel.yama.ptrace_scope 0).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def available() -> str | None:
    """The py-spy executable (on PATH or beside this interpreter, as in a venv), or None."""
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


async def record(pids: dict[str, int], seconds: float, out_dir: Path, *, rate: int = 100) -> dict[str, Path]:
    """Profiles of every process in `pids` ({name: pid}) over the next `seconds`: {name: raw profile path}."""
    spy = available()
    if spy is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / f"{name}.txt" for name in pids}
    processes = [
        await asyncio.create_subprocess_exec(
            spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--nonblocking",
            "--gil",  # only the thread holding the GIL: Python at work, not an event loop waiting in C
            "--output",
            str(paths[name]),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]
    await asyncio.gather(*(process.wait() for process in processes))
    return {name: path for name, path in paths.items() if path.exists()}


@dataclass(frozen=True)
class Profile:
    samples: int
    inclusive: list[tuple[str, int]]
    own: list[tuple[str, int]]


def _name(frame: str) -> str:
    matched = _FRAME.match(frame.strip())
    if matched is None:
        return frame.strip()
    file = matched.group("file")
    for marker in ("site-packages/", "/work/", "python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{matched.group('function')} ({file})"


def top(path: Path, count: int = 12) -> Profile:
    """The functions most often on the stack (inclusive) and on its top (self) in a raw py-spy profile."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        samples = int(number)
        total += samples
        frames = [_name(frame) for frame in stack.split(";") if frame and not frame.startswith("process ")]
        frames = [frame for frame in frames if not frame.startswith("thread ")]
        for frame in set(frames):
            inclusive[frame] += samples
        if frames:
            own[frames[-1]] += samples
    return Profile(total, inclusive.most_common(count), own.most_common(count))
