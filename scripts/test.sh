#!/usr/bin/env bash
# Runs every test: unit tests, and integration tests against real nats-server and RocksDB; then
# the Helm chart and manifest checks (scripts/test-chart.sh) and, as root, the container image:
# built (scripts/image.sh) and run (scripts/test-image.sh). With arguments, only
# `cargo test --all-targets <arguments>` runs (e.g. `scripts/test.sh --test send`).
# Needs scripts/setup.sh to have run once (nats-server on PATH, Debian's librocksdb-dev).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${MQ9_CACHE:-$HOME/.cache/mq9}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
export PATH="$HOME/.cargo/bin:$HOME/.local/bin:$cache/venv/bin:$PATH"
cd "$repo"
cargo test --all-targets "$@"
[ $# -eq 0 ] || exit 0
scripts/test-chart.sh
if [ "$(id -u)" -eq 0 ]; then
  scripts/image.sh
  scripts/test-image.sh
else
  echo "test: the image is built and tested only as root (mmdebstrap, chroot): skipped"
fi
