# syntax=docker/dockerfile:1
# The jvm-guard image: the webhook (`serve`) and, from the same image, the tools init container
# that the webhook injects (`install-tools`, which copies this very binary). One static musl
# binary at /usr/local/bin/jvm-guard (src/tools.rs IMAGE_BINARY) on distroless, non-root.
#
#   docker build -t ghcr.io/jvm-guard/jvm-guard:0.1.0 .

FROM rust:1.95-bookworm AS build
# musl-tools gives the crates with C code (ring, the TLS crypto; jemalloc, the allocator) a musl
# C compiler.
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
# The same build as scripts/test.sh (and .cargo/config.toml's static flags): tests/musl.rs checks
# that this binary has no interpreter and runs alone in an empty root.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl --bin jvm-guard \
    && cp target/x86_64-unknown-linux-musl/release/jvm-guard /jvm-guard

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /jvm-guard /usr/local/bin/jvm-guard
# The distroless nonroot user; the chart and the injected init container run as 65532 too.
USER 65532:65532
# 8443: the HTTPS webhook; 8080: plain-HTTP /healthz, /readyz, /metrics.
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/jvm-guard"]
CMD ["serve"]
