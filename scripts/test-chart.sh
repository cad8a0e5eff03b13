#!/usr/bin/env bash
# Tests the Helm chart charts/mq9 and the plain manifests (config/), offline:
#   - `helm lint --strict`, and values.schema.json refusing a bad value;
#   - `helm template` with the default values and with non-default ones (digest, pullSecrets,
#     crds.install=false, webhook off, one replica, monitoring on with and without the
#     monitoring.coreos.com/v1 API), each checked for what those values ask for;
#   - every rendered object and every file of config/ validated strictly (unknown fields are
#     errors) against the Kubernetes schemas of the oldest supported (1.30) and the newest
#     version kubernetes-validate ships; an object of a kind it has no schema for fails, except
#     the Prometheus Operator's, whose fields the scenario check reads;
#   - every sample (Broker, Mailbox, Broadcast) against its CRD's openAPIV3Schema, strictly
#     (check-jsonschema), and `kubectl apply -f config/operator/` and the samples' order:
#     namespaces before what lives in them;
#   - the chart's CRDs equal crds/mq9.yaml, its operator ClusterRole equals
#     config/operator/rbac.yaml's, and every file that names mq9's version names Cargo.toml's.
# Installs its tools first (scripts/tools.sh). Fails loudly on the first check that fails.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${MQ9_CACHE:-$HOME/.cache/mq9}
"$repo/scripts/tools.sh"
helm="$cache/tools/bin/helm"
venv="$cache/venv"
export MQ9_VERSION
MQ9_VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n 1)
chart="$repo/charts/mq9"
checks=("$venv/bin/python" "$repo/scripts/chart_checks.py")
kube_versions=(1.30.0 1.37.0)

work=$(mktemp -d "${TMPDIR:-/tmp}/mq9-chart-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() {
  echo "test-chart: FAILED: $*" >&2
  exit 1
}

# Strict validation against the Kubernetes schemas; "Couldn't find schema" is a failure too.
validate() {
  local version out
  for version in "${kube_versions[@]}"; do
    out=$("$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "$@" 2>&1) ||
      fail "not valid for Kubernetes $version: $out"
    out=$(grep -v "kind \(ServiceMonitor\|PodMonitor\) with api version monitoring.coreos.com/v1" <<<"$out" || true)
    [ -z "$out" ] || fail "not validated for Kubernetes $version: $out"
  done
}

"$helm" lint --strict "$chart" >"$work/lint.log" 2>&1 || fail "helm lint: $(cat "$work/lint.log")"
if "$helm" template mq9 "$chart" --set operator.replicas=0 >/dev/null 2>&1; then
  fail "values.schema.json accepted operator.replicas=0"
fi
if "$helm" template mq9 "$chart" --set image.pullPolicy=Sometimes >/dev/null 2>&1; then
  fail "values.schema.json accepted image.pullPolicy=Sometimes"
fi

render() {
  local name=$1
  shift
  "$helm" template mq9 "$chart" --namespace mq9-system "$@" >"$work/$name.yaml" ||
    fail "helm template ($name) failed"
  validate "$work/$name.yaml"
  "${checks[@]}" scenario "$name" "$work/$name.yaml"
  echo "test-chart: $name values render $(grep -c '^kind:' "$work/$name.yaml") valid objects"
}
monitoring=(--set metrics.serviceMonitor.enabled=true --set metrics.podMonitor.enabled=true)
render default
render custom --set image.repository=registry.example/mq9 \
  --set image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef \
  --set 'image.pullSecrets={regcred}' --set crds.install=false --set webhook.enabled=false \
  --set operator.replicas=1 "${monitoring[@]}" \
  --api-versions monitoring.coreos.com/v1/ServiceMonitor --api-versions monitoring.coreos.com/v1/PodMonitor
render monitoring-without-api "${monitoring[@]}"

"${checks[@]}" same-crds "$work/default.yaml" "$repo/crds/mq9.yaml"
cmp -s "$repo/crds/mq9.yaml" "$chart/files/crds.yaml" ||
  fail "charts/mq9/files/crds.yaml differs from crds/mq9.yaml: copy it"
"${checks[@]}" same-rbac "$work/default.yaml" "$repo/config/operator/rbac.yaml"
echo "test-chart: the chart's CRDs and operator ClusterRole are crds/ and config/operator/'s"

# The plain manifests, in the order `kubectl apply -f` takes them (file names sorted).
operator_files=("$repo"/config/operator/*.yaml)
sample_files=("$repo"/config/samples/*.yaml)
validate "${operator_files[@]}" "$repo/config/samples-namespace.yaml"
"${checks[@]}" apply-order "$repo/crds/mq9.yaml" "${operator_files[@]}"
"${checks[@]}" apply-order "$repo/config/samples-namespace.yaml" "${sample_files[@]}"
"${checks[@]}" crd-schemas "$repo/crds/mq9.yaml" "$work/schemas"
for sample in "${sample_files[@]}"; do
  kind=$(sed -n 's/^kind: //p' "$sample")
  [ -f "$work/schemas/$kind.json" ] || fail "$sample: no CRD for kind '$kind'"
  "$venv/bin/check-jsonschema" --schemafile "$work/schemas/$kind.json" "$sample" >"$work/sample.log" 2>&1 ||
    fail "$sample is not a valid $kind: $(cat "$work/sample.log")"
done
echo "test-chart: config/ validates and applies in order; ${#sample_files[@]} samples match their CRDs"

"${checks[@]}" versions "$MQ9_VERSION" "$chart/Chart.yaml" "$repo/Dockerfile" \
  "$repo/config/operator/deployment.yaml"
echo "test-chart: passed"
