#!/usr/bin/env bash
# The load benchmark: builds jvm-guard as shipped (static musl, release, profile-guided:
# scripts/pgo.sh) and the baseline server (benches/baseline.rs, the same serving stack answering
# `allowed` without mutating; static musl, release, no profile), then
# loads both with oha over HTTPS on loopback and prints one table: rps, p50, p99 and RSS of
# each, and the ratio; then a soak of 1,000,000 requests for RSS drift.
#
#   scripts/bench.sh                # the shipped build: about 8 minutes on 2 cores
#   scripts/bench.sh --quick        # 3 s runs, no soak: a minute, to try a change
#   scripts/bench.sh --allocators   # the table for the system allocator, mimalloc, jemalloc
#   scripts/bench.sh apiserver      # pod creates through kube-apiserver: no webhook, the
#                                   # baseline as a webhook, a MutatingAdmissionPolicy, jvm-guard
#                                   # (offline, public names, local registry cached and cold)
#   scripts/bench.sh caches         # serve's RSS with 10,000 namespaces, and 1,000+ images cached
#   scripts/bench.sh compare REV    # this tree's jvm-guard against REV's (a commit), taking turns
#                                   # with the baseline and the baseline answering jvm-guard's
#                                   # own patch (--turns N, --duration D; REV builds in a worktree)
#   scripts/bench.sh instructions   # instructions per review of each part of the handler and of
#                                   # the baseline's, then of each whole server (callgrind: the
#                                   # same on a busy machine)
#
# The last two drive benches/apiserver.rs (the e2e control plane: scripts/install-e2e-tools.sh;
# docker-registry); other arguments go to it (--creates N, --concurrency N, ...); the reports
# land in target/bench-apiserver/ and target/bench-caches/.
# Before measuring they wait until the 1-minute load average is below BENCH_MAX_LOAD (1.0) or
# BENCH_MAX_WAIT seconds (1800) have passed, and the report says what the load was.
#
# Other arguments go to scripts/bench.py (--duration, --connections, --soak N, --json FILE).
# oha is installed once into ~/.cache/jvm-guard/tools. The per-pod mutation benchmark is
# `cargo bench --bench mutate` (criterion).
set -euo pipefail
cd "$(dirname "$0")/.."

OHA_VERSION=1.16.0
tools="$HOME/.cache/jvm-guard/tools"
target=x86_64-unknown-linux-musl

# Waits for a quiet machine: other processes' CPU would show up as our latency.
wait_quiet() {
    local max="${BENCH_MAX_LOAD:-1.0}" waited=0
    while awk -v max="$max" '{ exit !($1 >= max) }' /proc/loadavg; do
        if [ "$waited" -ge "${BENCH_MAX_WAIT:-1800}" ]; then
            echo "warning: load $(cut -d' ' -f1-3 /proc/loadavg) after ${waited} s; measuring anyway" >&2
            return
        fi
        echo "waiting for the 1-minute load to fall below $max: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
        sleep 30
        waited=$((waited + 30))
    done
}

ensure_oha() {
    if ! grep -q "$OHA_VERSION" <<<"$("$tools/bin/oha" --version 2>/dev/null)"; then
        echo "installing oha $OHA_VERSION into $tools (once, ~5 min)" >&2
        cargo install oha --version "$OHA_VERSION" --locked --root "$tools" >&2
    fi
}

