# syntax=docker/dockerfile:1
#
# One image holding all three Herald binaries: herald-api, herald-dispatcher
# and herald-worker. The command picks the process:
#
#   docker run herald                      # herald-api serve (the default)
#   docker run herald herald-api migrate   # create the database, migrate, exit
#   docker run herald herald-dispatcher
#   docker run herald herald-worker
#
# Build:  docker build -t herald .        (BuildKit, the default since Docker 23)
#
# One image rather than three: the binaries share one workspace, one lock
# file and most of their code, so building them together costs little more
# than building one; every process of a release then runs the exact same
# build, and there is one tag to promote, scan and roll back.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------- builder --
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
WORKDIR /src

# Dependencies first: the manifests and the lock file with empty sources, so
# the downloaded crates stay in a cached layer until a manifest changes.
COPY Cargo.toml Cargo.lock ./
COPY shared/Cargo.toml shared/
COPY delivery/Cargo.toml delivery/
COPY api/Cargo.toml api/
COPY dispatcher/Cargo.toml dispatcher/
COPY worker/Cargo.toml worker/
COPY testkit/Cargo.toml testkit/
COPY bench/Cargo.toml bench/
RUN for member in shared delivery api dispatcher worker testkit bench; do \
      mkdir -p "$member/src" && touch "$member/src/lib.rs" "$member/src/main.rs"; \
    done \
 && cargo fetch --locked \
 && rm -rf shared/src delivery/src api/src dispatcher/src worker/src testkit/src bench/src

# Then the sources (shared/build.rs embeds migrations/, so it is part of the
# context). Compiled dependencies persist across builds in a BuildKit cache
# mount; the binaries are copied out of it in the same step.
COPY . .
RUN --mount=type=cache,id=herald-target,target=/src/target,sharing=locked \
    cargo build --release --locked --offline \
      -p herald-api -p herald-dispatcher -p herald-worker \
 && install -D -m 0755 -t /out \
      target/release/herald-api target/release/herald-dispatcher target/release/herald-worker

# ---------------------------------------------------------------- runtime --
# debian:bookworm-slim rather than distroless/cc: the same Debian release and
# glibc the builder links against; ca-certificates from Debian (updated by
# rebuilding); and a shell with `sleep`, which the Kubernetes manifests use
# for the api's preStop delay (distroless has neither, and the native sleep
# hook needs Kubernetes 1.30+) and which makes `kubectl exec` debugging
# possible. It costs about 50 MB more than distroless; TLS is rustls, so no
# OpenSSL is needed.
FROM debian:${DEBIAN_RELEASE}-slim

# Unpinned on purpose: the newest security updates of the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 herald \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin herald

COPY --from=builder /out/ /usr/local/bin/

LABEL org.opencontainers.image.title="Herald" \
      org.opencontainers.image.description="Webhook delivery service: herald-api, herald-dispatcher, herald-worker" \
      org.opencontainers.image.licenses="Apache-2.0"

# Containers log JSON lines; set HERALD__LOG__FORMAT=pretty to read them
# yourself. Configuration comes from HERALD__SECTION__KEY variables (or a
# file named by HERALD_CONFIG); the built-in defaults are production-safe.
ENV HERALD__LOG__FORMAT=json

# An empty, root-owned working directory: no ./herald.toml is picked up
# unless one is mounted here on purpose.
WORKDIR /app

# A fixed numeric non-root user, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

# api (HTTP API, /healthz, /readyz, /metrics), dispatcher and worker
# (health + metrics).
EXPOSE 8080 9091 9092

CMD ["herald-api", "serve"]
