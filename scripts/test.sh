#!/usr/bin/env bash
# Runs every test. On first run it installs, cached outside the repo, what the tests need:
# the JDK 11/17/21/25 runtimes (scripts/install-jdks.sh), helm and kubernetes-validate for the
# chart tests (scripts/install-chart-tools.sh), and kube-apiserver and etcd for the e2e tests
# (scripts/install-e2e-tools.sh, which also runs the chart one). Extra arguments go to
# `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v javac >/dev/null; then
    echo "error: javac not found; the JVM tests compile a Java program (install a JDK 11+, e.g. apt-get install openjdk-17-jdk-headless)" >&2
    exit 1
fi
scripts/install-jdks.sh
# helm and kubernetes-validate, then kube-apiserver and etcd (a cold build: ~10 min on 2 cores).
scripts/install-e2e-tools.sh
# The static tools binary (tests/musl.rs checks it). ring, the TLS crypto, compiles C for the
# musl target with musl-gcc: Debian's musl-tools.
rustup target add x86_64-unknown-linux-musl >/dev/null
if ! command -v musl-gcc >/dev/null; then
    echo "installing musl-tools (musl-gcc, for the static build)" >&2
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq musl-tools; } >&2; then
        echo "error: musl-gcc not found and musl-tools could not be installed (apt-get install musl-tools)" >&2
        exit 1
    fi
fi
cargo build --locked --release --target x86_64-unknown-linux-musl

# cargo's last block is the (empty) doc-test run, so close with the total over every suite.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
