# syntax=docker/dockerfile:1.7
#
# One image with every binary: `pos` (all services in one process, and the operator commands)
# and one binary per service (`pos-intake`, `pos-routing`, `pos-sla`, `pos-ticketing`,
# `pos-notify`, and the web cabinet `pos-web`). A deployment picks the binary with the container's command.
#
#   docker build -t pos:dev .
#   docker run --rm pos:dev pos-routing --help
#
# See docs/deploy.md.

ARG RUST_VERSION=1.94

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# Nothing else is needed from the system: protoc comes vendored (protoc-bin-vendored), TLS is
# rustls with bundled roots, and SQLite is compiled in.
COPY . .
# The registry and target caches survive between builds, so a change to one service recompiles
# that service only. Binaries are copied out inside the same step because a cache mount is not
# part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    set -e; \
    bins="pos pos-intake pos-routing pos-sla pos-ticketing pos-notify pos-web"; \
    cargo build --release --locked --bins $(printf -- '-p %s ' $bins); \
    mkdir -p /out/bin /out/data; \
    for bin in $bins; do cp "target/release/$bin" /out/bin/; done

# glibc and libgcc only, no shell and no package manager; `nonroot` is uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /out/bin/ /usr/local/bin/
# The data directory must exist and belong to the runtime user: embedded-mode files, local
# attachments and the mailbox live there unless servers are configured. Orchestrators mount a
# volume over it (the root filesystem may be read-only).
COPY --from=build --chown=65532:65532 /out/data /var/lib/pos
USER 65532:65532
WORKDIR /var/lib/pos
# Inside a container the loopback defaults would make the process unreachable.
ENV POS_GRPC_ADDR=0.0.0.0:50051 \
    POS_METRICS_ADDR=0.0.0.0:9464 \
    POS_WEB__ADDR=0.0.0.0:8080 \
    POS_DATA_DIR=/var/lib/pos \
    POS_JSON_LOGS=true
EXPOSE 50051 9464 8080
# Every service in one process; set the command to one service's binary to run it alone.
CMD ["pos", "up"]
