"""`python -m chaos --short` (the CI form of `make chaos`): the mesh on private servers under a checkout
load, five faults (gateway SIGKILL, PostgreSQL crash, notification consumer killed mid-batch, a lossy
PSP, a partitioned payment service), and every invariant holding after each. The exit code is the
invariant checker's verdict; the table names each fault."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.faults import short_drill
from devstack.embedded import find_postgres_binaries, find_redis_server

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
#: The drill takes about a minute; this bounds a hung one.
TIMEOUT_SECONDS = 240
#: How long a hung drill gets to stop its mesh and servers after Ctrl-C (both within pytest-timeout's 300 s).
STOP_SECONDS = 30


def test_the_short_fault_drill_keeps_every_invariant() -> None:
    if find_postgres_binaries() is None or find_redis_server() is None:
        pytest.skip("no PostgreSQL binaries or redis-server for the drill's private servers")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    drill = subprocess.Popen(
        [sys.executable, "-m", "chaos", "--short"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = drill.communicate(timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        # A hung drill is stopped as Ctrl-C stops it (its mesh and private servers with it, not left running
        # under the rest of the suite), and the failure shows its whole output: where it hung.
        drill.send_signal(signal.SIGINT)
        try:
            stdout, stderr = drill.communicate(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            drill.kill()
            stdout, stderr = drill.communicate()
        pytest.fail(f"the drill did not finish in {TIMEOUT_SECONDS} s; its output until then:\n{stdout}{stderr}")
    output = stdout + stderr
    assert drill.returncode == 0, output
    assert "0 violations" in output, output
    faults = short_drill()
    assert f"{len(faults)} faults injected" in output, output
    for fault in faults:
        assert re.search(rf"{re.escape(fault.name)}: \d+ attempts, \d+ completed; invariants hold", output), output
    attempted = re.search(r"(\d+) checkouts attempted", output)
    assert attempted is not None and int(attempted.group(1)) > 0, output
