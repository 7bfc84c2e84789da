# One image with the three service binaries; docker-compose.yml picks one per container.
#
#   docker build -t one-origin .
#
# Dependencies are compiled in their own layer (cargo-chef), so a source change rebuilds only
# the workspace crates. The binaries are stripped: the release profile keeps line tables for
# profiling on a developer's machine, which would be about 35 MB per binary here.

# Where the runtime stage takes /out/{writer,reader,gateway} from: the `builder` stage below,
# unless `--build-arg BINARIES=<image>` names an image that already holds them (the container
# smoke test, deploy/smoke.sh, passes binaries built on the host, because no Rust image can be
# pulled where it runs).
ARG BINARIES=builder

# Same Debian release as the runtime stage, so the binaries find the glibc they were linked with.
FROM rust:1-slim-bookworm AS chef
RUN cargo install cargo-chef --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=symbols
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p writer -p reader -p gateway \
 && mkdir /out \
 && cp target/release/writer target/release/reader target/release/gateway /out/

FROM ${BINARIES} AS binaries

FROM debian:bookworm-slim AS runtime
# No packages: the health checks are the binaries' own `healthcheck` mode. No user database
# entry either: a numeric, unprivileged uid is all the processes need.
COPY --from=binaries /out/writer /out/reader /out/gateway /usr/local/bin/
# The default routing; docker-compose.yml mounts routes/ over it so that edits on the host apply.
COPY routes/routes.toml /etc/gateway/routes.toml
USER 10001:10001
WORKDIR /app
ENV RUST_LOG=info \
    GATEWAY_ROUTES=/etc/gateway/routes.toml
# The services listen on all interfaces inside their container; compose publishes only the
# gateway.
ENV WRITER_ADDR=0.0.0.0:8090 \
    READER_ADDR=0.0.0.0:8091 \
    GATEWAY_ADDR=0.0.0.0:8080 \
    GATEWAY_ADMIN_ADDR=0.0.0.0:9090
CMD ["gateway"]
