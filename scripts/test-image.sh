#!/usr/bin/env bash
# Tests the image scripts/image.sh built by running what is inside it, as a container runtime
# would: the OCI archive is unpacked with umoci, then each command runs chrooted into the image's
# root filesystem as uid/gid 65532, in its own mount and PID namespaces (a fresh /proc, the
# host's /dev), with only the image's PATH. Nothing from the host is used but the kernel.
#   1. `mq9 --version` prints the version in Cargo.toml;
#   2. `mq9 dev` starts (the image's nats-server as its child), and the image's own CLI creates
#      a mailbox, SENDs to it and FETCHes the message back; then `mq9 dev` stops on SIGTERM;
#   3. the image's mq9 accepts the operator command lines of the chart (webhook on and off) and
#      of config/operator/deployment.yaml (each parsed, with --help so that it stops there).
# Every wait has a deadline; any failure exits non-zero with what went wrong and mq9 dev's log.
# Usage: scripts/test-image.sh [archive]   (default: $MQ9_CACHE/image/mq9-<version>.oci.tar)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${MQ9_CACHE:-$HOME/.cache/mq9}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n 1)
archive=${1:-$cache/image/mq9-$version.oci.tar}

fail() {
  echo "test-image: FAILED: $*" >&2
  [ -f "${log:-}" ] && sed 's/^/  mq9 dev: /' "$log" >&2
  exit 1
}
[ "$(id -u)" -eq 0 ] || fail "run as root (chroot and namespaces)"
[ -f "$archive" ] || fail "no image at $archive: run scripts/image.sh first"
command -v umoci >/dev/null 2>&1 || fail "umoci is missing: run scripts/image.sh first"

# No container builder runs here, so the Dockerfile is held to the parts scripts/image.sh uses:
# the same runtime packages, user, nats-server and entrypoint.
for part in "librocksdb7.8 ca-certificates" "--uid 65532 --gid 65532" "USER 65532:65532" \
  "NATS_SERVER_VERSION=$(sed -n 's/^nats_version=//p' "$repo/scripts/image.sh")" 'ENTRYPOINT ["mq9"]'; do
  grep -qF -- "$part" "$repo/Dockerfile" || fail "the Dockerfile lacks '$part' (scripts/image.sh has it)"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/mq9-image-test.XXXXXX")
dev_pid=
cleanup() {
  [ -n "$dev_pid" ] && kill "$dev_pid" 2>/dev/null && wait "$dev_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/layout"
tar -xf "$archive" -C "$work/layout"
umoci unpack --image "$work/layout:$version" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"
log="$work/dev.log"

# The image's configuration, as a runtime reads it: user, entrypoint and PATH.
manifest_config() {
  python3 - "$work/layout" "$version" <<'EOF'
import json, sys, os
layout, tag = sys.argv[1], sys.argv[2]
def blob(digest):
    algo, hexa = digest.split(":")
    return json.load(open(os.path.join(layout, "blobs", algo, hexa)))
index = json.load(open(os.path.join(layout, "index.json")))
[manifest] = [m for m in index["manifests"]
              if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
config = blob(blob(manifest["digest"])["config"]["digest"])["config"]
print(config["User"], " ".join(config["Entrypoint"]), config["Labels"]["org.opencontainers.image.version"])
EOF
}
read -r user entrypoint label_version <<<"$(manifest_config)"
[ "$user" = "65532:65532" ] || fail "the image runs as '$user', not 65532:65532"
[ "$entrypoint" = "mq9" ] || fail "the entrypoint is '$entrypoint', not mq9"
[ "$label_version" = "$version" ] || fail "the version label is '$label_version', not $version"

# Runs a command inside the image as its user, the way a runtime would.
in_image() {
  # shellcheck disable=SC2016 # the inner bash expands $0 and $@
  unshare --mount --pid --fork --kill-child=SIGTERM --mount-proc="$rootfs/proc" \
    bash -c 'mount --rbind /dev "$0/dev" && exec chroot --userspec=65532:65532 "$0" "$@"' \
    "$rootfs" /usr/bin/env -i HOME=/home/mq9 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

printed=$(in_image mq9 --version) || fail "mq9 --version exited non-zero"
[ "$printed" = "mq9 $version" ] || fail "mq9 --version printed '$printed', not 'mq9 $version'"
echo "test-image: mq9 --version: $printed"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
nats_port=$(free_port)
http_port=$(free_port)
in_image mq9 dev --port "$nats_port" --http-addr "127.0.0.1:$http_port" \
  --data-dir /home/mq9/data >"$log" 2>&1 &
dev_pid=$!
server=(--server "nats://127.0.0.1:$nats_port")

# Ready when the image's CLI can create the mailbox (nats-server up, broker serving).
deadline=$((SECONDS + 30))
until in_image mq9 "${server[@]}" --timeout 1 mailbox create --name image.test --ttl 600 \
  >/dev/null 2>&1; do
  kill -0 "$dev_pid" 2>/dev/null || fail "mq9 dev exited before serving"
  [ $SECONDS -lt $deadline ] || fail "mq9 dev did not serve a mailbox create within 30 s"
  sleep 0.2
done
payload="hello from the image $RANDOM"
in_image mq9 "${server[@]}" send image.test "$payload" >/dev/null || fail "mq9 send failed"
fetched=$(in_image mq9 "${server[@]}" --json fetch image.test --group image-test --ack) || fail "mq9 fetch failed"
python3 - "$payload" "$fetched" <<'EOF' || fail "FETCH did not return the message sent: $fetched"
import base64, json, sys
payload, reply = sys.argv[1], json.loads(sys.argv[2])
got = [base64.b64decode(m["payload"]).decode() for m in reply["messages"]]
sys.exit(0 if got == [payload] else 1)
EOF
echo "test-image: mq9 dev in the image served a SEND and a FETCH that returned it"

kill -TERM "$dev_pid"
deadline=$((SECONDS + 15))
while kill -0 "$dev_pid" 2>/dev/null; do
  [ $SECONDS -lt $deadline ] || fail "mq9 dev did not stop within 15 s of SIGTERM"
  sleep 0.1
done
dev_pid=
log=
"$repo/scripts/tools.sh"
operator_command() {
  "$cache/venv/bin/python" -c '
import sys, yaml
[deployment] = [d for d in yaml.safe_load_all(sys.stdin) if d and d["kind"] == "Deployment"]
[container] = deployment["spec"]["template"]["spec"]["containers"]
print("\n".join(container["command"] + container["args"]))'
}
for source in chart chart-without-webhook config; do
  case $source in
    chart) manifest=$("$cache/tools/bin/helm" template mq9 "$repo/charts/mq9") ;;
    chart-without-webhook) manifest=$("$cache/tools/bin/helm" template mq9 "$repo/charts/mq9" --set webhook.enabled=false) ;;
    config) manifest=$(cat "$repo/config/operator/deployment.yaml") ;;
  esac
  mapfile -t command < <(operator_command <<<"$manifest")
  in_image "${command[@]}" --help >/dev/null 2>"$work/operator.err" ||
    fail "the image's mq9 refuses the $source's operator command line: $(cat "$work/operator.err")"
done
echo "test-image: the image's mq9 accepts the operator command lines of the chart and config/operator"
echo "test-image: passed"
