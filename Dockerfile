# The emla gateway as a container image (see "Deployment (Docker Compose)"
# in the README). Build: docker build -t emla . (or docker compose build).

# Build stage: the toolchain the project pins (rust-version 1.95).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# --locked: exactly the dependency versions of Cargo.lock.
RUN cargo build --release --locked -p emla-gateway --bin emla \
    && install -m 0755 target/release/emla /usr/local/bin/emla

# Runtime stage: the binary (TLS is rustls, SQL migrations are embedded),
# the system CA roots for next hops with tls = "required", and bash for the
# /readyz health check (the image has no HTTP client).
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A fixed uid, so files mounted from the host (the TLS key, the PostgreSQL
# password file) can be given to it: chown 10001 on the host.
RUN groupadd --system --gid 10001 emla \
    && useradd --system --uid 10001 --gid emla --home-dir /var/lib/emla --shell /usr/sbin/nologin emla \
    && mkdir -p /var/lib/emla /etc/emla \
    && chown emla:emla /var/lib/emla
COPY --from=build /usr/local/bin/emla /usr/local/bin/emla
# Message bodies (the evidence), the SQLite database when no database_url
# is set, and the control socket of `emla policy reload`.
VOLUME ["/var/lib/emla"]
USER emla
WORKDIR /var/lib/emla
EXPOSE 2525 9725
# /readyz of [metrics] (deploy/emla.toml listens on 9725): 200 only when
# the gateway can take mail; docker-compose.yml has the same check.
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9725 && printf 'GET /readyz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && IFS= read -r -t 5 line <&3 && [[ $line == \"HTTP/1.1 200\"* ]]"]
ENTRYPOINT ["emla"]
CMD ["serve", "--config", "/etc/emla/emla.toml"]
