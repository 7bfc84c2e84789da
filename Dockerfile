# One image with the three service binaries; docker-compose.yml picks one per container.
#
#   docker build -t one-origin .
#
# Dependencies are compiled in their own layer (cargo-chef), so a source change rebuilds only
# the workspace crates.

# Same Debian release as the runtime stage, so the binaries find the glibc they were linked with.
FROM rust:1-slim-bookworm AS chef
RUN cargo install cargo-chef --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p writer -p reader -p gateway

FROM debian:bookworm-slim AS runtime
# curl: for the container health checks only.
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app
COPY --from=builder /src/target/release/writer /src/target/release/reader /src/target/release/gateway /usr/local/bin/
COPY routes.toml /etc/gateway/routes.toml
WORKDIR /app
USER app
ENV RUST_LOG=info \
    GATEWAY_ROUTES=/etc/gateway/routes.toml
# The services listen on all interfaces inside their container; compose publishes only the
# gateway.
ENV WRITER_ADDR=0.0.0.0:8090 \
    READER_ADDR=0.0.0.0:8091 \
    GATEWAY_ADDR=0.0.0.0:8080 \
    GATEWAY_ADMIN_ADDR=0.0.0.0:9090
CMD ["gateway"]
