//! What the injection webhook does to a pod, as pure functions: which request a pod's
//! annotations make ([`request`]), the Mailbox created for `mq9.io/mailbox: auto`
//! ([`auto_mailbox`]), and the JSON patch that wires a Mailbox's Secret into the pod
//! ([`patch`]).
//!
//! Opt-in only, and the opt-in takes two keys: the label `mq9.io/inject: "true"` (what the
//! webhook configuration's `objectSelector` selects, so that no other pod creation in the
//! cluster calls the webhook) and the annotation `mq9.io/mailbox` (which Mailbox). A pod with
//! only one of them reaches the webhook only through a selector that was widened or changed by
//! hand; it is admitted unchanged, with a warning naming the missing key. Injecting it anyway
//! would make what a pod gets depend on how the webhook happens to be configured, and the label
//! would stop being a true list of injected pods (`kubectl get pods -l mq9.io/inject=true`).
//!
//! Idempotent: an injected pod carries `mq9.io/injected` and is never injected again (the API
//! server may call a webhook twice for one pod).

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use serde_json::{json, Value};

use crate::crd::{duration, BrokerRef, ExpirationPolicy, Mailbox, MailboxSpec};
use crate::operator::names::{
    BROKER_ANNOTATION, ENV_CREDS, ENV_KEYS, INJECTED_ANNOTATION, INJECT_LABEL, MAILBOX_ANNOTATION,
    MOUNT_PATH, POD_MAILBOX_LABEL, TTL_ANNOTATION,
};

/// The TTL of an `auto` mailbox without `mq9.io/ttl`.
pub const DEFAULT_AUTO_TTL: &str = "24h";
/// Namespaces never injected, whatever their pods say.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];
/// The volume (and mount) that carries the Secret into the pod.
const VOLUME: &str = "mq9";

/// What the annotations of a pod ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Nothing to do; the reason is for the debug log.
    Skip(&'static str),
    /// Wire the Secret of this existing Mailbox.
    Existing(String),
    /// Create a Mailbox for the pod on `broker` (None: find the namespace's only Broker).
    Auto { broker: Option<String>, ttl: String },
}

/// Reads the pod's opt-in label and annotations. `Err` names what is wrong with them (the pod
/// is admitted anyway, with the message as a warning).
pub fn request(pod: &Pod, namespace: &str, operator_namespace: &str) -> Result<Request, String> {
    if SYSTEM_NAMESPACES.contains(&namespace) || namespace == operator_namespace {
        return Ok(Request::Skip("system namespace"));
    }
    let annotations = pod.annotations();
    if annotations.contains_key(INJECTED_ANNOTATION) {
        return Ok(Request::Skip("already injected"));
    }
    let opted_in = pod.labels().get(INJECT_LABEL).map(String::as_str) == Some("true");
    let wanted = match (annotations.get(MAILBOX_ANNOTATION), opted_in) {
        (None, false) => return Ok(Request::Skip("not opted in")),
        (None, true) => {
            return Err(format!(
                "mq9: the pod has the label {INJECT_LABEL}=true but no annotation \
                 {MAILBOX_ANNOTATION} naming its Mailbox (or `auto`); it gets no mq9 credentials"
            ))
        }
        (Some(_), false) => {
            return Err(format!(
                "mq9: the pod has the annotation {MAILBOX_ANNOTATION} but not the label \
                 {INJECT_LABEL}=true, which injection also needs; it gets no mq9 credentials"
            ))
        }
        (Some(wanted), true) => wanted,
    };
    if wanted != "auto" {
        if !is_dns_subdomain(wanted) {
            return Err(format!(
                "{MAILBOX_ANNOTATION}: {wanted:?} is neither `auto` nor a Mailbox name"
            ));
        }
        return Ok(Request::Existing(wanted.clone()));
    }
    let ttl = annotations
        .get(TTL_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| DEFAULT_AUTO_TTL.to_owned());
    duration::parse(&ttl).map_err(|e| format!("{TTL_ANNOTATION}: {e}"))?;
    let broker = annotations.get(BROKER_ANNOTATION).cloned();
    if let Some(broker) = broker.as_deref().filter(|b| !is_dns_subdomain(b)) {
        return Err(format!(
            "{BROKER_ANNOTATION}: {broker:?} is not a Broker name"
        ));
    }
    Ok(Request::Auto { broker, ttl })
}

