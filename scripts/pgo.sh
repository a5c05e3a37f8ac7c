#!/usr/bin/env bash
# The shipped x86_64 binary, built profile-guided (docs/performance.md#the-shipped-build-profile-guided):
#   1. an instrumented static build (-Cprofile-generate), in target/pgo/generate;
#   2. its `serve --dev --offline` trained on the golden cases' pods (scripts/pgo_train.py: not
#      the load benchmark's bodies, which measure the result), then stopped as Kubernetes stops
#      it (SIGTERM), which writes the profile;
#   3. the profile merged with the llvm-profdata of rustc's LLVM (Debian's llvm-N and
#      python3-yaml, for the training, are installed when missing);
#   4. the release build that uses it (-Cprofile-use), in target/pgo/use, copied to
#      target/pgo/x86_64-unknown-linux-musl/jvm-guard: what the tests, the load benchmark and the
#      image's amd64 build use.
# Cold: two release builds (~4 min each on 2 cores) and a few seconds of training; after a change,
# two incremental builds. The training is skipped when the instrumented binary did not change.
#
#   scripts/pgo.sh            # prints the binary's path
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-musl
pgo="$PWD/target/pgo"
out="$pgo/$target/jvm-guard"
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo

# The target's own flags (.cargo/config.toml: static, no interpreter) stay; --config appends.
build() {
    local dir="$1" flag="$2"
    cargo build --locked --release --target "$target" --bin jvm-guard \
        --target-dir "$pgo/$dir" --config "target.$target.rustflags=[\"$flag\"]" >&2
}

# A Debian package, installed once: PACKAGE WHY [ANOTHER WAY].
apt_install() {
    echo "installing $1 ($2, for the profile-guided build)" >&2
    { $sudo apt-get update -qq && $sudo apt-get install -y -qq "$1"; } >&2 || {
        echo "error: $1 could not be installed (apt-get install $1${3:+, or $3})" >&2
        exit 1
    }
}

# A profile is read only by the LLVM that wrote its format: rustc's major version.
rustc_version="$(rustc -vV)"
llvm_major="$(sed -n 's/^LLVM version: \([0-9]*\).*/\1/p' <<<"$rustc_version")"
host="$(sed -n 's/^host: //p' <<<"$rustc_version")"
profdata=""
for candidate in "$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata" \
    "/usr/lib/llvm-$llvm_major/bin/llvm-profdata" "$(command -v "llvm-profdata-$llvm_major" || true)"; do
    if [ -x "$candidate" ]; then profdata="$candidate"; break; fi
done
if [ -z "$profdata" ]; then
    apt_install "llvm-$llvm_major" "the llvm-profdata of rustc's LLVM $llvm_major" \
        "rustup component add llvm-tools"
    profdata="/usr/lib/llvm-$llvm_major/bin/llvm-profdata"
fi
# The training reads the golden cases (YAML).
python3 -c 'import yaml' 2>/dev/null || apt_install python3-yaml "PyYAML, for the training run"
command -v musl-gcc >/dev/null || {
    echo "error: musl-gcc not found: apt-get install musl-tools (scripts/test.sh installs it)" >&2
    exit 1
}
rustup target add "$target" >/dev/null

echo "profile-guided build: the instrumented binary (target/pgo/generate)" >&2
build generate "-Cprofile-generate=$pgo/raw"
instrumented="$pgo/generate/$target/release/jvm-guard"
merged="$pgo/jvm-guard.profdata"
stamp="$(sha256sum "$instrumented" | cut -d' ' -f1)"
if [ ! -s "$merged" ] || [ "$(cat "$pgo/trained-binary" 2>/dev/null)" != "$stamp" ]; then
    echo "profile-guided build: training on the golden cases' pods" >&2
    rm -rf "$pgo/raw" "$pgo/train"
    mkdir -p "$pgo/raw" "$pgo/train"
    "$instrumented" certs --out "$pgo/train" >/dev/null
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    LLVM_PROFILE_FILE="$pgo/raw/serve-%p-%m.profraw" "$instrumented" serve --dev --offline \
        --addr "127.0.0.1:$port" --admin-addr 127.0.0.1:0 --shutdown-delay 0s \
        --defaults benches/defaults.yaml \
        --tls-cert "$pgo/train/tls.crt" --tls-key "$pgo/train/tls.key" \
        >"$pgo/train/serve.log" 2>&1 &
    serve=$!
    trap 'kill "$serve" 2>/dev/null || true' EXIT
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        kill -0 "$serve" 2>/dev/null || { echo "error: serve exited; see $pgo/train/serve.log" >&2; exit 1; }
        sleep 0.1
    done
    python3 scripts/pgo_train.py --port "$port"
    kill -TERM "$serve"
    wait "$serve" || { echo "error: serve did not exit cleanly; see $pgo/train/serve.log" >&2; exit 1; }
    trap - EXIT
    compgen -G "$pgo/raw/*.profraw" >/dev/null || {
        echo "error: the training wrote no profile into $pgo/raw" >&2
        exit 1
    }
    "$profdata" merge -o "$merged" "$pgo"/raw/*.profraw
    echo "$stamp" >"$pgo/trained-binary"
fi

echo "profile-guided build: the optimized binary (target/pgo/use)" >&2
build use "-Cprofile-use=$merged"
mkdir -p "$(dirname "$out")"
cp "$pgo/use/$target/release/jvm-guard" "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
