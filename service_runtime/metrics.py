"""Metrics for Prometheus: OpenTelemetry instruments, exposed by OpenTelemetry's Prometheus exporter on
each service's own HTTP port (`METRICS_PORT`; unset serves none, 0 picks a free port).

What every service exports (names as Prometheus shows them; docs/observability.md has the list and
the PromQL built on them):

- `rpc_server_duration_milliseconds` / `rpc_client_duration_milliseconds`: histograms of every RPC
  served and made (OpenTelemetry's `rpc.server.duration`/`rpc.client.duration`), labelled `rpc_system`,
  `rpc_service`, `rpc_method` and `rpc_grpc_status_code`; their `_count` is the request count, and the
  count with a non-zero status code the errors by code. Health checks are not counted. These two are
  recorded on every call, so they are `prometheus-client` histograms whose labelled series are looked up
  once per method and code (`RpcDurations`): an OpenTelemetry SDK `record` with an attribute dict cost
  about 15x as much CPU (it hashes the attributes on every call).
- `rpc_server_refusals_total`: refusals by the ErrorInfo reason they answered (e.g. inventory's
  `INSUFFICIENT_STOCK`, the reservation refusals), `rpc_server_conflicts_total` for lost write races
  retried by the unit of work (`service_runtime.sql`).
- `db_client_connections_usage` (`state` used/idle), `db_client_connections_max`,
  `db_client_connections_pending_requests`: the PostgreSQL pool.
- Gateway: `shop_checkout_sagas_total` by `outcome`, `shop_saga_step_duration_milliseconds` by `step`
  and `outcome`. Order: `shop_outbox_lag_seconds` (age of the oldest unpublished event). Notification:
  `shop_consumer_lag_seconds` (age of the last batch's oldest message). Payment: `shop_psp_calls_total`
  by `operation` and `outcome`.

The other instruments are made on first use from the global meter provider; until `configure_metrics`
installs one they are no-ops. A service without `METRICS_PORT` records nothing per call.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Observation
from opentelemetry.metrics import _Gauge as Gauge

from service_runtime.settings import SettingsError

log = logging.getLogger(__name__)

SCOPE = "shop.checkout"
#: Histogram buckets for call latencies, in milliseconds (OpenTelemetry's defaults stop being useful
#: below 5 ms, where most of our calls are).
LATENCY_BUCKETS_MS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

_state: dict[str, Any] = {}


@dataclass(frozen=True)
class Instruments:
    refusals: Counter
    conflicts: Counter
    saga_outcomes: Counter
    saga_step_duration: Histogram
    outbox_lag: Gauge
    consumer_lag: Gauge
    psp_calls: Counter


@functools.cache
def instruments() -> Instruments:
    meter = metrics.get_meter(SCOPE)
    return Instruments(
        refusals=meter.create_counter(
            "rpc.server.refusals", description="RPCs refused with an ErrorInfo reason, by method and reason"
        ),
        conflicts=meter.create_counter(
            "rpc.server.conflicts", description="Transactions that lost a write race and were retried"
        ),
        saga_outcomes=meter.create_counter("shop.checkout.sagas", description="Checkout sagas ended, by outcome"),
        saga_step_duration=meter.create_histogram(
            "shop.saga.step.duration", unit="ms", description="Duration of one call of a saga step, by step and outcome"
        ),
        outbox_lag=meter.create_gauge(
            "shop.outbox.lag", unit="s", description="Age of the oldest unpublished outbox event at the last poll"
        ),
        consumer_lag=meter.create_gauge(
            "shop.consumer.lag", unit="s", description="Age of the oldest message of the last batch consumed"
        ),
        psp_calls=meter.create_counter("shop.psp.calls", description="Calls to the card network, by outcome"),
    )


def configure_metrics(service_name: str, host: str, port: int | None) -> int | None:
    """Installs the meter provider and starts the /metrics endpoint, once per process; returns the port
    it listens on (None when `port` is None: no metrics)."""
    if port is None:
        return None
    if "port" in _state:
        return int(_state["port"])
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
    from opentelemetry.sdk.resources import Resource
    from prometheus_client import start_http_server

    reader = PrometheusMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create({"service.name": service_name}),
        views=[
            View(instrument_name="*duration", aggregation=ExplicitBucketHistogramAggregation(LATENCY_BUCKETS_MS)),
        ],
    )
    try:
        server, _thread = start_http_server(port, addr=host)
    except OSError as error:
        raise SettingsError("METRICS_PORT", f"cannot serve metrics on {host}:{port}: {error}") from None
    metrics.set_meter_provider(provider)
    _durations("server")
    _durations("client")
    _state["port"] = server.server_port
    _state["provider"] = provider
    log.info("%s: metrics on http://%s:%d/metrics", service_name, host, server.server_port)
    return int(server.server_port)


def enabled() -> bool:
    return "port" in _state


def port() -> int | None:
    """The port of this process's /metrics endpoint (None: not serving metrics)."""
    return int(_state["port"]) if "port" in _state else None


