"""Checks of the Helm chart and the manifests that need more than a schema (scripts/test-chart.sh).

Each subcommand exits non-zero with a line saying what is wrong:
  crd-schemas CRDS OUT_DIR       one strict JSON Schema per kind (Broker.json...) from the CRDs'
                                 openAPIV3Schema, for check-jsonschema
  same-crds RENDERED CRDS        the chart's CRDs are crds/mq9.yaml (plus Helm's labels and the
                                 keep policy, which must be there)
  same-rbac RENDERED RBAC        the chart's operator ClusterRole has config/operator/rbac.yaml's rules
  apply-order FILE...            `kubectl apply -f` of these files, in this order, creates every
                                 namespace before what lives in it
  scenario NAME RENDERED         what one `helm template` run must (not) contain
  versions VERSION FILE...       each file names VERSION where it names mq9's version
"""

import json
import os
import re
import sys

import yaml


def fail(message):
    print(f"chart check FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def documents(path):
    with open(path, encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def strict(schema):
    """Refuses unknown fields like the API server's strict field validation (kubectl's default):
    an object schema that lists its properties and does not keep unknown fields admits no other."""
    if isinstance(schema, dict):
        for value in schema.values():
            strict(value)
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        for value in schema:
            strict(value)
    return schema


def crd_schemas(crds, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for crd in documents(crds):
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        [version] = [v for v in crd["spec"]["versions"] if v.get("storage")]
        schema = strict(version["schema"]["openAPIV3Schema"])
        schema["properties"].update(
            apiVersion={"const": f"{group}/{version['name']}"},
            kind={"const": kind},
            metadata={"type": "object"},
        )
        schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind"})
        with open(os.path.join(out_dir, f"{kind}.json"), "w", encoding="utf-8") as out:
            json.dump(schema, out)


def of_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def same_crds(rendered, crds):
    expected = {c["metadata"]["name"]: c for c in documents(crds)}
    got = {c["metadata"]["name"]: c for c in of_kind(documents(rendered), "CustomResourceDefinition")}
    if sorted(got) != sorted(expected):
        fail(f"the chart renders CRDs {sorted(got)}, crds/ has {sorted(expected)}")
    for name, crd in got.items():
        metadata = crd["metadata"]
        if metadata.get("annotations", {}).get("helm.sh/resource-policy") != "keep":
            fail(f"CRD {name} lacks helm.sh/resource-policy: keep")
        del metadata["annotations"]["helm.sh/resource-policy"]
        for key in [k for k in metadata.get("labels", {}) if k.startswith(("app.kubernetes.io/", "helm.sh/"))]:
            del metadata["labels"][key]
        for field in ("annotations", "labels"):
            if metadata.get(field) == {}:
                del metadata[field]
        if crd != expected[name]:
            fail(f"CRD {name} in the chart differs from crds/mq9.yaml: copy crds/mq9.yaml to charts/mq9/files/crds.yaml")


def same_rbac(rendered, rbac):
    def rules(objects):
        [role] = [o for o in of_kind(objects, "ClusterRole") if o["metadata"]["name"] == "mq9-operator"]
        return sorted(json.dumps(rule, sort_keys=True) for rule in role["rules"])

    chart, config = rules(documents(rendered)), rules(documents(rbac))
    if chart != config:
        fail(f"the chart's ClusterRole and config/operator/rbac.yaml differ: {set(chart) ^ set(config)}")


def apply_order(paths):
    created = set()
    for path in paths:
        for obj in documents(path):
            namespace = obj["metadata"].get("namespace")
            if namespace and namespace not in created:
                fail(f"{path}: {obj['kind']} {obj['metadata']['name']} is applied before namespace {namespace} exists")
            if obj["kind"] == "Namespace":
                created.add(obj["metadata"]["name"])
            if obj["kind"] == "Broker" and "storageClassName" in obj["spec"].get("storage", {}):
                fail(f"{path}: a sample names a storage class; use the cluster's default")


def scenario(name, rendered):
    objects = documents(rendered)
    kinds = {o["kind"] for o in objects}
    [deployment] = of_kind(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    expect = {
        "default": lambda: (
            {"CustomResourceDefinition", "MutatingWebhookConfiguration", "PodDisruptionBudget", "NetworkPolicy"} <= kinds
            and not kinds & {"ServiceMonitor", "PodMonitor"}
            and container["image"] == f"ghcr.io/mq9/mq9:{os.environ['MQ9_VERSION']}"
            and deployment["spec"]["replicas"] == 2
            and "podAntiAffinity" in pod["affinity"]
            and pod["securityContext"]["runAsNonRoot"] is True
            and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
            and container["securityContext"]["readOnlyRootFilesystem"] is True
            and container["securityContext"]["capabilities"]["drop"] == ["ALL"]
            and "--webhook-addr=0.0.0.0:9443" in container["args"]
            and {r["metadata"]["name"] for r in of_kind(objects, "ClusterRole")} >= {"mq9-view", "mq9-edit"}
        ),
        "custom": lambda: (
            not kinds & {"CustomResourceDefinition", "MutatingWebhookConfiguration", "PodDisruptionBudget"}
            and {"ServiceMonitor", "PodMonitor"} <= kinds
            and re.fullmatch(r"registry\.example/mq9@sha256:[0-9a-f]{64}", container["image"])
            and pod["imagePullSecrets"] == [{"name": "regcred"}]
            and not any(a.startswith("--webhook") for a in container["args"])
            and deployment["spec"]["replicas"] == 1
        ),
        "monitoring-without-api": lambda: not kinds & {"ServiceMonitor", "PodMonitor"},
    }
    if not expect[name]():
        fail(f"scenario {name}: the rendered chart is not what these values ask for ({rendered})")
    for webhook in of_kind(objects, "MutatingWebhookConfiguration"):
        for hook in webhook["webhooks"]:
            if "caBundle" in hook["clientConfig"]:
                fail("the chart templates a caBundle: the operator owns it")
            if not hook.get("objectSelector"):
                fail("the webhook has no objectSelector: every pod creation would call it")


def versions(version, paths):
    patterns = [r"ghcr\.io/mq9/mq9:([0-9][^\s\"']*)", r"image\.version=([0-9][^\s\"'\\]*)", r"^(?:app)?[vV]ersion: \"?([^\s\"]+)"]
    for path in paths:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
        found = [m for p in patterns for m in re.findall(p, text, re.MULTILINE)]
        if not found:
            fail(f"{path} names no version of mq9")
        if any(v != version for v in found):
            fail(f"{path} names version(s) {sorted(set(found))}, Cargo.toml says {version}")


def main(command, *args):
    commands = {
        "crd-schemas": crd_schemas,
        "same-crds": same_crds,
        "same-rbac": same_rbac,
        "apply-order": lambda *paths: apply_order(paths),
        "scenario": scenario,
        "versions": lambda version, *paths: versions(version, paths),
    }
    commands[command](*args)


if __name__ == "__main__":
    main(*sys.argv[1:])
