#!/usr/bin/env bash
# Writes a development CA and serving certificate into certs/ with `jvm-guard certs` (ECDSA
# P-256). Extra arguments go to it, e.g. --dns-name jvm-guard.jvm-guard.svc. The files are
# git-ignored.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --quiet -- certs --out certs/ "$@"