/// The Mailbox for a pod's `auto` request: named after the pod (its `generateName` when the
/// name is not known yet) plus `suffix`, deleted at expiry, labelled for the pod watch. Its
/// Broker is in the pod's own namespace, which every Broker admits (`spec.allowedNamespaces`),
/// and the Mailbox controller checks admission for it like for any Mailbox.
pub fn auto_mailbox(pod: &Pod, namespace: &str, suffix: &str, broker: &str, ttl: &str) -> Mailbox {
    let base = pod
        .metadata
        .name
        .clone()
        .or_else(|| pod.metadata.generate_name.clone())
        .unwrap_or_else(|| "pod".to_owned());
    let base: String = base.trim_end_matches(['-', '.']).chars().take(40).collect();
    let spec = MailboxSpec {
        broker_ref: BrokerRef {
            name: broker.to_owned(),
            namespace: None,
        },
        ttl: Some(ttl.to_owned()),
        expiration_policy: ExpirationPolicy::Delete,
        ..MailboxSpec::default()
    };
    let mut mailbox = Mailbox::new(&format!("{base}-{suffix}"), spec);
    mailbox.metadata = ObjectMeta {
        namespace: Some(namespace.to_owned()),
        labels: Some([(POD_MAILBOX_LABEL.to_owned(), "true".to_owned())].into()),
        ..mailbox.metadata
    };
    mailbox
}

/// The JSON patch that gives every container of `pod` the Secret `secret_name` as environment
/// (`envFrom`) and as a read-only mount at `/var/run/secrets/mq9`, and marks the pod injected
/// (and, for `auto`, labelled for the pod watch).
pub fn patch(pod: &Pod, mailbox_name: &str, secret_name: &str, auto: bool) -> json_patch::Patch {
    let mut ops = Vec::new();
    let meta = &pod.metadata;
    add_to_map(
        &mut ops,
        "/metadata/annotations",
        meta.annotations.is_some(),
        INJECTED_ANNOTATION,
        mailbox_name,
    );
    if auto {
        add_to_map(
            &mut ops,
            "/metadata/labels",
            meta.labels.is_some(),
            POD_MAILBOX_LABEL,
            "true",
        );
    }
    let Some(spec) = &pod.spec else {
        return from_ops(ops);
    };
    let volume = json!({"name": VOLUME, "secret": {"secretName": secret_name}});
    add_to_list(&mut ops, "/spec/volumes", spec.volumes.is_some(), volume);
    let lists = [
        ("containers", Some(&spec.containers)),
        ("initContainers", spec.init_containers.as_ref()),
    ];
    for (list, containers) in lists {
        for (i, container) in containers.into_iter().flatten().enumerate() {
            inject_container(
                &mut ops,
                &format!("/spec/{list}/{i}"),
                container,
                secret_name,
            );
        }
    }
    from_ops(ops)
}

/// Adds the Secret's `MQ9_*` keys as environment variables (each by `secretKeyRef`, never
/// `envFrom` of the whole Secret: that would put the NATS seed of `user.creds` into the
/// environment) and mounts the Secret read-only at [`MOUNT_PATH`]. Variables the container
/// already defines are left as they are.
fn inject_container(ops: &mut Vec<Value>, path: &str, container: &Container, secret_name: &str) {
    let defined = container.env.as_deref().unwrap_or_default();
    let mut has_env = container.env.is_some();
    for key in ENV_KEYS {
        if defined.iter().any(|var| var.name == key) {
            continue;
        }
        let var = json!({"name": key, "valueFrom": {"secretKeyRef":
            {"name": secret_name, "key": key, "optional": key == ENV_CREDS}}});
        add_to_list(ops, &format!("{path}/env"), has_env, var);
        has_env = true;
    }
    let mounts = container.volume_mounts.as_deref().unwrap_or_default();
    // A container that already mounts something there keeps it: never two mounts on one path.
    if !mounts.iter().any(|m| m.mount_path == MOUNT_PATH) {
        let mount = json!({"name": VOLUME, "mountPath": MOUNT_PATH, "readOnly": true});
        add_to_list(
            ops,
            &format!("{path}/volumeMounts"),
            container.volume_mounts.is_some(),
            mount,
        );
    }
}

/// Appends `item` to the list at `path`, creating the list when it is missing.
fn add_to_list(ops: &mut Vec<Value>, path: &str, exists: bool, item: Value) {
    ops.push(match exists {
        true => json!({"op": "add", "path": format!("{path}/-"), "value": item}),
        false => json!({"op": "add", "path": path, "value": [item]}),
    });
}

/// Sets `key` in the string map at `path`, creating the map when it is missing.
fn add_to_map(ops: &mut Vec<Value>, path: &str, exists: bool, key: &str, value: &str) {
    ops.push(match exists {
        // JSON pointer escaping: `~` → `~0`, `/` → `~1`.
        true => json!({"op": "add", "path": format!("{path}/{}", key.replace('~', "~0").replace('/', "~1")), "value": value}),
        false => json!({"op": "add", "path": path, "value": {key: value}}),
    });
}

fn from_ops(ops: Vec<Value>) -> json_patch::Patch {
    serde_json::from_value(Value::Array(ops)).expect("the operations are valid JSON patch")
}

/// A Kubernetes object name (RFC 1123 subdomain).
fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
#[path = "inject_tests.rs"]
mod tests;
