#!/usr/bin/env bash
# Writes a development CA (ca.crt, ca.key) and a serving certificate signed by it (tls.crt,
# tls.key) into this directory; all four are git-ignored. Extra arguments go to
# `jvm-guard certs`, e.g. --dns-name jvm-guard.jvm-guard.svc --ip 10.0.0.5.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --release -- certs --out certs "$@"
