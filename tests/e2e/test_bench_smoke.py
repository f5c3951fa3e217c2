"""The benchmarks run: every one answers --help with its options, and checkout (with its floors),
flash-sale and scaling, with tiny parameters, start their mesh on a private PostgreSQL, print their tables
and write their JSON (and charts). Nothing here judges speed: the numbers are only checked to be there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import BENCHMARKS
from bench.__main__ import main as bench_main
from devstack.embedded import find_postgres_binaries

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
needs_postgres_binaries = pytest.mark.skipif(
    find_postgres_binaries() is None, reason="the benches start a private PostgreSQL: no initdb/postgres here"
)


def bench(*arguments: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_benchmark_lists_its_options(name, capsys):
    with pytest.raises(SystemExit) as exited:
        bench_main([name, "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert f"python -m bench {name}" in shown
    assert "--" in shown.split("options:", 1)[1]


@pytest.mark.parametrize("name", ["cart", "payment", "reserve-hot-sku"])
@pytest.mark.parametrize("setting", ["OTEL_SDK_DISABLED", "=true", "BAD KEY=1"])
def test_a_malformed_service_setting_is_a_usage_error_naming_it(name, setting, capsys):
    """`--service-env` takes KEY=VALUE; anything else stops before a process starts (exit 2), not a traceback."""
    with pytest.raises(SystemExit) as exited:
        bench_main([name, "--service-env", setting])
    assert exited.value.code == 2
    assert f"expected KEY=VALUE, got {setting!r}" in capsys.readouterr().err


@needs_postgres_binaries
def test_checkout_prints_its_phases_and_ratios_and_writes_json(tmp_path):
    out = tmp_path / "checkout.json"
    ran = bench(
        "checkout",
        *("--clients", "2", "--seconds", "1", "--floor-seconds", "1", "--echo-seconds", "0.5"),
        *("--single-seconds", "0.5", "--open-seconds", "1", "--warm-up-seconds", "0", "--out", str(out)),
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "cores" in ran.stdout and "load average" in ran.stdout
    shown = ("one checkout's SQL", "closed loop, 2 shoppers", "database floor", "echo floor, 2 clients", "one hop")
    assert all(part in ran.stdout for part in shown), ran.stdout
    results = json.loads(out.read_text())
    assert results["capture"]["statements"] > 0
    assert results["phases"]["closed loop, 2 shoppers"]["done"] > 0
    assert results["phases"]["database floor, 2 connections"]["done"] > 0
    assert set(results["ratios"]) >= {"throughput_vs_db_floor", "open_loop_p99_ms", "per_hop_vs_echo"}


@needs_postgres_binaries
def test_flash_sale_sells_exactly_the_stock_and_checks_the_ledgers(tmp_path):
    out = tmp_path / "flash.json"
    ran = bench("flash-sale", "--stock", "3", "--buyers", "12", "--out", str(out))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "checks (each must be 0)" in ran.stdout and "refusal rate" in ran.stdout
    results = json.loads(out.read_text())
    assert results["outcomes"]["ordered"] == 3
    assert results["ledgers"]["orders"] == 3 and results["ledgers"]["PSP authorizations captured"] == 3
    assert results["ok"] is True and all(value == 0 for value in results["checks"].values())


@needs_postgres_binaries
def test_scaling_sweeps_both_axes_and_draws_its_charts(tmp_path):
    ran = bench("scaling", "--lines", "1", "3", "--concurrency", "1", "2", "--seconds", "1", "--out-dir", str(tmp_path))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "cart size" in ran.stdout and "concurrency" in ran.stdout
    results = json.loads((tmp_path / "scaling.json").read_text())
    assert [point["lines"] for point in results["by_lines"]] == [1, 3]
    assert [point["clients"] for point in results["by_concurrency"]] == [1, 2]
    assert all(point["checkouts_per_s"] > 0 for point in results["by_lines"] + results["by_concurrency"])
    for chart in ("scaling-lines.png", "scaling-concurrency.png"):
        assert (tmp_path / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
