#!/usr/bin/env bash
# Installs what tests/node runs a real node with, cached outside the repo so that only the first
# run pays for the build:
#
#   Debian packages: containerd, runc, containernetworking-plugins (bridge, host-local),
#     iptables, busybox-static (the shell of the JDK image)
#   kubelet, kube-controller-manager, kube-scheduler, kube-proxy $KUBERNETES_VERSION of
#     tests/versions.env, built from the Go module proxy with the module tests/node/k8s (the same
#     pin as tests/e2e/apiserver), and the sandbox binary tests/node/pause
#     in ${JVM_GUARD_NODE_BIN:-$HOME/.cache/jvm-guard-e2e/node-$KUBERNETES_VERSION}
#
# etcd and kube-apiserver come from scripts/install-e2e-tools.sh, which this script does not run.
# A cached binary is kept when it runs and reports its version; new ones are built into a
# temporary directory and moved into place only when they do. tests/node reads the same
# directory (and JVM_GUARD_NODE_BIN) and fails, naming this script, when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# KUBERNETES_VERSION
# shellcheck source=tests/versions.env
source tests/versions.env
# The build below labels the components with it (and caches them by that label): the module
# must build that version.
if ! grep -qxF "require k8s.io/kubernetes $KUBERNETES_VERSION" tests/node/k8s/go.mod; then
    echo "error: tests/node/k8s/go.mod does not require k8s.io/kubernetes $KUBERNETES_VERSION (tests/versions.env)" >&2
    exit 1
fi
BIN="${JVM_GUARD_NODE_BIN:-$HOME/.cache/jvm-guard-e2e/node-$KUBERNETES_VERSION}"
COMPONENTS=(kubelet kube-controller-manager kube-scheduler kube-proxy)

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
missing=()
for pair in containerd:containerd runc:runc /usr/lib/cni/bridge:containernetworking-plugins \
    /usr/lib/cni/host-local:containernetworking-plugins iptables:iptables \
    /bin/busybox:busybox-static; do
    what="${pair%%:*}" package="${pair#*:}"
    if [[ "$what" == /* ]]; then [ -x "$what" ] && continue; else command -v "$what" >/dev/null && continue; fi
    [[ " ${missing[*]} " == *" $package "* ]] || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]} (the node of tests/node)" >&2
    if ! { $sudo apt-get update -qq && $sudo apt-get -o DPkg::Lock::Timeout=1200 install -y -qq "${missing[@]}"; } >&2; then
        echo "error: could not install ${missing[*]} (apt-get install ${missing[*]})" >&2
        exit 1
    fi
fi

# Read whole, then matched (not `| grep -q`, whose early exit can SIGPIPE the binary).
component_works() {
    local out
    out="$("$1" --version 2>/dev/null)" && grep -qx "Kubernetes $KUBERNETES_VERSION" <<<"$out"
}

heartbeat() {
    local what="$1" start=$SECONDS
    while sleep 30; do
        echo "  ... still building $what ($((SECONDS - start))s)"
    done
}

if ! command -v go >/dev/null; then
    need_go=""
    for name in "${COMPONENTS[@]}"; do component_works "$BIN/$name" || need_go=1; done
    if [ -n "$need_go" ]; then
        echo "error: go not found; the node components are built from the Go module proxy (install Go 1.26+)" >&2
        exit 1
    fi
fi
mkdir -p "$BIN"

# The sandbox binary: a few lines of Go, cached under the hash of its source.
pause_hash="$(cat tests/node/pause/go.mod tests/node/pause/main.go | sha256sum | cut -c1-16)"
if [ -x "$BIN/pause-$pause_hash" ]; then
    echo "pause: cached at $BIN/pause-$pause_hash"
else
    tmp="$(mktemp -d "$BIN/.build-pause.XXXXXX")"
    (cd tests/node/pause && CGO_ENABLED=0 GOFLAGS="-buildvcs=false" nice -n 10 \
        go build -trimpath -ldflags '-s -w' -o "$tmp/pause" .)
    mv "$tmp/pause" "$BIN/pause-$pause_hash"
    rm -rf "$tmp"
    echo "pause: built at $BIN/pause-$pause_hash"
fi
ln -sfn "pause-$pause_hash" "$BIN/pause"

todo=()
for name in "${COMPONENTS[@]}"; do
    if component_works "$BIN/$name"; then
        echo "$name: cached at $BIN/$name"
    else
        todo+=("$name")
    fi
done
[ "${#todo[@]}" -gt 0 ] || exit 0

k8s_minor="$(cut -d. -f2 <<<"$KUBERNETES_VERSION")"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1"
    ldflags+=" -X $pkg.gitMinor=$k8s_minor -X $pkg.gitTreeState=clean"
done
packages=()
for name in "${todo[@]}"; do packages+=("k8s.io/kubernetes/cmd/$name"); done

echo "${todo[*]}: building from the Go module proxy (first run only, ~10 min on 2 cores; less after kube-apiserver)"
tmp="$(mktemp -d "$BIN/.build-node.XXXXXX")"
heartbeat "${todo[*]}" &
beat=$!
trap 'kill $beat 2>/dev/null; rm -rf "$tmp"' EXIT
start=$SECONDS
# One `go build` for all of them: the packages they share are compiled once.
(cd tests/node/k8s && CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=readonly" \
    nice -n 10 go build -trimpath -ldflags "$ldflags" -o "$tmp/" "${packages[@]}")
kill "$beat" 2>/dev/null || true
wait "$beat" 2>/dev/null || true
for name in "${todo[@]}"; do
    if ! component_works "$tmp/$name"; then
        echo "error: the $name just built does not report its version:" >&2
        "$tmp/$name" --version >&2 || true
        exit 1
    fi
done
for name in "${todo[@]}"; do mv "$tmp/$name" "$BIN/$name"; done
rm -rf "$tmp"
trap - EXIT
echo "${todo[*]}: built in $((SECONDS - start))s, at $BIN"
