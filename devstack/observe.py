"""Observability of the local mesh: where its spans go, its metrics ports, and a real Prometheus.

- Every service process of `make up` appends its spans to one JSON-lines file,
  `<state dir>/spans.jsonl` (`TRACE_SPANS_FILE`); `checkoutctl trace <checkout_id>` reads it.
- Every service serves /metrics on 127.0.0.1:<port base + 20 + i> (`METRICS_PORT`), beside its gRPC
  port base + i (the sandbox PSP has + 10), so two meshes 100 ports apart never collide.
- `make observe` (`DEVSTACK_OBSERVE=1 make up`) also runs Prometheus (Debian's `prometheus` package,
  or the binary `DEVSTACK_PROMETHEUS_BIN` names) as its own process on 127.0.0.1:<port base + 30>,
  with a generated configuration that scrapes every service every 2 s. Where it is not installed, the
  mesh comes up without it and says so.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from devstack import console
from devstack.endpoints import LOOPBACK
from devstack.errors import DevstackError
from devstack.processes import ManagedProcess, ProcessGroup
from devstack.settings import DevstackSettings

METRICS_PORT_OFFSET = 20
PROMETHEUS_PORT_OFFSET = 30
SCRAPE_INTERVAL = "2s"
PROMETHEUS_READY_TIMEOUT_SECONDS = 30.0
NOT_INSTALLED = (
    "prometheus is not installed: the mesh runs without it (install it with `apt-get install prometheus`, "
    "or point DEVSTACK_PROMETHEUS_BIN at the binary)"
)


def spans_file(state_dir: Path) -> Path:
    return state_dir / "spans.jsonl"


def metrics_port(port_base: int, port_offset: int) -> int:
    return port_base + METRICS_PORT_OFFSET + port_offset


def prometheus_address(port_base: int) -> str:
    return f"{LOOPBACK}:{port_base + PROMETHEUS_PORT_OFFSET}"


def service_environment(settings: DevstackSettings, port_offset: int) -> dict[str, str]:
    """What a service process of the local mesh is told about its spans and metrics."""
    return {
        "TRACE_SPANS_FILE": str(spans_file(settings.state_dir)),
        "METRICS_PORT": str(metrics_port(settings.port_base, port_offset)),
    }


def prometheus_binary(environ: Mapping[str, str]) -> str | None:
    named = environ.get("DEVSTACK_PROMETHEUS_BIN", "").strip()
    if named:
        return named if os.access(named, os.X_OK) else None
    return shutil.which("prometheus")


def prometheus_config(targets: Mapping[str, int]) -> str:
    """A Prometheus configuration that scrapes each named service's /metrics on loopback (YAML is a
    superset of JSON: the file is written as JSON-compatible YAML, no YAML library needed)."""
    static = ",\n".join(
        f'      {{"targets": ["{LOOPBACK}:{port}"], "labels": {{"service": "{name}"}}}}'
        for name, port in sorted(targets.items())
    )
    return (
        f'{{"global": {{"scrape_interval": "{SCRAPE_INTERVAL}", "evaluation_interval": "{SCRAPE_INTERVAL}"}},\n'
        ' "scrape_configs": [\n'
        '  {"job_name": "shop", "metrics_path": "/metrics", "static_configs": [\n'
        f"{static}\n"
        "  ]}\n"
        " ]}\n"
    )


@dataclass(frozen=True)
class Prometheus:
    process: ManagedProcess
    address: str
    config: Path


async def start_prometheus(
    group: ProcessGroup, settings: DevstackSettings, targets: Mapping[str, int], environ: Mapping[str, str]
) -> Prometheus | None:
    """Prometheus scraping `targets` (service → metrics port), ready to answer; None when not installed."""
    binary = prometheus_binary(environ)
    if binary is None:
        console.warn(NOT_INSTALLED)
        return None
    folder = settings.state_dir / "prometheus"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "prometheus.yml"
    config.write_text(prometheus_config(targets))
    address = prometheus_address(settings.port_base)
    process = group.spawn(
        "prometheus",
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address={address}",
        ],
        log_path=settings.logs_dir / "prometheus.log",
        cwd=folder,
    )
    loop = asyncio.get_running_loop()
    give_up = loop.time() + PROMETHEUS_READY_TIMEOUT_SECONDS
    while not await asyncio.to_thread(_ready, address):
        if not process.is_running():
            raise DevstackError(
                f"prometheus exited (code {process.exit_code})",
                log_title=str(process.log_path),
                log_tail=process.log_tail(),
            )
        if loop.time() > give_up:
            raise DevstackError(
                f"prometheus did not answer on {address} within {PROMETHEUS_READY_TIMEOUT_SECONDS:.0f} s",
                log_title=str(process.log_path),
                log_tail=process.log_tail(),
            )
        await asyncio.sleep(0.25)
    return Prometheus(process, address, config)


def _ready(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/-/ready", timeout=1) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


async def announce(group: ProcessGroup, settings: DevstackSettings) -> Prometheus | None:
    """After the mesh is up: says where its spans and metrics are; with DEVSTACK_OBSERVE, starts Prometheus."""
    from devstack.mesh import SERVICES

    console.detail(f"spans: {spans_file(settings.state_dir)} (checkoutctl trace <checkout_id>)")
    first, last = (metrics_port(settings.port_base, s.port_offset) for s in (SERVICES[0], SERVICES[-1]))
    console.detail(f"metrics: http://{LOOPBACK}:{first}-{last}/metrics")
    if not settings.observe:
        return None
    targets = {s.package: metrics_port(settings.port_base, s.port_offset) for s in SERVICES}
    prometheus = await start_prometheus(group, settings, targets, os.environ)
    if prometheus is not None:
        console.detail(
            f"prometheus: http://{prometheus.address} (pid {prometheus.process.pid}, scraping {len(targets)} "
            f"services every {SCRAPE_INTERVAL}; config {prometheus.config})"
        )
    return prometheus
