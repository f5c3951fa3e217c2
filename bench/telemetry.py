"""What tracing and metrics cost a checkout: the same mesh with telemetry off and on, in turns, in one run.

One run starts a private PostgreSQL cluster and, on it, one mesh per configuration (each its own database,
sandbox PSP and six services as processes), all up at once but only one driven at a time:

- `off`: `OTEL_SDK_DISABLED=true`, no `METRICS_PORT` (what every other bench measures);
- `on`: telemetry as deployed: tracing with the production sampling (`OTEL_TRACES_SAMPLER_ARG` of
  k8s/base/config/common.env, parent-based ratio; `--sampling` adds other ratios as more configurations),
  every service serving /metrics (`METRICS_PORT=0`), and the sampled spans exported as `make up` does,
  JSON lines appended to a file (`TRACE_SPANS_FILE`, a temporary file here);
- `metrics only` with `--metrics-only`: every service serving /metrics, tracing off.

Each configuration gets a warm-up, then `--rounds` turns of a closed loop of `--clients` shoppers doing whole
checkouts (CreateCart, AddItem per line, StartCheckout, PlaceOrder) for `--seconds` / `--rounds` each; the
order of the configurations rotates every turn, so load from elsewhere on a shared machine falls on all
alike. CPU time of every process of each mesh (from /proc) is counted over its own turns.

Printed: per configuration, checkouts per second, the mesh's CPU ms per checkout (and per process), the
spans written per checkout, and the ratios to `off`: throughput (target >= 0.85, i.e. telemetry costs at
most 15 %) and mesh CPU per checkout. JSON goes to `--out` (default bench/results/telemetry.json).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import profile
from bench.harness import (
    CpuMeter,
    LoopResult,
    Mesh,
    Samples,
    closed_loop,
    console,
    create_database,
    event_loop_runner,
    machine,
    machine_line,
    private_postgres,
    start_mesh,
    table,
    write_json,
)
from bench.shoppers import Shoppers

ROOT = Path(__file__).resolve().parents[1]
COMMON_ENV = ROOT / "k8s" / "base" / "config" / "common.env"
DEFAULT_OUT = Path("bench/results/telemetry.json")
#: Telemetry may cost at most 15 % of checkout throughput (issue #11).
TARGET_THROUGHPUT_RATIO = 0.85


def production_sampling(path: Path = COMMON_ENV) -> float:
    """The trace sampling ratio a production deployment gets: `OTEL_TRACES_SAMPLER_ARG` in the Kubernetes
    common config, or the runtime's default (1.0, every trace) when it is not set there."""
    for line in path.read_text().splitlines():
        name, _, value = line.strip().partition("=")
        if name == "OTEL_TRACES_SAMPLER_ARG" and value.strip():
            return float(value)
    return 1.0


@dataclass
class Configuration:
    name: str
    environment: dict[str, str]
    spans_file: Path | None = None
    turns: list[LoopResult] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    samples: Samples = field(default_factory=Samples)

    @property
    def merged(self) -> LoopResult:
        return LoopResult.merged(self.name, self.turns)

    def spans(self) -> int:
        if self.spans_file is None or not self.spans_file.exists():
            return 0
        with self.spans_file.open("rb") as lines:
            return sum(1 for _ in lines)


def configurations(samplings: Sequence[float], folder: Path, *, metrics_only: bool = False) -> list[Configuration]:
    found = [Configuration("off", {"OTEL_SDK_DISABLED": "true"})]
    if metrics_only:
        found.append(Configuration("metrics only", {"OTEL_SDK_DISABLED": "true", "METRICS_PORT": "0"}))
    for ratio in samplings:
        spans = folder / f"spans-{ratio:g}.jsonl"
        found.append(
            Configuration(
                f"on, sampling {ratio:g}",
                {
                    "OTEL_SDK_DISABLED": "false",
                    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                    "OTEL_TRACES_SAMPLER_ARG": f"{ratio:g}",
                    "TRACE_SPANS_FILE": str(spans),
                    "METRICS_PORT": "0",
                },
                spans,
            )
        )
    return found


def _checkouts(shoppers: Shoppers, samples: Samples, skus: list[str]) -> Callable[[int], Awaitable[object]]:
    def one(client: int) -> Awaitable[object]:
        return shoppers.checkout(samples, skus, lane=client)

    return one


