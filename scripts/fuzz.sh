#!/usr/bin/env bash
# Fuzzes with cargo-fuzz (libFuzzer) on the nightly toolchain, each target in turn:
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 600 s, every target)
# Targets (fuzz/fuzz_targets): admission_review (a POST body through decode and mutation),
# annotations (namespace/pod annotations and quantities through the mutation), exec_args
# (`jvm-guard exec` argument parsing), registry_responses (what a registry sends back, through
# the lookup's parsers). Corpora grow in fuzz/corpus (not committed); a crash
# is saved in fuzz/artifacts/TARGET and stops the run: turn it into a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(admission_review annotations exec_args registry_responses perfdata)

tools="$HOME/.cache/jvm-guard/tools"
export PATH="$tools/bin:$PATH"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked --root "$tools"

# Seeds: real AdmissionReviews for the decoder, real performance-data files (kept as
# regressions) for perfdata; the others start from nothing.
mkdir -p fuzz/corpus/admission_review fuzz/corpus/perfdata
cp examples/admission-review.json benches/reviews/*.json fuzz/corpus/admission_review/
cp fuzz/regressions/perfdata/* fuzz/corpus/perfdata/

for target in "${targets[@]}"; do
    echo "== $target: ${seconds}s" >&2
    dict=()
    [ -f "fuzz/$target.dict" ] && dict=("-dict=$PWD/fuzz/$target.dict")
    (cd fuzz && cargo +nightly fuzz run --release "$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "${dict[@]}")
done
