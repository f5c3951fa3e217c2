"""Policy over the rendered manifests (`kubectl kustomize` of each overlay): what every pod must have, that the
env of each container is exactly what its service's settings read, that prod is highly available, and that
the NetworkPolicies allow exactly the call graph the composition roots declare. See k8s/README.md."""

from __future__ import annotations

import re
from typing import Any

import pytest

from service_runtime.settings import SettingsError
from tests.k8s.manifests import (
    K8S,
    Obj,
    call_graph,
    container_environment,
    named,
    of_kind,
    package_of,
    render,
    runtime_variables,
    sandbox_variables,
    server_container,
    settings_read,
    spec_of,
    specs,
)

OVERLAYS = ("dev", "prod")
SERVICE_NAME_LABEL = "app.kubernetes.io/name"


def overlay(name: str) -> list[Obj]:
    return render(K8S / "overlays" / name)


def mesh_deployments(objects: list[Obj]) -> list[Obj]:
    """The Deployments of the seven gRPC services."""
    return [d for d in of_kind(objects, "Deployment") if d["metadata"]["name"] in specs()]


def all_pod_specs(objects: list[Obj]) -> list[tuple[str, Obj]]:
    pods = []
    for workload in objects:
        if workload["kind"] in ("Deployment", "StatefulSet", "Job"):
            pods.append((f"{workload['kind']}/{workload['metadata']['name']}", workload["spec"]["template"]["spec"]))
    return pods


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_service_of_the_code_has_a_deployment_service_and_pdb(name):
    objects = overlay(name)
    for process_name in specs():
        named(objects, "Deployment", process_name)
        named(objects, "Service", process_name)
        named(objects, "PodDisruptionBudget", process_name)


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_deployment_has_grpc_probes_on_the_health_port(name):
    for deployment in mesh_deployments(overlay(name)):
        container = server_container(deployment)
        grpc_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == grpc_port, (deployment["metadata"]["name"], probe)
        assert container["livenessProbe"]["grpc"]["service"] == "liveness"
        assert container["readinessProbe"]["grpc"].get("service", "") == ""
        assert container["lifecycle"]["preStop"]["sleep"]["seconds"] >= 1


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_container_is_hardened_and_has_requests_and_limits(name):
    for where, pod in all_pod_specs(overlay(name)):
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod.get("automountServiceAccountToken") is False, where
        for container in pod.get("initContainers", []) + pod["containers"]:
            label = f"{where}/{container['name']}"
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys(), label
            assert {"cpu", "memory"} <= resources["limits"].keys(), label
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True, label
            assert security["readOnlyRootFilesystem"] is True, label
            assert security["allowPrivilegeEscalation"] is False, label
            assert security["capabilities"]["drop"] == ["ALL"], label
            assert not security["capabilities"].get("add"), label
            assert security["seccompProfile"]["type"] == "RuntimeDefault", label


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_service_port_targets_a_named_container_port(name):
    objects = overlay(name)
    workloads = of_kind(objects, "Deployment") + of_kind(objects, "StatefulSet")
    for service in of_kind(objects, "Service"):
        selector = service["spec"]["selector"]
        pods = [w for w in workloads if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert pods, f"Service {service['metadata']['name']} selects no workload"
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert isinstance(target, str), f"Service {service['metadata']['name']} port {port['name']}: not named"
            for pod in pods:
                names = {p["name"] for c in pod["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
                assert target in names, f"{service['metadata']['name']} → {pod['metadata']['name']}: no port {target}"


@pytest.mark.parametrize("name", OVERLAYS)
def test_each_container_gets_exactly_the_variables_its_settings_read(name):
    objects = overlay(name)
    optional = runtime_variables()
    for deployment in mesh_deployments(objects):
        container = server_container(deployment)
        spec = spec_of(package_of(container))
        assert spec.process_name == deployment["metadata"]["name"]
        read = settings_read(spec)
        env = container_environment(objects, container)
        missing = read - env.keys()
        unread = env.keys() - read - optional
        assert not missing, f"{spec.process_name}: settings read {sorted(missing)}, which the manifests do not set"
        assert not unread, f"{spec.process_name}: the manifests set {sorted(unread)}, which nothing reads"


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_settings_accept_the_values_the_manifests_set(name):
    objects = overlay(name)
    for deployment in mesh_deployments(objects):
        container = server_container(deployment)
        spec = spec_of(package_of(container))
        env = container_environment(objects, container)
        known = {key: value for key, value in env.items() if value is not None}
        known.pop("SHIPPING_RATES_FILE", None)  # a path inside the image: test_shipping_rates_path_is_the_image_s
        try:
            spec.load_settings(known)
        except SettingsError as error:
            pytest.fail(f"{spec.process_name} would exit at start: {error}")


def test_shipping_rates_path_is_the_rate_table_installed_in_the_image():
    from shipping_svc.rates import DEFAULT_RATES_FILE

    objects = overlay("prod")
    env = container_environment(objects, server_container(named(objects, "Deployment", "shipping-svc")))
    in_package = DEFAULT_RATES_FILE.relative_to(DEFAULT_RATES_FILE.parents[2])  # shipping_svc/data/rates.json
    assert env["SHIPPING_RATES_FILE"] == f"/opt/venv/lib/python3.11/site-packages/{in_package}"


@pytest.mark.parametrize("name", OVERLAYS)
def test_migration_job_containers_get_only_variables_their_service_reads(name):
    objects = overlay(name)
    job = named(objects, "Job", "shop-checkout-migrate")
    migrators = job["spec"]["template"]["spec"]["initContainers"]
    assert {package_of(c) for c in migrators} == {s.package for s in specs().values()}
    for container in migrators:
        assert container["command"][3:] == ["migrate"]
        spec = spec_of(package_of(container))
        env = container_environment(objects, container)
        assert "DATABASE_URL" in env
        assert not env.keys() - settings_read(spec) - runtime_variables(), container["name"]


def test_sandbox_psp_gets_only_what_it_reads_and_only_in_dev():
    dev = overlay("dev")
    sandbox = server_container(named(dev, "Deployment", "psp-sandbox"))
    env = container_environment(dev, sandbox)
    assert env.keys() <= sandbox_variables(), sorted(env.keys() - sandbox_variables())
    assert "DATABASE_URL" in env
    prod = overlay("prod")
    assert not [o for o in prod if o["metadata"]["name"].startswith("psp-sandbox")]
    payment = container_environment(prod, server_container(named(prod, "Deployment", "payment-svc")))
    assert payment["PSP_BASE_URL"] is None  # from the operator's Secret


def test_event_streams_agree_between_publishers_and_consumers():
    objects = overlay("prod")
    env = {
        d["metadata"]["name"]: container_environment(objects, server_container(d)) for d in mesh_deployments(objects)
    }
    assert env["order-svc"]["ORDER_EVENTS_STREAM"] == env["notification-svc"]["ORDER_EVENTS_STREAM"]
    assert env["gateway"]["GATEWAY_EVENTS_STREAM"] == env["notification-svc"]["GATEWAY_EVENTS_STREAM"]
    for publisher_or_consumer in ("gateway", "order-svc", "notification-svc"):
        assert env[publisher_or_consumer]["EVENT_BUS"] == env["order-svc"]["EVENT_BUS"]


def test_targets_point_at_the_called_service_and_its_grpc_port():
    objects = overlay("prod")
    for caller, callees in call_graph().items():
        env = container_environment(objects, server_container(named(objects, "Deployment", caller)))
        for callee in callees:
            port = next(p["port"] for p in named(objects, "Service", callee)["spec"]["ports"] if p["name"] == "grpc")
            variable = f"{specs()[callee].name.upper()}_TARGET"
            assert env[variable] == f"dns:///{callee}:{port}", (caller, variable)
            assert named(objects, "Service", callee)["spec"].get("clusterIP") == "None", f"{callee} is not headless"


# ---- prod: availability ----------------------------------------------------------------------------------


def test_prod_runs_at_least_two_replicas_of_every_server_with_pdb_and_hpa():
    objects = overlay("prod")
    autoscalers = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(objects, "HorizontalPodAutoscaler")}
    for deployment in mesh_deployments(objects):
        name = deployment["metadata"]["name"]
        hpa = autoscalers.get(name)
        assert hpa is not None, f"{name}: no HorizontalPodAutoscaler"
        assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] >= hpa["spec"]["minReplicas"]
        assert "replicas" not in deployment["spec"], f"{name}: spec.replicas would fight the HPA on every apply"
        pdb = named(objects, "PodDisruptionBudget", name)
        assert pdb["spec"].get("minAvailable") == 1 and "maxUnavailable" not in pdb["spec"]
        assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_dev_runs_one_replica_each_and_no_hpa():
    objects = overlay("dev")
    assert not of_kind(objects, "HorizontalPodAutoscaler")
    for deployment in mesh_deployments(objects):
        assert deployment["spec"]["replicas"] == 1


# ---- NetworkPolicies = call graph ------------------------------------------------------------------------


def _selected_name(selector: dict[str, Any]) -> str | None:
    return selector.get("matchLabels", {}).get(SERVICE_NAME_LABEL)


def _grpc_ports(objects: list[Obj]) -> dict[str, int]:
    return {
        name: next(p["port"] for p in named(objects, "Service", name)["spec"]["ports"] if p["name"] == "grpc")
        for name in specs()
    }


def allowed_edges(objects: list[Obj]) -> tuple[set[tuple[str, str]], set[tuple[str, str]], list[str]]:
    """(egress edges, ingress edges, problems): service → service connections on gRPC ports that the
    NetworkPolicies open, seen from the caller's egress and from the callee's ingress."""
    services = set(specs())
    ports = _grpc_ports(objects)
    egress: set[tuple[str, str]] = set()
    ingress: set[tuple[str, str]] = set()
    problems: list[str] = []
    for policy in of_kind(objects, "NetworkPolicy"):
        subject = _selected_name(policy["spec"]["podSelector"])
        label = policy["metadata"]["name"]
        for rule in policy["spec"].get("egress", []):
            rule_ports = {p.get("port") for p in rule.get("ports", [])}
            peers = rule.get("to", [])
            if not peers and (not rule_ports or rule_ports & set(ports.values())):
                problems.append(f"{label}: an egress rule to anywhere that includes gRPC ports {rule_ports or 'all'}")
            for peer in peers:
                callee = _selected_name(peer.get("podSelector", {}))
                # Callers outside the mesh (the json-transcoder): test_transcoder.py checks theirs.
                if callee in services and subject in services:
                    assert rule_ports == {ports[callee]}, f"{label}: egress to {callee} on {rule_ports}"
                    egress.add((subject, callee))
        for rule in policy["spec"].get("ingress", []):
            rule_ports = {p.get("port") for p in rule.get("ports", [])}
            if subject in services and ports[subject] in rule_ports | {None}:
                for peer in rule.get("from", []):
                    caller = _selected_name(peer.get("podSelector", {}))
                    if caller in services:
                        ingress.add((caller, subject))
                    elif "namespaceSelector" in peer or "ipBlock" in peer:
                        problems.append(f"{label}: gRPC ingress to {subject} from outside the mesh: {peer}")
    return egress, ingress, problems


@pytest.mark.parametrize("name", OVERLAYS)
def test_network_policies_allow_exactly_the_call_graph(name):
    objects = overlay(name)
    expected = {(caller, callee) for caller, callees in call_graph().items() for callee in callees}
    egress, ingress, problems = allowed_edges(objects)
    assert not problems
    assert egress == expected, f"egress beyond the call graph: {egress - expected}, missing: {expected - egress}"
    assert ingress == expected, f"ingress beyond the call graph: {ingress - expected}, missing: {expected - ingress}"
    default_deny = named(objects, "NetworkPolicy", "default-deny-all")
    assert default_deny["spec"]["podSelector"] == {}
    assert set(default_deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}


def test_only_the_gateway_takes_grpc_calls_from_outside_the_mesh():
    objects = overlay("prod")
    ports = _grpc_ports(objects)
    open_to_all = set()
    for policy in of_kind(objects, "NetworkPolicy"):
        subject = _selected_name(policy["spec"]["podSelector"])
        for rule in policy["spec"].get("ingress", []):
            if "from" not in rule and subject in ports:
                assert {p["port"] for p in rule["ports"]} == {ports[subject]}
                open_to_all.add(subject)
    assert open_to_all == {"gateway"}


def test_the_call_graph_has_the_edges_the_design_names():
    """A guard on the derivation itself (it reads the settings, so a renamed target must show up here)."""
    graph = call_graph()
    assert graph["gateway"] == {"cart-svc", "inventory-svc", "payment-svc", "order-svc", "shipping-svc"}
    assert graph["cart-svc"] == {"inventory-svc"}
    assert graph["order-svc"] == {"inventory-svc", "payment-svc"}
    assert graph["shipping-svc"] == {"inventory-svc"}
    assert not graph["notification-svc"] and not graph["inventory-svc"] and not graph["payment-svc"]


def test_metrics_are_declared_for_prometheus_on_every_server():
    objects = overlay("prod")
    for deployment in mesh_deployments(objects):
        template = deployment["spec"]["template"]
        port = next(p for p in server_container(deployment)["ports"] if p["name"] == "metrics")
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port["containerPort"])
        service_ports = {p["name"] for p in named(objects, "Service", deployment["metadata"]["name"])["spec"]["ports"]}
        assert "metrics" in service_ports
        env = container_environment(objects, server_container(deployment))
        if "METRICS_PORT" in env:  # once the runtime serves metrics (issue #11), the port must agree
            assert env["METRICS_PORT"] == str(port["containerPort"])


def test_no_sandbox_or_in_cluster_datastore_in_prod():
    names = {o["metadata"]["name"] for o in overlay("prod")}
    assert not {n for n in names if re.match(r"(psp-sandbox|postgres|redis)\b", n)}
