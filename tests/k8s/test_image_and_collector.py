"""The image the manifests run and the collector config, checked offline (no container engine, no collector
binary here): the Dockerfile installs what every container runs, the same way CI does, and the collector's
pipelines reference only components it defines, on the ports its Deployment and Service expose."""

from __future__ import annotations

import fnmatch
import re

import yaml

from tests.k8s.manifests import K8S, ROOT, named, of_kind, package_of, render

DOCKERFILE = ROOT / "Dockerfile"


def copied_sources() -> list[str]:
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            *parts, _destination = line.split()[1:]
            sources += [part.rstrip("/") for part in parts]
    return sources


def ignored(path: str) -> bool:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return any(fnmatch.fnmatch(path, pattern.removeprefix("**/")) for pattern in patterns)


def test_the_image_contains_every_package_a_container_runs():
    objects = render(K8S / "overlays" / "dev")
    packages = set()
    for workload in of_kind(objects, "Deployment") + of_kind(objects, "Job"):
        pod = workload["spec"]["template"]["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            if container["image"].startswith("shop-checkout") and container["command"][:2] == ["python", "-m"]:
                packages.add(package_of(container))
    assert packages >= {"gateway", "psp_sandbox"}
    sources = copied_sources()
    for package in packages | {"service_runtime", "generated"}:
        assert package in sources, f"the Dockerfile does not COPY {package}/"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert not ignored(source), f"COPY {source}: excluded by .dockerignore"


def test_the_image_installs_from_the_constraints_like_make_install():
    dockerfile = DOCKERFILE.read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"pip install .*-c constraints\.txt \.", dockerfile)
    assert re.search(r"install -c constraints\.txt -e '\.\[dev\]'", makefile)
    stages = dockerfile.split("\nFROM ")[1:]
    assert len(stages) == 2, "a build stage and a final stage"
    final = stages[1]
    assert final.startswith("python:3.11-slim")
    assert "USER 10001:10001" in final
    assert not re.search(r"apt-get|gcc|build-essential", final), "no package installs or compilers in the final stage"


def test_the_collector_pipelines_use_defined_components_on_exposed_ports():
    config = yaml.safe_load((K8S / "components" / "otel-collector" / "collector-config.yaml").read_text())
    service = config["service"]
    assert set(service.get("extensions", [])) <= set(config.get("extensions", {}))
    for name, pipeline in service["pipelines"].items():
        for kind in ("receivers", "processors", "exporters"):
            assert pipeline.get(kind) or kind == "processors", f"pipeline {name} has no {kind}"
            undefined = set(pipeline.get(kind, [])) - set(config.get(kind, {}))
            assert not undefined, f"pipeline {name} names undefined {kind}: {undefined}"
    assert service["pipelines"]["traces"]["processors"][0] == "memory_limiter"  # first, as the collector advises
    objects = render(K8S / "overlays" / "prod")
    ports = {
        p["containerPort"]
        for p in named(objects, "Deployment", "otel-collector")["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    endpoints = [
        int(protocol["endpoint"].rsplit(":", 1)[1]) for protocol in config["receivers"]["otlp"]["protocols"].values()
    ]
    assert set(endpoints) <= ports
    exported = named(objects, "Service", "otel-collector")["spec"]["ports"]
    assert {p["port"] for p in exported} == set(endpoints)
