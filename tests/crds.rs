//! The CRDs in `crds/` are exactly what `mq9 crds` prints, and every sample in
//! `config/samples/` is valid against them: accepted by the generated OpenAPI schema (the part
//! of the API server's validation that can run here; CEL rules need a real API server) and by
//! the operator's own Rust types.

use std::path::Path;

use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn crds_folder_is_the_generated_output() {
    let committed = std::fs::read_to_string(repo().join("crds/mq9.yaml")).unwrap();
    assert!(
        committed == mq9::crd::yaml(),
        "crds/mq9.yaml differs from the CRD types: run `cargo run -- crds > crds/mq9.yaml`"
    );
}

/// The openAPIV3Schema of `kind`, from the generated CRDs.
fn schema_of(kind: &str) -> Value {
    let crd = mq9::crd::all()
        .into_iter()
        .find(|crd| crd.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for kind {kind}"));
    let version = &crd.spec.versions[0];
    serde_json::to_value(&version.schema.as_ref().unwrap().open_api_v3_schema).unwrap()
}

/// Validates `value` against the structural-schema subset the CRDs use, returning every
/// violation as `path: problem`.
fn violations(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            out.push(format!("{path}: null is not allowed"));
        }
        return;
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        if !(value.is_i64() || value.is_string()) {
            out.push(format!("{path}: must be an integer or a string"));
        }
        return;
    }
    let type_ok = match schema.get("type").and_then(Value::as_str) {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        out.push(format!("{path}: must be of type {}", schema["type"]));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            out.push(format!("{path}: {value} is not one of {allowed:?}"));
        }
    }
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        if value.as_f64().is_some_and(|v| v < min) {
            out.push(format!("{path}: {value} is below the minimum {min}"));
        }
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        if value.as_f64().is_some_and(|v| v > max) {
            out.push(format!("{path}: {value} is above the maximum {max}"));
        }
    }
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as u64;
        if schema
            .get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|min| length < min)
        {
            out.push(format!("{path}: shorter than minLength"));
        }
        if schema
            .get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|max| length > max)
        {
            out.push(format!("{path}: longer than maxLength"));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            if !regex::Regex::new(pattern).unwrap().is_match(text) {
                out.push(format!("{path}: {text:?} does not match {pattern}"));
            }
        }
    }
    if let Some(items) = value.as_array() {
        for (i, item) in items.iter().enumerate() {
            violations(&schema["items"], item, &format!("{path}[{i}]"), out);
        }
    }
    if let Some(object) = value.as_object() {
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !object.contains_key(required.as_str().unwrap()) {
                out.push(format!(
                    "{path}: {} is required",
                    required.as_str().unwrap()
                ));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (key, field) in object {
            let field_path = format!("{path}.{key}");
            match (
                properties.and_then(|p| p.get(key)),
                schema.get("additionalProperties"),
            ) {
                (Some(field_schema), _) => violations(field_schema, field, &field_path, out),
                (None, Some(extra)) if extra.is_object() => {
                    violations(extra, field, &field_path, out)
                }
                // A structural schema prunes unknown fields: a sample relying on one is wrong.
                (None, _) if properties.is_some() => {
                    out.push(format!("{field_path}: unknown field"))
                }
                (None, _) => {}
            }
        }
    }
}

fn check(kind: &str, object: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let schema = schema_of(kind);
    for part in ["spec", "status"] {
        if let Some(value) = object.get(part) {
            violations(&schema["properties"][part], value, part, &mut out);
        }
    }
    out
}

fn samples() -> Vec<(String, Value)> {
    let dir = repo().join("config/samples");
    let mut samples: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, serde_yaml::from_str(&text).unwrap())
        })
        .collect();
    samples.sort_by(|a, b| a.0.cmp(&b.0));
    samples
}

#[test]
fn every_sample_is_valid() {
    let samples = samples();
    let kinds: Vec<&str> = samples
        .iter()
        .map(|(_, s)| s["kind"].as_str().unwrap())
        .collect();
    for kind in ["Broker", "Mailbox", "Broadcast"] {
        assert!(kinds.contains(&kind), "config/samples has a {kind}");
    }
    for (name, sample) in &samples {
        assert_eq!(sample["apiVersion"], "mq9.io/v1alpha1", "{name}");
        let kind = sample["kind"].as_str().unwrap();
        let problems = check(kind, sample);
        assert!(problems.is_empty(), "{name}: {problems:?}");
        let typed = match kind {
            "Broker" => serde_json::from_value::<mq9::crd::Broker>(sample.clone()).err(),
            "Mailbox" => serde_json::from_value::<mq9::crd::Mailbox>(sample.clone()).err(),
            "Broadcast" => serde_json::from_value::<mq9::crd::Broadcast>(sample.clone()).err(),
            other => panic!("{name}: unexpected kind {other}"),
        };
        assert!(typed.is_none(), "{name} does not deserialize: {typed:?}");
    }
}

