# syntax=docker/dockerfile:1
# The jvm-guard image: the webhook (`serve`) and, from the same image, the tools init container
# that the webhook injects (`install-tools`, which copies this very binary). One static musl
# binary at /usr/local/bin/jvm-guard (src/mutate/tools.rs IMAGE_BINARY) on distroless, non-root, for
# linux/amd64 and linux/arm64 (SPEC §10), as one multi-platform image:
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t ghcr.io/jvm-guard/jvm-guard:0.1.0 .
#
# (add --push to publish the index; `docker build .` alone builds the builder's platform only).
# The build stage runs on the builder's platform and cross-compiles, never under emulation: the
# builder's own target as scripts/test.sh builds x86_64 (musl-gcc), the other with zig through
# cargo-zigbuild, as scripts/test.sh builds aarch64 (scripts/install-cross-tools.sh).

FROM --platform=$BUILDPLATFORM rust:1.95-bookworm AS build
# musl-tools gives the crates with C code (ring, the TLS crypto; jemalloc, the allocator) a musl
# C compiler for the builder's platform; python3-pip installs zig (PyPI's ziglang) for the other;
# python3-yaml runs the profile-guided build's training (scripts/pgo.sh, which installs the
# llvm-N of rustc's LLVM itself).
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools python3-pip python3-yaml \
    && rm -rf /var/lib/apt/lists/*
# Both musl targets, zig and cargo-zigbuild, pinned there; one layer for both platforms.
COPY scripts/install-cross-tools.sh /usr/local/bin/install-cross-tools.sh
RUN install-cross-tools.sh
WORKDIR /src
COPY . .
ARG TARGETARCH
# The same builds as scripts/test.sh (and .cargo/config.toml's static flags): tests/musl.rs checks
# that the binaries have no interpreter, the x86_64 one runs alone in an empty root and the
# aarch64 one runs under qemu. The x86_64 one built on x86_64 is profile-guided (scripts/pgo.sh
# trains it by running it); a cross build cannot run what it builds and is a plain release build.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    case "$TARGETARCH" in \
        amd64) target=x86_64-unknown-linux-musl arch=x86_64 ;; \
        arm64) target=aarch64-unknown-linux-musl arch=aarch64 ;; \
        *) echo "unsupported platform linux/$TARGETARCH (SPEC §10: amd64, arm64)" >&2; exit 1 ;; \
    esac \
    && if [ "$(uname -m)" = "$arch" ] && [ "$arch" = x86_64 ]; then \
           cp "$(scripts/pgo.sh)" /jvm-guard; \
       else \
           if [ "$(uname -m)" = "$arch" ]; then build="cargo build"; \
           else build="install-cross-tools.sh cargo zigbuild"; fi \
           && $build --release --locked --target "$target" --bin jvm-guard \
           && cp "target/$target/release/jvm-guard" /jvm-guard; \
       fi

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /jvm-guard /usr/local/bin/jvm-guard
# The distroless nonroot user; the chart and the injected init container run as 65532 too.
USER 65532:65532
# 8443: the HTTPS webhook; 8080: plain-HTTP /healthz, /readyz, /metrics.
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/jvm-guard"]
CMD ["serve"]