async def _profiled(
    args: argparse.Namespace, config: Configuration, mesh: Mesh, shopper: Shoppers, skus: list[str]
) -> dict[str, Any]:
    """An extra closed loop on one configuration's mesh with py-spy sampling each of its processes: raw
    profiles into `--profile`/<configuration>/, and the busy samples per checkout of each process."""
    load = asyncio.ensure_future(
        closed_loop(
            f"profiled '{config.name}'",
            args.clients,
            args.profile_seconds + 1,
            _checkouts(shopper, Samples(), skus),
            quiet=True,
        )
    )
    await asyncio.sleep(0.5)
    folder = args.profile / config.name.replace(", ", "-").replace(" ", "-")
    paths = await profile.record(mesh.pids, args.profile_seconds, folder)
    loop = await load
    found: dict[str, Any] = {"checkouts": loop.done, "folder": str(folder)}
    for name, path in sorted(paths.items()):
        top = profile.top(path, 15)
        found[name] = {"samples_per_checkout": round(top.samples / max(loop.done, 1), 2), "self": top.own}
    return found


def _add(total: dict[str, float], more: dict[str, float]) -> None:
    for name, value in more.items():
        total[name] = total.get(name, 0.0) + value


async def run(args: argparse.Namespace, samplings: list[float]) -> dict[str, Any]:
    console.print(f"machine: {machine_line()}")
    results: dict[str, Any] = {
        "bench": "telemetry",
        "options": vars(args) | {"out": str(args.out), "samplings": samplings},
        "production_sampling": production_sampling(),
        "machine_before": machine(),
    }
    skus = [f"BENCH-{index:03d}" for index in range(args.lines)]
    with tempfile.TemporaryDirectory(prefix="shop-bench-telemetry-") as folder:
        configs = configurations(samplings, Path(folder), metrics_only=args.metrics_only)
        async with private_postgres() as server, contextlib.AsyncExitStack() as stack:
            meshes: list[Mesh] = []
            shoppers: list[Shoppers] = []
            for index, config in enumerate(configs):
                database = await create_database(server.url, f"shop_bench_telemetry_{index}")
                mesh = await stack.enter_async_context(start_mesh(database, config.environment))
                meshes.append(mesh)
                shopper = Shoppers(mesh, connections=-(-args.clients // Shoppers.PER_CONNECTION))
                stack.push_async_callback(shopper.close)
                shoppers.append(shopper)
                await shopper.seed(skus, 1_000_000)
                console.print(f"mesh '{config.name}' up: {len(mesh.processes)} processes")
            for config, shopper in zip(configs, shoppers, strict=True):
                if args.warm_up_seconds > 0:
                    await closed_loop(
                        f"warm-up '{config.name}'",
                        min(args.clients, 4),
                        args.warm_up_seconds,
                        _checkouts(shopper, Samples(), skus),
                        quiet=True,
                    )
            spans_before = [config.spans() for config in configs]
            for turn in range(args.rounds):
                shift = turn % len(configs)
                for index in [*range(shift, len(configs)), *range(shift)]:
                    config, mesh, shopper = configs[index], meshes[index], shoppers[index]
                    meter = CpuMeter(mesh.pids)
                    meter.start()
                    config.turns.append(
                        await closed_loop(
                            f"'{config.name}', {args.clients} shoppers ({turn + 1}/{args.rounds})",
                            args.clients,
                            args.seconds / args.rounds,
                            _checkouts(shopper, config.samples, skus),
                        )
                    )
                    _add(config.cpu, meter.stop())
            await asyncio.sleep(1.0)  # the span processors write every half second
            spans_after = [config.spans() for config in configs]
            if args.profile is not None:
                results["profiles"] = {}
                for config, mesh, shopper in zip(configs, meshes, shoppers, strict=True):
                    results["profiles"][config.name] = await _profiled(args, config, mesh, shopper, skus)
    results["machine_after"] = machine()
    off = configs[0].merged
    off_cpu = sum(configs[0].cpu.values()) / max(off.done, 1)
    results["configurations"] = {}
    for config, before, after in zip(configs, spans_before, spans_after, strict=True):
        loop = config.merged
        cpu = sum(config.cpu.values()) / max(loop.done, 1)
        results["configurations"][config.name] = {
            **loop.as_dict(),
            "turns_per_s": [round(t.rate, 2) for t in config.turns],
            "mesh_cpu_ms_per_checkout": round(cpu * 1000, 2),
            "cpu_ms_per_checkout": {
                name: round(seconds * 1000 / max(loop.done, 1), 2)
                for name, seconds in sorted(config.cpu.items(), key=lambda item: -item[1])
            },
            "spans_per_checkout": round((after - before) / max(loop.done, 1), 1),
            "errors": dict(config.samples.errors),
            "throughput_vs_off": round(loop.rate / off.rate, 3) if off.rate else None,
            "cpu_vs_off": round(cpu / off_cpu, 3) if off_cpu else None,
        }
    return results


def report(results: dict[str, Any]) -> bool:
    """Prints the tables; True when the production configuration keeps >= 85 % of the throughput."""
    configs = results["configurations"]
    table(
        "checkout throughput and CPU, telemetry off and on (same run, turns alternating)",
        [
            "configuration",
            "checkouts",
            "failed",
            "per s",
            "turns per s",
            "p50 ms",
            "p99 ms",
            "mesh CPU ms/checkout",
            "spans/checkout",
            "throughput ÷ off",
            "CPU ÷ off",
        ],
        [
            [
                name,
                c["done"],
                c["failed"],
                c["rate_per_s"],
                " ".join(str(t) for t in c["turns_per_s"]),
                c["p50_ms"],
                c["p99_ms"],
                c["mesh_cpu_ms_per_checkout"],
                c["spans_per_checkout"],
                c["throughput_vs_off"],
                c["cpu_vs_off"],
            ]
            for name, c in configs.items()
        ],
    )
    processes = sorted({name for c in configs.values() for name in c["cpu_ms_per_checkout"]})
    table(
        "CPU ms per checkout, per process (/proc)",
        ["process", *configs],
        [[name, *(c["cpu_ms_per_checkout"].get(name, 0.0) for c in configs.values())] for name in processes],
    )
    for name, c in configs.items():
        if c["errors"]:
            table(f"errors '{name}'", ["RPC: code", "count"], sorted(c["errors"].items()))
    production = f"on, sampling {results['production_sampling']:g}"
    ratio = configs.get(production, {}).get("throughput_vs_off")
    met = ratio is not None and ratio >= TARGET_THROUGHPUT_RATIO
    console.print(
        f"production telemetry ('{production}', the sampling of k8s/base/config/common.env): throughput "
        f"{ratio} of off (target >= {TARGET_THROUGHPUT_RATIO}): {'met' if met else 'NOT met'}"
    )
    for name, found in results.get("profiles", {}).items():
        table(
            f"profile '{name}': busy samples per checkout (py-spy, 100/s), in {found['folder']}",
            ["process", "samples/checkout"],
            [[process, p["samples_per_checkout"]] for process, p in found.items() if isinstance(p, dict)],
        )
    console.print(f"machine after: {machine_line()}")
    return met


def parser() -> argparse.ArgumentParser:
    command = argparse.ArgumentParser(
        prog="python -m bench telemetry", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    command.add_argument("--clients", type=int, default=16, help="concurrent shoppers (default 16)")
    command.add_argument(
        "--seconds", type=float, default=30.0, help="closed-loop time per configuration, over all turns (default 30)"
    )
    command.add_argument("--rounds", type=int, default=3, help="turns each configuration takes (default 3)")
    command.add_argument("--lines", type=int, default=1, help="cart lines per checkout, 1-100 (default 1)")
    command.add_argument(
        "--sampling",
        type=float,
        action="append",
        default=None,
        metavar="RATIO",
        help="measure 'on' with this trace sampling ratio too (repeatable; the production sampling of "
        "k8s/base/config/common.env is always measured)",
    )
    command.add_argument(
        "--metrics-only",
        action="store_true",
        help="also measure metrics without tracing (OTEL_SDK_DISABLED=true, METRICS_PORT set)",
    )
    command.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="after the turns, profile each configuration's mesh with py-spy during an extra closed loop; raw "
        "profiles into DIR/<configuration>/",
    )
    command.add_argument("--profile-seconds", type=float, default=10.0, help="length of each profiled loop (10)")
    command.add_argument("--warm-up-seconds", type=float, default=2.0, help="untimed checkouts first (default 2)")
    command.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    return command


def main(argv: Sequence[str]) -> int:
    command = parser()
    args = command.parse_args(argv)
    if args.clients < 1 or not 1 <= args.lines <= 100 or args.seconds <= 0 or args.rounds < 1:
        command.error("--clients >= 1, --lines 1..100, --seconds > 0, --rounds >= 1")
    if args.profile is not None and profile.available() is None:
        command.error("--profile needs py-spy (pip install py-spy)")
    samplings = [production_sampling()]
    for ratio in args.sampling or []:
        if not 0.0 <= ratio <= 1.0:
            command.error("--sampling is a ratio 0..1")
        if ratio not in samplings:
            samplings.append(ratio)
    results = event_loop_runner()(run(args, samplings))
    met = report(results)
    write_json(args.out, results)
    console.print("target: met" if met else "target: not met")
    return 0