# Instructions, not time: callgrind counts each part of the handler at N and at a smaller N, and
# the difference over the reviews between is the count per review (first-use work cancels out).
# Then the whole server's, `serve` and the baseline each under callgrind: counters zeroed after
# a warm-up, N reviews over 4 keep-alive connections, counters dumped: user space only (TLS,
# HTTP, the runtime, the router and the handler), the kernel and the waits not counted.
# Built for the host, not musl: the count is of our code, the same either way.
if [ "${1:-}" = instructions ]; then
    command -v valgrind >/dev/null || {
        echo "error: valgrind not found: apt-get install valgrind" >&2
        exit 1
    }
    ensure_oha
    echo "building the instruction driver, jvm-guard and the baseline (release)" >&2
    cargo build --locked --release --example bench-instructions --bin jvm-guard \
        --example bench-baseline >&2
    driver=target/release/examples/bench-instructions
    count() { # BODY N PART: the instructions of the whole run
        valgrind --tool=callgrind --callgrind-out-file=/dev/null "$driver" "$1" "$2" "$3" 2>&1 \
            | awk '/Collected :/ { print $4 }'
    }
    parts=(review parse answer guard baseline)
    echo "| body | ${parts[*]/%/ |}"
    echo "|---|---|---|---|---|---|"
    # 2kb-managed: the 2 KB review with the managedFields every real review carries; the
    # server cuts them before parsing (`guard`), the handler parts here read the body whole.
    for size in 2kb 2kb-managed 10kb 20kb; do
        row="| $size |"
        for part in "${parts[@]}"; do
            many=$(count "benches/reviews/$size.json" 1000 "$part")
            few=$(count "benches/reviews/$size.json" 200 "$part")
            row="$row $(( (many - few) / 800 )) |"
        done
        echo "$row"
    done

    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    target/release/jvm-guard certs --out "$work/certs" >/dev/null
    tls=(--tls-cert "$work/certs/tls.crt" --tls-key "$work/certs/tls.key")
    # NAME BODY N: user-space instructions per review of the whole server. It runs in a command
    # substitution, where `set -e` does not hold: every failure returns 1 itself.
    serve_count() {
        local name="$1" body="$2" n="$3" port
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        local server=(target/release/examples/bench-baseline --addr "127.0.0.1:$port" "${tls[@]}")
        [ "$name" = jvm-guard ] && server=(target/release/jvm-guard serve --dev --offline \
            --defaults benches/defaults.yaml --addr "127.0.0.1:$port" \
            --admin-addr 127.0.0.1:0 --shutdown-delay 0s "${tls[@]}")
        valgrind --tool=callgrind --callgrind-out-file="$work/$name.out" "${server[@]}" \
            >"$work/$name.log" 2>&1 &
        server_pid=$!
        # This shell's own: the server goes with it, whatever ends it.
        trap 'kill "$server_pid" 2>/dev/null' EXIT INT TERM
        local waited=0
        fail() {
            echo "error: $name under callgrind: $1" >&2
            cat "$work/$name.log" >&2
            kill "$server_pid" 2>/dev/null
            return 1
        }
        until grep -qs listening "$work/$name.log"; do
            kill -0 "$server_pid" 2>/dev/null || { fail "exited before listening"; return 1; }
            [ "$waited" -lt 120 ] || { fail "not listening after 120 s"; return 1; }
            sleep 1
            waited=$((waited + 1))
        done
        load() {
            "$tools/bin/oha" --no-tui --insecure -m POST -H 'content-type: application/json' \
                -D "$body" -n "$1" -c 4 "https://127.0.0.1:$port/mutate" >"$work/oha" 2>&1 \
                && grep -q 'Success rate:.*100.00%' "$work/oha" \
                || { cat "$work/oha" >&2; fail "oha: not every review answered"; return 1; }
        }
        load 300 || return 1
        callgrind_control --zero "$server_pid" >/dev/null 2>&1 || { fail "cannot zero"; return 1; }
        load "$n" || return 1
        callgrind_control --dump "$server_pid" >/dev/null 2>&1 || { fail "cannot dump"; return 1; }
        # SIGTERM: a background job of a script ignores SIGINT (and serve waits no delay).
        kill "$server_pid"
        wait "$server_pid" || true
        [ -s "$work/$name.out.1" ] || { echo "error: no callgrind dump of $name" >&2; return 1; }
        callgrind_annotate "$work/$name.out.1" | awk -v n="$n" \
            '/PROGRAM TOTALS/ { gsub(",", "", $1); printf "%d", $1 / n }'
    }
    echo
    echo "| body | serve | baseline serve | ratio |"
    echo "|---|---|---|---|"
    for size in 2kb 2kb-managed 10kb 20kb; do
        ours=$(serve_count jvm-guard "benches/reviews/$size.json" 1000) || exit 1
        theirs=$(serve_count baseline "benches/reviews/$size.json" 1000) || exit 1
        echo "| $size | $ours | $theirs | $(python3 -c "print(f'{$ours / $theirs:.2f}')") |"
    done
    exit 0
