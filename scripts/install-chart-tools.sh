#!/usr/bin/env bash
# Installs what tests/chart.rs runs on the Helm chart, cached outside the repo, at the versions
# of tests/versions.env:
#
#   helm $HELM_VERSION, built from the Go module proxy with the installed Go:
#     ${JVM_GUARD_HELM:-$HOME/.cache/jvm-guard/bin/helm-$HELM_VERSION}
#   kubernetes-validate $KUBERNETES_VALIDATE_VERSION from PyPI (it bundles the OpenAPI schemas of
#   Kubernetes 1.37 and 1.36, among others), in a pip --target directory:
#     ${JVM_GUARD_KUBERNETES_VALIDATE_DIR:-$HOME/.cache/jvm-guard/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION}
#
# Cached: a helm that runs `version` and a kubernetes-validate that imports are kept. Both are
# installed into a temporary path first and moved into place only when they work.
set -euo pipefail

# HELM_VERSION, KUBERNETES_VALIDATE_VERSION
# shellcheck source=tests/versions.env
source "$(dirname "$0")/../tests/versions.env"
# helm's Makefile sets these with -ldflags. Without them `helm version` says "v3.22" and helm
# assumes Kubernetes 1.20 for `helm template` and lint's deprecation checks. 1.37 matches the
# k8s.io/client-go v0.37 that helm $HELM_VERSION is built with (helm's go.mod, not ours).
K8S_MAJOR=1
K8S_MINOR=37

CACHE="$HOME/.cache/jvm-guard"
HELM="${JVM_GUARD_HELM:-$CACHE/bin/helm-$HELM_VERSION}"
KV_DIR="${JVM_GUARD_KUBERNETES_VALIDATE_DIR:-$CACHE/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION}"

helm_works() {
    local out
    out="$("$1" version --template '{{.Version}}' 2>/dev/null)" && grep -qx "$HELM_VERSION" <<<"$out"
}

if helm_works "$HELM"; then
    echo "helm $HELM_VERSION: cached at $HELM"
else
    if ! command -v go >/dev/null; then
        echo "error: go not found; helm is built from the Go module proxy (install Go 1.24+)" >&2
        exit 1
    fi
    echo "helm $HELM_VERSION: building from the Go module proxy, first run only (~3 min)"
    mkdir -p "$(dirname "$HELM")"
    gobin="$(mktemp -d)"
    trap 'rm -rf "$gobin"' EXIT
    ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        ldflags+=" -X $pkg.k8sVersionMajor=$K8S_MAJOR -X $pkg.k8sVersionMinor=$K8S_MINOR"
    done
    start=$SECONDS
    CGO_ENABLED=0 GOBIN="$gobin" GOFLAGS=-buildvcs=false \
        go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    if ! helm_works "$gobin/helm"; then
        echo "error: the helm just built does not report $HELM_VERSION" >&2
        exit 1
    fi
    mv "$gobin/helm" "$HELM"
    rm -rf "$gobin"
    trap - EXIT
    echo "helm $HELM_VERSION: built in $((SECONDS - start))s, at $HELM"
fi

kv_works() {
    PYTHONPATH="$1" python3 -c 'import kubernetes_validate.utils as u, sys; sys.exit(0 if {"1.36.0", "1.37.0"} <= set(u.all_versions()) else 1)' 2>/dev/null &&
        [[ "$(cat "$1/.version" 2>/dev/null)" == "$KUBERNETES_VALIDATE_VERSION" ]]
}

if kv_works "$KV_DIR"; then
    echo "kubernetes-validate $KUBERNETES_VALIDATE_VERSION: cached at $KV_DIR"
else
    echo "kubernetes-validate $KUBERNETES_VALIDATE_VERSION: installing from PyPI"
    mkdir -p "$(dirname "$KV_DIR")"
    tmp="$(mktemp -d "$(dirname "$KV_DIR")/.install-kv.XXXXXX")"
    chmod 755 "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
        --target "$tmp" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    echo "$KUBERNETES_VALIDATE_VERSION" >"$tmp/.version"
    if ! kv_works "$tmp"; then
        echo "error: kubernetes-validate $KUBERNETES_VALIDATE_VERSION installed but lacks the 1.36/1.37 schemas" >&2
        exit 1
    fi
    rm -rf "$KV_DIR"
    mv "$tmp" "$KV_DIR"
    trap - EXIT
    echo "kubernetes-validate $KUBERNETES_VALIDATE_VERSION: installed at $KV_DIR"
fi
