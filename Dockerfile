# quorumd container image.
# Build:  docker build -t quorumd .
# Run:    docker run --rm -p 127.0.0.1:8379:8379 -e QUORUMD_NODES='["redis://redis-1:6379"]' \
#           -e QUORUMD_HTTP__ALLOW_PUBLIC_WITHOUT_AUTH=true quorumd
# Inside a container the API must listen on 0.0.0.0, which quorumd refuses without [auth]
# unless http.allow_public_without_auth is set: enable auth (tokens file mounted read-only)
# or publish the port on the host's loopback only, as docker-compose.yml does.

# --- build stage: the Rust toolchain ----------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
# The workspace: the binary's package at the root, the layers under crates/. Benches are
# declared in the root manifest, so they must be present for cargo to read it. build.rs puts
# the commit in `quorumd --version`; .git is not in the build context (.dockerignore), so an
# image built here says "commit unknown".
COPY Cargo.toml Cargo.lock build.rs ./
COPY crates ./crates
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin quorumd \
    && strip target/release/quorumd

# --- run stage: Debian slim, with curl for the health check -----------------------------
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 quorumd \
    && useradd --system --uid 10001 --gid quorumd --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin quorumd
COPY --from=build /src/target/release/quorumd /usr/local/bin/quorumd
COPY config/quorumd.toml /etc/quorumd/quorumd.toml
ENV QUORUMD_HTTP__LISTEN=0.0.0.0:8379 \
    QUORUMD_RESP__LISTEN=0.0.0.0:7379 \
    QUORUMD_LOG__FORMAT=json
USER 10001:10001
WORKDIR /nonexistent
# HTTP API and dashboard; Redis-protocol front end.
EXPOSE 8379 7379
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8379/healthz"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/quorumd"]
CMD ["run", "--config", "/etc/quorumd/quorumd.toml"]