fi

# Every build here is static, for musl: ring compiles C with musl-gcc.
command -v musl-gcc >/dev/null || {
    echo "error: musl-gcc not found: apt-get install musl-tools (scripts/test.sh installs it)" >&2
    exit 1
}

case "${1:-}" in
    apiserver|caches)
        what="$1"
        shift
        rustup target add "$target" >/dev/null
        echo "building jvm-guard as shipped (scripts/pgo.sh), the baseline and the driver" >&2
        guard="$(scripts/pgo.sh)"
        cargo build --locked --release --target "$target" \
            --example bench-baseline --example bench-apiserver >&2
        release="target/$target/release"
        extra=()
        [ "$what" = apiserver ] && extra=(--baseline "$release/examples/bench-baseline")
        command="creates"
        [ "$what" = caches ] && command="caches"
        wait_quiet
        exec "$release/examples/bench-apiserver" "$command" --jvm-guard "$guard" \
            "${extra[@]}" --out "target/bench-$what" "$@"
        ;;
esac

compare=()
if [ "${1:-}" = compare ]; then
    rev="${2:?usage: scripts/bench.sh compare REV [--turns N] [--duration D]}"
    shift 2
    tree="target/compare/$(git rev-parse --short "$rev")"
    [ -d "$tree" ] || git worktree add --detach "$tree" "$rev" >&2
    rustup target add "$target" >/dev/null
    echo "building jvm-guard at $rev (release, musl)" >&2
    # A target directory of its own, shared by the revisions compared: cargo judges a build
    # fresh by the files the last one read, wherever they were, so a revision built in the
    # tree's directory, or after another revision with the same Cargo.lock, could be taken for
    # that build. Its sources are touched so that cargo always sees them newer.
    find "$tree/src" "$tree/benches" "$tree/examples" -type f -exec touch {} + 2>/dev/null || true
    (cd "$tree" && cargo build --locked --release --target "$target" --bin jvm-guard \
        --target-dir "$OLDPWD/target/compare/target" >&2)
    cp "target/compare/target/$target/release/jvm-guard" "$tree/jvm-guard-old"
    compare=(--compare "$tree/jvm-guard-old" --duration 4s --soak 0)
fi

allocators=(default)
driver_args=("${compare[@]}")
for arg in "$@"; do
    case "$arg" in
        --allocators) allocators=(system mimalloc jemalloc) ;;
        --quick) driver_args+=(--duration 3s --soak 0) ;;
        *) driver_args+=("$arg") ;;
    esac
done

ensure_oha
rustup target add "$target" >/dev/null

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
# jvm-guard as shipped, profile-guided, unless the table compares builds: `compare` and
# `--allocators` load plain release builds, so that what differs is the code or the allocator,
# not the profile.
shipped=""
if [ ${#compare[@]} = 0 ] && [ "${allocators[*]}" = default ]; then
    shipped="$(scripts/pgo.sh)"
fi
for allocator in "${allocators[@]}"; do
    features=()
    case "$allocator" in
        default) ;;
        system) features=(--no-default-features) ;;
        *) features=(--no-default-features --features "$allocator") ;;
    esac
    built=(--bin jvm-guard --example bench-baseline) what="jvm-guard and the baseline"
    if [ -n "$shipped" ]; then built=(--example bench-baseline) what="the baseline"; fi
    echo "building $what ($allocator allocator)" >&2
    cargo build --locked --release --target "$target" "${features[@]}" "${built[@]}" >&2
    mkdir -p "$out/$allocator"
    cp "target/$target/release/examples/bench-baseline" "$out/$allocator/"
    cp "${shipped:-target/$target/release/jvm-guard}" "$out/$allocator/jvm-guard"
done
for allocator in "${allocators[@]}"; do
    label="jvm-guard (musl, $allocator allocator)"
    [ "$allocator" = default ] && label="jvm-guard (musl, release)"
    [ -n "$shipped" ] && label="jvm-guard (musl, as shipped: profile-guided)"
    python3 scripts/bench.py --oha "$tools/bin/oha" --label "$label" \
        --jvm-guard "$out/$allocator/jvm-guard" --baseline "$out/$allocator/bench-baseline" \
        "${driver_args[@]}"
done
