"""The json-transcoder component's Envoy config, checked offline (no Envoy binary here): it parses into Envoy's
own v3 `Bootstrap` proto (xds-protos, strict: an unknown field or a typed_config of an unknown type fails),
and its routes are exactly the RPCs that carry a `google.api.http` annotation in the descriptor set, each
routed to the Kubernetes Service of the package that serves it."""

from __future__ import annotations

from typing import Any

import yaml
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.extensions.filters.http.grpc_json_transcoder.v3 import transcoder_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, json_format

from tests.k8s.manifests import K8S, ROOT, named, of_kind, render, specs

COMPONENT = K8S / "components" / "json-transcoder"
#: The method option that maps an RPC to an HTTP route (importing it registers it for parsing the descriptors).
HTTP_RULE = annotations_pb2.http.full_name
#: typed_config types the config uses; importing them registers them for Any resolution.
TYPED_CONFIGS = (
    http_connection_manager_pb2.HttpConnectionManager,
    transcoder_pb2.GrpcJsonTranscoder,
    router_pb2.Router,
    http_protocol_options_pb2.HttpProtocolOptions,
)


def bootstrap() -> bootstrap_pb2.Bootstrap:
    config = yaml.safe_load((COMPONENT / "envoy.yaml").read_text())
    return json_format.ParseDict(config, bootstrap_pb2.Bootstrap())


def connection_manager(config: bootstrap_pb2.Bootstrap) -> http_connection_manager_pb2.HttpConnectionManager:
    (listener,) = config.static_resources.listeners
    (chain,) = listener.filter_chains
    (network_filter,) = chain.filters
    manager = http_connection_manager_pb2.HttpConnectionManager()
    assert network_filter.typed_config.Unpack(manager)
    return manager


def transcoder(manager: http_connection_manager_pb2.HttpConnectionManager) -> transcoder_pb2.GrpcJsonTranscoder:
    settings = transcoder_pb2.GrpcJsonTranscoder()
    assert manager.http_filters[0].typed_config.Unpack(settings)
    assert manager.http_filters[-1].name == "envoy.filters.http.router"
    return settings


def descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    return descriptor_pb2.FileDescriptorSet.FromString((ROOT / "generated" / "shop" / "descriptors.binpb").read_bytes())


def annotated_methods() -> dict[str, str]:
    """gRPC path of every RPC with a google.api.http annotation → its proto package (e.g. shop.cart.v1)."""
    found = {}
    for file in descriptor_set().file:
        for service in file.service:
            for method in service.method:
                if any(field.full_name == HTTP_RULE for field, _ in method.options.ListFields()):
                    found[f"/{file.package}.{service.name}/{method.name}"] = file.package
    return found


def all_methods() -> set[str]:
    return {
        f"/{file.package}.{service.name}/{method.name}"
        for file in descriptor_set().file
        for service in file.service
        for method in service.method
    }


def routes() -> dict[str, str]:
    manager = connection_manager(bootstrap())
    (host,) = manager.route_config.virtual_hosts
    table = {}
    for route in host.routes:
        assert route.match.WhichOneof("path_specifier") == "path", "routes match one RPC's exact gRPC path"
        table[route.match.path] = route.route.cluster
    return table


def test_the_config_parses_into_envoy_s_bootstrap_proto_with_known_typed_configs():
    config = bootstrap()
    settings = transcoder(connection_manager(config))
    assert settings.proto_descriptor == "/descriptors/descriptors.binpb"
    assert settings.convert_grpc_status
    assert settings.request_validation_options.reject_unknown_method
    for cluster in config.static_resources.clusters:
        options = http_protocol_options_pb2.HttpProtocolOptions()
        assert cluster.typed_extension_protocol_options[
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        ].Unpack(options)
        assert options.explicit_http_config.HasField("http2_protocol_options"), f"{cluster.name}: gRPC needs HTTP/2"


def test_every_route_is_an_rpc_of_the_descriptor_set_with_an_http_annotation():
    table = routes()
    assert table.keys() <= all_methods(), sorted(table.keys() - all_methods())
    assert set(table) == set(annotated_methods()), (
        f"routed but not annotated: {sorted(set(table) - set(annotated_methods()))}; "
        f"annotated but not routed: {sorted(set(annotated_methods()) - set(table))}"
    )


def test_the_transcoder_knows_every_routed_service():
    settings = transcoder(connection_manager(bootstrap()))
    routed_services = {path.split("/")[1] for path in routes()}
    assert set(settings.services) == routed_services
    known = {f"{file.package}.{service.name}" for file in descriptor_set().file for service in file.service}
    assert set(settings.services) <= known


def test_each_route_goes_to_the_service_that_serves_it():
    """The cluster is the Kubernetes Service of the package (shop.cart.v1 → cart-svc), at that Service's gRPC
    port, and the cluster's address is that Service."""
    config = bootstrap()
    by_package = {f"shop.{spec.name}.v1": name for name, spec in specs().items()}
    for path, package in annotated_methods().items():
        assert routes()[path] == by_package[package], path
    objects = render(K8S / "overlays" / "dev")
    for cluster in config.static_resources.clusters:
        (locality,) = cluster.load_assignment.endpoints
        (endpoint,) = locality.lb_endpoints
        address = endpoint.endpoint.address.socket_address
        service = named(objects, "Service", cluster.name)
        grpc_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
        assert (address.address, address.port_value) == (cluster.name, grpc_port)


def test_network_policies_let_the_transcoder_reach_exactly_its_clusters():
    objects = render(K8S / "overlays" / "dev")
    clusters = set(routes().values())
    egress: set[str] = set()
    ingress: set[str] = set()
    for policy in of_kind(objects, "NetworkPolicy"):
        subject = policy["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
        for rule in policy["spec"].get("egress", []) if subject == "json-transcoder" else []:
            egress |= {name for peer in rule.get("to", []) if (name := _name(peer) or "") in specs()}
        for rule in policy["spec"].get("ingress", []):
            if any(_name(peer) == "json-transcoder" for peer in rule.get("from", [])):
                ingress.add(str(subject))
    # The gateway admits any source on its gRPC port already; every other cluster must admit the transcoder.
    assert egress == clusters
    assert ingress == clusters - {"gateway"}


def _name(peer: dict[str, Any]) -> str | None:
    return peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
