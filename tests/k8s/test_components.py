"""The optional components on top of the prod overlay: they keep the env of every container equal to what its
settings read and the NetworkPolicies equal to the call graph, and each does what its README says."""

from __future__ import annotations

import configparser
import re

from tests.k8s.manifests import (
    K8S,
    call_graph,
    container_environment,
    named,
    of_kind,
    package_of,
    render_with,
    runtime_variables,
    server_container,
    settings_read,
    spec_of,
    specs,
)
from tests.k8s.test_policy import allowed_edges, mesh_deployments

OPTIONAL = ("pgbouncer", "metrics", "kafka-events")


def test_prod_with_every_optional_component_keeps_env_exact_and_the_call_graph():
    objects = render_with("overlays/prod", OPTIONAL)
    for deployment in mesh_deployments(objects):
        container = server_container(deployment)
        spec = spec_of(package_of(container))
        env = container_environment(objects, container)
        assert settings_read(spec) <= env.keys(), spec.process_name
        assert not env.keys() - settings_read(spec) - runtime_variables(), spec.process_name
    egress, ingress, problems = allowed_edges(objects)
    expected = {(caller, callee) for caller, callees in call_graph().items() for callee in callees}
    assert not problems and egress == expected and ingress == expected


def test_kafka_events_switches_exactly_the_event_bus_users_to_kafka():
    objects = render_with("overlays/prod", ("kafka-events",))
    for deployment in mesh_deployments(objects):
        env = container_environment(objects, server_container(deployment))
        reads_bus = "EVENT_BUS" in settings_read(specs()[deployment["metadata"]["name"]])
        assert (env.get("EVENT_BUS") == "kafka") == reads_bus, deployment["metadata"]["name"]
        if reads_bus:
            assert re.fullmatch(r"[A-Za-z0-9.:_-]+(,[A-Za-z0-9.:_-]+)*", str(env["KAFKA_BOOTSTRAP_SERVERS"]))


def test_metrics_service_monitor_scrapes_the_named_metrics_port_of_every_server():
    objects = render_with("overlays/prod", ("metrics",))
    (monitor,) = of_kind(objects, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = {
        s["metadata"]["name"]
        for s in of_kind(objects, "Service")
        if selector.items() <= s["metadata"].get("labels", {}).items()
    }
    assert selected == set(specs())
    assert [endpoint["port"] for endpoint in monitor["spec"]["endpoints"]] == ["metrics"]
    for name in selected:
        assert "metrics" in {p["name"] for p in named(objects, "Service", name)["spec"]["ports"]}


def test_pgbouncer_runs_transaction_mode_with_what_the_code_needs():
    ini = configparser.ConfigParser()
    ini.read(K8S / "components" / "pgbouncer" / "pgbouncer.ini")
    bouncer = ini["pgbouncer"]
    assert bouncer["pool_mode"] == "transaction"
    assert int(bouncer["max_prepared_statements"]) > 0  # psycopg prepares after prepare_threshold executions
    assert bouncer["ignore_startup_parameters"] == "options"
    assert bouncer["server_reset_query"] == "SELECT pg_advisory_unlock_all()"
    assert bouncer["server_reset_query_always"] == "1"
    common = dict(
        line.split("=", 1)
        for line in (K8S / "base" / "config" / "common.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    (timeout,) = re.findall(r"SET statement_timeout = (\d+)", ini["databases"]["shop"])
    assert timeout == common["DB_STATEMENT_TIMEOUT_MS"]


def test_with_pgbouncer_the_migrations_job_goes_to_postgresql_directly():
    objects = render_with("overlays/prod", ("pgbouncer",))
    job = named(objects, "Job", "shop-checkout-migrate")
    for container in job["spec"]["template"]["spec"]["initContainers"]:
        (database_url,) = [e for e in container["env"] if e["name"] == "DATABASE_URL"]
        assert database_url["valueFrom"]["secretKeyRef"]["key"] == "DIRECT_DATABASE_URL", container["name"]
    for deployment in mesh_deployments(objects):
        (database_url,) = [e for e in server_container(deployment)["env"] if e["name"] == "DATABASE_URL"]
        assert database_url["valueFrom"]["secretKeyRef"]["key"] == "DATABASE_URL"
    assert named(objects, "Service", "pgbouncer")["spec"]["ports"][0]["port"] == 5432
