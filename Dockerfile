# syntax=docker/dockerfile:1
# The image of helm/ringcast: `docker build -t ringcast:0.1.0 .`
# Stage 1 builds the release binary; dependencies are built in their own layer from the
# manifests alone, so a change to the sources rebuilds only ringcast itself.
FROM rust:1-bookworm AS builder
WORKDIR /build

# Dependency layer: the workspace manifests with stub sources.
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY cluster/Cargo.toml cluster/Cargo.toml
COPY loadtest/Cargo.toml loadtest/Cargo.toml
RUN mkdir -p src cluster/src loadtest/src/bin \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs cluster/src/lib.rs loadtest/src/lib.rs \
    && echo 'fn main() {}' > loadtest/src/main.rs && echo 'fn main() {}' > loadtest/src/bin/raw_broadcast.rs \
    && cargo build --release --locked -p ringcast \
    && rm -rf src cluster/src loadtest/src

# The sources; touching them makes cargo rebuild the workspace crates over the stubs.
COPY src src
# The admin API serves docs/openapi.json, compiled in (include_str!).
COPY docs/openapi.json docs/openapi.json
COPY cluster/src cluster/src
COPY loadtest/src loadtest/src
RUN touch src/main.rs src/lib.rs cluster/src/lib.rs \
    && cargo build --release --locked -p ringcast \
    && install -D -m 0755 target/release/ringcast /out/ringcast

# Stage 2: a small runtime with a shell-less user, the binary and nothing else of the build.
# (debian slim rather than distroless: the chart's preStop hook runs `sleep`.)
FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 ringcast \
    && useradd --system --uid 10001 --gid ringcast --no-create-home --shell /usr/sbin/nologin ringcast
COPY --from=builder /out/ringcast /usr/local/bin/ringcast
USER 10001:10001
# Configuration comes from RINGCAST_* environment variables (every flag has one).
ENV RINGCAST_LISTEN=0.0.0.0:8080 \
    RINGCAST_LOG_FORMAT=json
# 8080: clients (ws/wss, HTTP); 7946: cluster links (TCP) and gossip (UDP); 9090: admin/metrics.
EXPOSE 8080 7946/tcp 7946/udp 9090
ENTRYPOINT ["/usr/local/bin/ringcast", "serve"]
