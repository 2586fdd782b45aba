# syntax=docker/dockerfile:1
#
# headroom: the sidecar that predicts a Go service's OOM kill.
#
#   docker build --build-arg HEADROOM_GIT_COMMIT=$(git rev-parse --short=12 HEAD) -t headroom:0.1.0 .
#   docker run --rm --read-only --pid=container:GO_APP headroom:0.1.0 --process app
#
# Two stages. The build stage compiles the release binary with the Rust
# toolchain on Debian 12 (bookworm). The runtime stage is distroless "cc" for
# Debian 12: glibc, libgcc_s and CA certificates, and nothing else: no shell,
# no package manager. The binary is linked against glibc (the default gnu
# target, the same build the tests run), so the runtime carries the glibc it
# was built against (bookworm's, 2.36). A fully static musl build could run on
# distroless/static instead and save about 20 MB, at the price of musl's
# slower allocator and a cross target per architecture; docs/deploying.md
# shows how.
#
# .git is not in the build context: the commit that `headroom --version` and
# headroom_build_info show is the build argument HEADROOM_GIT_COMMIT, else
# "unknown".
#
# At run time headroom writes nothing (except --profile-dir, a volume), so it
# runs with a read-only root filesystem, as the numeric non-root UID 65532.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
# Read by build.rs (as the environment of the RUN below).
ARG HEADROOM_GIT_COMMIT=
WORKDIR /src
# Only what `cargo build` reads (.dockerignore keeps everything else out).
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
# Registry and target caches survive between builds (BuildKit). Debug info is
# stripped; symbol names stay for panic backtraces.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo cargo build --release --locked --bin headroom \
    && install -D -m 0755 target/release/headroom /out/headroom

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="headroom" \
      org.opencontainers.image.description="Predicts a Go service's OOM kill from its memory cgroup and Go runtime, and says why memory grows" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/headroom /usr/local/bin/headroom
# Numeric, so that Kubernetes can enforce runAsNonRoot; distroless' "nonroot".
USER 65532:65532
# /metrics, /api/v1/status, /healthz, /readyz and the dashboard.
EXPOSE 9184
# No HEALTHCHECK: there is no shell or HTTP client in the image to run one.
# Orchestrators probe GET /healthz (alive) and GET /readyz (reading its target).
ENTRYPOINT ["headroom"]
CMD ["run"]
