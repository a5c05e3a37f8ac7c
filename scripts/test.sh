#!/usr/bin/env bash
# Runs every test (docs/testing.md). On first run it installs, cached outside the repo, what the
# tests need: the JDK 11/17/21/25 runtimes (scripts/install-jdks.sh), helm and
# kubernetes-validate for the chart tests (scripts/install-chart-tools.sh), kube-apiserver and
# etcd for the e2e tests (scripts/install-e2e-tools.sh, which also runs the chart one), the node's
# kubelet, controller-manager, scheduler, kube-proxy and Debian's containerd, runc, CNI plugins
# and iptables for tests/node (scripts/install-node-tools.sh), zig and cargo-zigbuild for the
# aarch64 build of the static binary (scripts/install-cross-tools.sh) and Debian's
# qemu-user-static to run it, Debian's docker-registry for the registry tests, Debian's
# prometheus (promtool) for the alert rules' tests, and Debian's llvm-N (the llvm-profdata of
# rustc's LLVM) and python3-yaml for the profile-guided x86_64 build (scripts/pgo.sh).
#
# `scripts/test.sh --fast` installs nothing and runs only the suites that need nothing installed:
# the unit tests and every tests/ suite but those of NEEDS_INSTALL below.
# Other arguments go to `cargo test` (e.g. `scripts/test.sh --fast golden`).
set -euo pipefail
cd "$(dirname "$0")/.."

# The suites that need something installed (a JDK, root, helm, the cluster's binaries, the musl
# builds, a registry): the full run only.
NEEDS_INSTALL=" agent alerts chart dumps e2e jvm musl node registry supervise "

# cargo's last block is the (empty) doc-test run, so close with the total over every suite.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
run_tests() {
    local status=0
    cargo test --locked "$@" 2>&1 | tee "$log" || status=$?
    awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
         END { printf "total: %d passed, %d failed\n", p, f }' "$log"
    return "$status"
}

if [ "${1:-}" = --fast ]; then
    shift
    suites=()
    for path in tests/*.rs tests/*/main.rs; do
        name="${path#tests/}"
        name="${name%/main.rs}"
        name="${name%.rs}"
        [[ "$NEEDS_INSTALL" == *" $name "* ]] || suites+=(--test "$name")
    done
    status=0
    run_tests --lib "${suites[@]}" "$@" || status=$?
    exit "$status"
fi

if ! command -v javac >/dev/null; then
    echo "error: javac not found; the JVM tests compile a Java program (install a JDK 11+, e.g. apt-get install openjdk-17-jdk-headless)" >&2
    exit 1
fi
scripts/install-jdks.sh
# helm and kubernetes-validate, then kube-apiserver and etcd (a cold build: ~10 min on 2 cores).
scripts/install-e2e-tools.sh
# The real node of tests/node: kubelet and friends from the same pinned module (a cold build:
# ~10 min on 2 cores, less right after kube-apiserver's), containerd and runc from Debian.
scripts/install-node-tools.sh
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
# A Debian package, installed once: COMMAND PACKAGE WHY.
need() {
    command -v "$1" >/dev/null && return
    echo "installing $2 ($1, $3)" >&2
    if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq "$2"; } >&2; then
        echo "error: $1 not found and $2 could not be installed (apt-get install $2)" >&2
        exit 1
    fi
}
# The static tools binary (tests/musl.rs checks it). ring, the TLS crypto, compiles C for the
# musl target with musl-gcc: Debian's musl-tools.
rustup target add x86_64-unknown-linux-musl >/dev/null
need musl-gcc musl-tools "for the static build"
# tests/registry.rs starts the CNCF Distribution registry on loopback. The package may try to
# start its own service on install; the tests run their own instances.
need docker-registry docker-registry "for the registry tests"
# tests/alerts.rs: promtool tests the chart's alerts, and a real Prometheus scrapes serve.
need promtool prometheus "for the alert rules' tests"
# The shipped x86_64 binary, profile-guided (scripts/pgo.sh: two release builds and a training
# run; it installs llvm-N and python3-yaml itself). The tests run it: tests/musl.rs,
# tests/agent.rs, tests/node.
scripts/pgo.sh >/dev/null
# The same binary for arm64 nodes (docs/design.md#platforms): zig cross-compiles ring's and jemalloc's C and
# links, through cargo-zigbuild (cold: 2-5 min for cargo-zigbuild, then a release build as long as
# the x86_64 one; warm: a second).
# tests/musl.rs runs it with qemu-aarch64-static, called directly: no binfmt_misc needed.
need qemu-aarch64-static qemu-user-static "to run the aarch64 binary"
scripts/install-cross-tools.sh cargo zigbuild --locked --release --target aarch64-unknown-linux-musl

status=0
run_tests "$@" || status=$?
exit "$status"