def watch_pool(name: str, stats: Callable[[], dict[str, int]]) -> None:
    """Reports a connection pool's usage at every scrape (`stats` is psycopg_pool's `get_stats` shape)."""
    pools: dict[str, Callable[[], dict[str, int]]] | None = _state.get("pools")
    if pools is None:
        pools = _state["pools"] = {}
        meter = metrics.get_meter(SCOPE)

        def usage(_: CallbackOptions) -> Iterable[Observation]:
            for pool, read in list(pools.items()):
                numbers = read()
                size, idle = numbers.get("pool_size", 0), numbers.get("pool_available", 0)
                yield Observation(size - idle, {"pool.name": pool, "state": "used"})
                yield Observation(idle, {"pool.name": pool, "state": "idle"})

        def pending(_: CallbackOptions) -> Iterable[Observation]:
            for pool, read in list(pools.items()):
                yield Observation(read().get("requests_waiting", 0), {"pool.name": pool})

        def maximum(_: CallbackOptions) -> Iterable[Observation]:
            for pool, read in list(pools.items()):
                yield Observation(read().get("pool_max", 0), {"pool.name": pool})

        meter.create_observable_up_down_counter(
            "db.client.connections.usage", [usage], description="PostgreSQL connections by state"
        )
        meter.create_observable_up_down_counter(
            "db.client.connections.pending_requests", [pending], description="Requests waiting for a connection"
        )
        meter.create_observable_up_down_counter(
            "db.client.connections.max", [maximum], description="The pool's maximum size"
        )
    pools[name] = stats


def _split(method: str) -> tuple[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return service, name


class RpcDurations:
    """`rpc.<side>.duration` as a prometheus-client histogram: one labelled series per method and status
    code, looked up once and kept (`series`), so recording a call is one `observe`."""

    LABELS = ("rpc_system", "rpc_service", "rpc_method", "rpc_grpc_status_code")

    def __init__(self, side: str, description: str) -> None:
        from prometheus_client import Histogram as PrometheusHistogram

        self._histogram = PrometheusHistogram(
            f"rpc_{side}_duration_milliseconds", description, self.LABELS, buckets=LATENCY_BUCKETS_MS
        )
        self._series: dict[tuple[str, int], Any] = {}

    def series(self, method: str, code: int) -> Any:
        """The series of `method` ("/package.Service/Method") ending with status `code`."""
        key = (method, code)
        found = self._series.get(key)
        if found is None:
            service, name = _split(method)
            found = self._series[key] = self._histogram.labels("grpc", service, name, str(code))
        return found

    def record(self, method: str, code: int, started: float) -> None:
        """Records a call that began at `started` (time.perf_counter) and ended now with `code`."""
        self.series(method, code).observe((time.perf_counter() - started) * 1000)


def server_durations() -> RpcDurations:
    """`rpc.server.duration` (only once `configure_metrics` ran: the series live in the scraped registry)."""
    return _durations("server")


def _durations(side: str) -> RpcDurations:
    found: RpcDurations | None = _state.get(side)
    if found is None:
        verb = "served" if side == "server" else "made"
        found = _state[side] = RpcDurations(side, f"Duration of RPCs {verb}, by method and status code")
    return found


def code_number(code: object, default: int = 2) -> int:
    """A call's status code as a number (`default` when it is not a StatusCode or a number, e.g. None when
    none was set: 2, UNKNOWN, unless the caller knows better)."""
    if isinstance(code, grpc.StatusCode):
        return int(code.value[0])
    return code if isinstance(code, int) else default


def record_client_call(method: str, code: int, started: float) -> None:
    """Records `rpc.client.duration` of a unary call that ended with `code` (the runtime's outbound
    interceptor calls this, so timing the mesh's calls adds no interceptor layer of its own)."""
    _durations("client").record(method, code, started)


def refused(method: str, reason: str) -> None:
    """Counts a refusal (a ServiceError answered with `reason`)."""
    if enabled():
        service, name = _split(method)
        instruments().refusals.add(1, {"rpc.service": service, "rpc.method": name, "error.reason": reason})


def conflict(operation: str) -> None:
    """Counts a transaction retried after losing a write race."""
    if enabled():
        instruments().conflicts.add(1, {"db.operation": operation})
