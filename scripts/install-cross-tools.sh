#!/usr/bin/env bash
# Installs what the static aarch64 build of the tools binary needs, cached outside the repo
# (the image is built for linux/amd64 and linux/arm64, SPEC §10), then runs its arguments, if
# any, with zig and cargo-zigbuild first on PATH:
#
#   the Rust targets aarch64-unknown-linux-musl and x86_64-unknown-linux-musl (rustup)
#   zig 0.15.2 from PyPI's ziglang wheel, in a pip --target directory: the C cross compiler and
#     linker for ring (the TLS crypto) and jemalloc (the allocator), with its own musl headers
#     ${JVM_GUARD_ZIGLANG_DIR:-$HOME/.cache/jvm-guard/ziglang-0.15.2}
#   cargo-zigbuild 0.24.1 from crates.io, which runs cargo with zig as CC and linker
#     ${JVM_GUARD_CROSS_TOOLS:-$HOME/.cache/jvm-guard/tools}/bin/cargo-zigbuild
#
#   scripts/install-cross-tools.sh cargo zigbuild --release --target aarch64-unknown-linux-musl
#
# scripts/test.sh runs it so, and the Dockerfile too for a target that is not the builder's.
# Cached: a zig and a cargo-zigbuild that report their versions are kept. New ones are
# installed into a temporary path first and moved into place only when they work.
set -euo pipefail

ZIG_VERSION=0.15.2
CARGO_ZIGBUILD_VERSION=0.24.1
TARGETS=(aarch64-unknown-linux-musl x86_64-unknown-linux-musl)

CACHE="$HOME/.cache/jvm-guard"
ZIG_DIR="${JVM_GUARD_ZIGLANG_DIR:-$CACHE/ziglang-$ZIG_VERSION}"
TOOLS="${JVM_GUARD_CROSS_TOOLS:-$CACHE/tools}"

log() { echo "$@" >&2; }

installed="$(rustup target list --installed 2>/dev/null || true)"
for target in "${TARGETS[@]}"; do
    grep -qx "$target" <<<"$installed" && continue
    log "adding the Rust target $target"
    if ! rustup target add "$target" >&2; then
        log "error: could not add the Rust target $target (rustup target add $target)"
        exit 1
    fi
done

zig_works() {
    [[ "$("$1/ziglang/zig" version 2>/dev/null)" == "$ZIG_VERSION" ]]
}

if zig_works "$ZIG_DIR"; then
    log "zig $ZIG_VERSION: cached at $ZIG_DIR"
else
    if ! command -v python3 >/dev/null; then
        log "error: python3 not found; zig comes from PyPI's ziglang wheel (install python3 and pip)"
        exit 1
    fi
    log "zig $ZIG_VERSION: installing PyPI's ziglang wheel (~90 MB, 380 MB unpacked), first run only"
    mkdir -p "$(dirname "$ZIG_DIR")"
    tmp="$(mktemp -d "$(dirname "$ZIG_DIR")/.install-zig.XXXXXX")"
    chmod 755 "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
        --target "$tmp" "ziglang==$ZIG_VERSION" >&2
    if ! zig_works "$tmp"; then
        log "error: ziglang $ZIG_VERSION installed but its zig does not report $ZIG_VERSION"
        exit 1
    fi
    rm -rf "$ZIG_DIR"
    mv "$tmp" "$ZIG_DIR"
    trap - EXIT
    log "zig $ZIG_VERSION: installed at $ZIG_DIR"
fi

zigbuild_works() {
    local out
    out="$("$1/bin/cargo-zigbuild" --version 2>/dev/null)" &&
        grep -qx "cargo-zigbuild $CARGO_ZIGBUILD_VERSION" <<<"$out"
}

if zigbuild_works "$TOOLS"; then
    log "cargo-zigbuild $CARGO_ZIGBUILD_VERSION: cached at $TOOLS/bin/cargo-zigbuild"
else
    log "cargo-zigbuild $CARGO_ZIGBUILD_VERSION: building from crates.io, first run only (~2 min)"
    mkdir -p "$TOOLS"
    tmp="$(mktemp -d "$TOOLS/.install-zigbuild.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    start=$SECONDS
    if ! nice -n 10 cargo install --quiet --locked --root "$tmp" \
        cargo-zigbuild --version "$CARGO_ZIGBUILD_VERSION" >&2 || ! zigbuild_works "$tmp"; then
        log "error: could not install cargo-zigbuild $CARGO_ZIGBUILD_VERSION (cargo install cargo-zigbuild --version $CARGO_ZIGBUILD_VERSION --locked)"
        exit 1
    fi
    mkdir -p "$TOOLS/bin"
    mv "$tmp/bin/cargo-zigbuild" "$TOOLS/bin/cargo-zigbuild"
    rm -rf "$tmp"
    trap - EXIT
    log "cargo-zigbuild $CARGO_ZIGBUILD_VERSION: built in $((SECONDS - start))s, at $TOOLS/bin/cargo-zigbuild"
fi

[ "$#" -eq 0 ] && exit 0
# cargo-zigbuild runs `zig` from PATH; the wheel's binary finds its lib/ beside itself.
PATH="$ZIG_DIR/ziglang:$TOOLS/bin:$PATH" exec "$@"