#[test]
fn the_schema_rejects_what_the_api_server_would() {
    let mailbox = |spec: Value| serde_json::json!({"spec": spec});
    let broker = serde_json::json!({"name": "agents"});
    let cases = [
        (
            "Mailbox",
            mailbox(serde_json::json!({"brokerRef": broker, "address": "Bad_Address"})),
            "address",
        ),
        (
            "Mailbox",
            mailbox(serde_json::json!({"brokerRef": broker, "type": "newest"})),
            "type",
        ),
        (
            "Mailbox",
            mailbox(serde_json::json!({"brokerRef": broker, "ttl": "1 hour"})),
            "ttl",
        ),
        (
            "Mailbox",
            mailbox(serde_json::json!({"brokerRef": broker, "expirationPolicy": "Forget"})),
            "expirationPolicy",
        ),
        (
            "Mailbox",
            mailbox(serde_json::json!({"ttl": "1h"})),
            "brokerRef is required",
        ),
        (
            "Mailbox",
            mailbox(serde_json::json!({"brokerRef": broker, "adress": "a.b"})),
            "unknown field",
        ),
        (
            "Broker",
            serde_json::json!({"spec": {"replicas": 0}}),
            "replicas",
        ),
        (
            "Broker",
            serde_json::json!({"spec": {"auth": {"mode": "password"}}}),
            "mode",
        ),
        (
            "Broadcast",
            serde_json::json!({"spec": {"brokerRef": broker}}),
            "topic is required",
        ),
    ];
    for (kind, object, expected) in cases {
        let problems = check(kind, &object);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{kind} {object}: expected a problem with {expected}, got {problems:?}"
        );
    }
}

/// The `x-kubernetes-validations` rules of `kind` (root and spec), as `(rule, message)`.
fn cel_rules(kind: &str, part: Option<&str>) -> Vec<(String, String)> {
    let schema = schema_of(kind);
    let at = part.map_or(&schema, |p| &schema["properties"][p]);
    at["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| (r["rule"].as_str().unwrap().into(), r["message"].to_string()))
        .collect()
}

/// CEL cannot run here, so the Broker name rule's regular expression and length are checked
/// against the operator's own check (which refuses names on API servers without CEL): both must
/// accept and refuse the same names.
#[test]
fn the_broker_name_rule_is_the_operators_check() {
    let rules = cel_rules("Broker", None);
    let (rule, message) = rules
        .iter()
        .find(|(rule, _)| rule.contains("metadata.name"))
        .expect("a rule on the Broker's name");
    assert!(
        message.contains("DNS-1035") && message.contains("52"),
        "{message}"
    );
    let pattern = rule
        .split('\'')
        .nth(1)
        .expect("a quoted regular expression");
    let regex = regex::Regex::new(pattern).unwrap();
    assert!(rule.contains("self.metadata.name.size() <= 52"), "{rule}");
    let long = "a".repeat(52);
    let too_long = "a".repeat(53);
    for name in [
        "agents",
        "v2-agents",
        "a",
        &long,
        "v2.agents",
        "2agents",
        "Agents",
        "agents-",
        &too_long,
    ] {
        let cel_accepts = regex.is_match(name) && name.len() <= 52;
        let spec = serde_json::from_value(serde_json::json!({})).unwrap();
        let broker = mq9::crd::Broker::new(name, spec);
        let operator_accepts = broker.name_problem().is_none();
        assert_eq!(cel_accepts, operator_accepts, "{name:?}");
    }
}

#[test]
fn a_mailboxs_secret_name_and_type_are_immutable() {
    let spec_rules = cel_rules("Mailbox", Some("spec"));
    assert!(
        spec_rules
            .iter()
            .any(|(r, _)| r == "self.type == oldSelf.type"),
        "{spec_rules:?}"
    );
    let root_rules = cel_rules("Mailbox", None);
    let (rule, _) = root_rules
        .iter()
        .find(|(r, _)| r.contains("secretName"))
        .expect("a secretName rule on the root (its default depends on metadata.name)");
    for part in ["oldSelf.spec.secretName", "self.metadata.name + '-mq9'"] {
        assert!(rule.contains(part), "{rule}");
    }
}

/// CEL cannot run here: the replica rule is checked as text and against the operator's own
/// check (which refuses even counts on API servers without CEL), for every count the schema
/// allows.
#[test]
fn the_broker_replicas_rule_is_the_operators_check() {
    let rules = cel_rules("Broker", Some("spec"));
    let (rule, message) = rules
        .iter()
        .find(|(rule, _)| rule.contains("replicas"))
        .expect("a rule on the replica count");
    assert_eq!(rule, "self.replicas % 2 == 1");
    assert!(message.contains("quorum"), "{message}");
    for replicas in 1..=9 {
        let spec = serde_json::from_value(serde_json::json!({"replicas": replicas})).unwrap();
        let broker = mq9::crd::Broker::new("agents", spec);
        let cel_accepts = replicas % 2 == 1;
        assert_eq!(
            cel_accepts,
            broker.replicas_problem().is_none(),
            "{replicas}"
        );
    }
}
