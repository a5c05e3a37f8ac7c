#!/usr/bin/env bash
# Builds what tests/e2e runs jvm-guard against, from the Go module proxy with the installed Go,
# at the versions of tests/versions.env, cached outside the repo so that only the first run pays
# for the build:
#
#   kube-apiserver $KUBERNETES_VERSION (the module tests/e2e/apiserver pins it, every staging
#                                       module too)
#   etcd $ETCD_VERSION                 (the module tests/e2e/etcd)
#     in ${JVM_GUARD_E2E_BIN:-$HOME/.cache/jvm-guard-e2e/$KUBERNETES_VERSION-etcd${ETCD_VERSION#v}}
#   helm $HELM_VERSION                 (scripts/install-chart-tools.sh, shared with the chart tests)
#
# A cached binary is kept when it runs and reports its version; a new one is built into a
# temporary directory and moved into place only when it does. tests/e2e reads the same
# directory (and JVM_GUARD_E2E_BIN), and fails, naming this script, when a binary is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# KUBERNETES_VERSION, ETCD_VERSION
# shellcheck source=tests/versions.env
source tests/versions.env
BIN="${JVM_GUARD_E2E_BIN:-$HOME/.cache/jvm-guard-e2e/$KUBERNETES_VERSION-etcd${ETCD_VERSION#v}}"

scripts/install-chart-tools.sh

# pinned MODULE_DIR MODULE VERSION: the modules must build the versions of tests/versions.env,
# which label kube-apiserver (its ldflags below) and its cache.
pinned() {
    grep -qxF "require $2 $3" "$1/go.mod" || {
        echo "error: $1/go.mod does not require $2 $3 (tests/versions.env)" >&2
        exit 1
    }
}
pinned tests/e2e/etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
pinned tests/e2e/apiserver k8s.io/kubernetes "$KUBERNETES_VERSION"

# The output is read whole, then matched: `grep -q` in a pipe exits at the first match, and a
# binary that goes on writing (etcd prints four lines) dies of SIGPIPE, which pipefail reports
# as a failure.
apiserver_works() {
    local out
    out="$("$1" --version 2>/dev/null)" && grep -qx "Kubernetes $KUBERNETES_VERSION" <<<"$out"
}

etcd_works() {
    local out
    out="$("$1" --version 2>/dev/null)" && grep -qx "etcd Version: ${ETCD_VERSION#v}" <<<"$out"
}

# Prints a line every 30 s while a build runs: a cold kube-apiserver build is minutes of
# silence otherwise.
heartbeat() {
    local what="$1" start=$SECONDS
    while sleep 30; do
        echo "  ... still building $what ($((SECONDS - start))s)"
    done
}

# build NAME MODULE_DIR PACKAGE LDFLAGS CHECK ESTIMATE
build() {
    local name="$1" module="$2" package="$3" ldflags="$4" check="$5" estimate="$6"
    local target="$BIN/$name"
    if "$check" "$target"; then
        echo "$name: cached at $target"
        return
    fi
    if ! command -v go >/dev/null; then
        echo "error: go not found; $name is built from the Go module proxy (install Go 1.26+)" >&2
        exit 1
    fi
    echo "$name: building from the Go module proxy (first run only, $estimate)"
    mkdir -p "$BIN"
    local tmp
    tmp="$(mktemp -d "$BIN/.build-$name.XXXXXX")"
    heartbeat "$name" &
    local beat=$!
    # shellcheck disable=SC2064 # expand now: these locals are gone when the trap runs
    trap "kill $beat 2>/dev/null; rm -rf '$tmp'" EXIT
    local start=$SECONDS
    (cd "$module" && CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=readonly" \
        go build -trimpath -ldflags "$ldflags" -o "$tmp/$name" "$package")
    kill "$beat" 2>/dev/null || true
    wait "$beat" 2>/dev/null || true
    if ! "$check" "$tmp/$name"; then
        echo "error: the $name just built does not report its version:" >&2
        "$tmp/$name" --version >&2 || true
        exit 1
    fi
    mv "$tmp/$name" "$target"
    rm -rf "$tmp"
    trap - EXIT
    echo "$name: built in $((SECONDS - start))s, at $target"
}

# kube-apiserver reports the version set here (the release build sets it the same way);
# without it, `--version` says v0.0.0-master.
k8s_minor="$(cut -d. -f2 <<<"$KUBERNETES_VERSION")"
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    k8s_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1"
    k8s_ldflags+=" -X $pkg.gitMinor=$k8s_minor -X $pkg.gitTreeState=clean"
done

build etcd tests/e2e/etcd go.etcd.io/etcd/server/v3 "-s -w" etcd_works "~2 min"
build kube-apiserver tests/e2e/apiserver k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags" \
    apiserver_works "~8 min on 2 cores"
