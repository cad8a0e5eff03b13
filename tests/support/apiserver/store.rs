//! The object store: JSON objects keyed by resource (`<apiVersion>/<plural>`, e.g.
//! `apps/v1/statefulsets`), namespace (`""` when cluster-scoped) and name; one global
//! resourceVersion counter; and a bounded history of changes, which watches replay and follow.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::{json, Map, Value};

use super::rules;
use super::select::Selector;

/// How many changes the history keeps: a watch resuming from an older resourceVersion gets
/// `410 Gone`, as from a real API server after etcd compacted its history.
pub const HISTORY: usize = 10_000;

/// Where an object lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(resource: &str, namespace: &str, name: &str) -> Key {
        Key {
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// An error, answered as a Kubernetes `Status` object (which kube maps to `kube::Error::Api`).
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }
    pub fn not_found(key: &Key) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", key.resource, key.name),
        )
    }
    pub fn conflict(key: &Key, why: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": {why}",
                key.resource, key.name
            ),
        )
    }
    pub fn status(&self) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": self.message, "reason": self.reason, "code": self.code})
    }
}

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The main resource: everything but `.status` (and the server-owned metadata).
    Main,
    /// The `/status` subresource: only `.status`.
    Status,
}

/// The type of a change, as named in watch events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One committed change; `old` is the previous state of a modified object.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub resource: String,
    pub kind: ChangeType,
    pub object: Value,
    pub old: Option<Value>,
}

impl Change {
    /// The watch event a watcher with `selector` sees for this change, if any: an object that
    /// starts or stops matching is seen as ADDED or DELETED, as by the real API server.
    pub fn event_for(&self, selector: &Selector) -> Option<Value> {
        let now = selector.matches(&self.object);
        let before = self.old.as_ref().is_some_and(|old| selector.matches(old));
        let kind = match (self.kind, before, now) {
            (ChangeType::Added, _, true) => "ADDED",
            (ChangeType::Deleted, _, true) => "DELETED",
            (ChangeType::Modified, true, true) => "MODIFIED",
            (ChangeType::Modified, false, true) => "ADDED",
            (ChangeType::Modified, true, false) => "DELETED",
            _ => return None,
        };
        Some(json!({"type": kind, "object": self.object}))
    }
}

#[derive(Default)]
pub struct Store {
    pub objects: BTreeMap<Key, Value>,
    /// The last resourceVersion handed out.
    pub rv: u64,
    /// The last [`HISTORY`] changes, in resourceVersion order.
    pub history: VecDeque<Change>,
    /// Changes up to this resourceVersion are compacted away: a watch from before it is
    /// `410 Gone`.
    pub compacted: u64,
    /// `(apiVersion, kind)` seen for each resource, for list kinds and bookmarks.
    kinds: HashMap<String, (String, String)>,
}

impl Store {
    /// `(apiVersion, kind)` of a resource: as last seen on an object, else guessed from the plural.
    pub fn type_of(&self, resource: &str) -> (String, String) {
        let (api_version, plural) = resource.rsplit_once('/').unwrap_or(("v1", resource));
        self.kinds.get(resource).cloned().unwrap_or_else(|| {
            let singular = plural.strip_suffix('s').unwrap_or(plural);
            let mut chars = singular.chars();
            let kind = chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect())
                .unwrap_or_default();
            (api_version.to_owned(), kind)
        })
    }

    pub fn list(&self, resource: &str, selector: &Selector) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|(k, o)| k.resource == resource && selector.matches(o))
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Hands out the next resourceVersion and stamps it on `object`.
    fn bump(&mut self, object: &mut Value) -> u64 {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.rv
    }

    /// Stores `object` under `key` (stamping a new resourceVersion) and records the change.
    pub fn commit(
        &mut self,
        key: &Key,
        mut object: Value,
        kind: ChangeType,
        old: Option<Value>,
    ) -> Value {
        let rv = self.bump(&mut object);
        if kind == ChangeType::Deleted {
            self.objects.remove(key);
        } else {
            self.objects.insert(key.clone(), object.clone());
        }
        self.history.push_back(Change {
            rv,
            resource: key.resource.clone(),
            kind,
            object: object.clone(),
            old,
        });
        if self.history.len() > HISTORY {
            self.compact_to(self.history.len() - HISTORY);
        }
        object
    }

    /// Forgets the `count` oldest changes of the history.
    fn compact_to(&mut self, count: usize) {
        if let Some(last) = self.history.drain(..count).next_back() {
            self.compacted = last.rv;
        }
    }

    /// Forgets the whole history, as etcd's compaction does: every resourceVersion handed out
    /// so far is too old to watch from.
    pub fn compact(&mut self) {
        self.compact_to(self.history.len());
        self.compacted = self.rv;
    }

    /// POST: stamps uid, resourceVersion, generation 1 and creationTimestamp; drops `.status`.
    pub fn create(
        &mut self,
        resource: &str,
        namespace: &str,
        mut object: Value,
    ) -> Result<Value, ApiError> {
        if !object.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        let (api_version, kind) = self.type_of(resource);
        let body_type = (
            object["apiVersion"].as_str().map(str::to_owned),
            object["kind"].as_str().map(str::to_owned),
        );
        object["apiVersion"] = json!(body_type.0.unwrap_or(api_version));
        object["kind"] = json!(body_type.1.unwrap_or(kind));
        let type_meta = (
            object["apiVersion"].as_str().unwrap().to_owned(),
            object["kind"].as_str().unwrap().to_owned(),
        );
        self.kinds.insert(resource.to_owned(), type_meta);
        if let Value::Object(map) = &mut object {
            map.remove("status");
        }
        if !object["metadata"].is_object() {
            object["metadata"] = json!({});
        }
        let metadata = object["metadata"].as_object_mut().expect("set above");
        let name = match (
            metadata.get("name").and_then(Value::as_str),
            metadata.get("generateName").and_then(Value::as_str),
        ) {
            (Some(name), _) if !name.is_empty() => name.to_owned(),
            (_, Some(prefix)) if !prefix.is_empty() => format!("{prefix}{}", &random_hex()[..5]),
            _ => {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "name or generateName is required",
                ))
            }
        };
        match metadata.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != namespace => {
                return Err(ApiError::bad_request(
                    "the namespace of the object does not match the namespace of the request",
                ))
            }
            _ => {}
        }
        let key = Key::new(resource, namespace, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{resource} \"{name}\" already exists"),
            ));
        }
        for server_owned in [
            "resourceVersion",
            "uid",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
        ] {
            metadata.remove(server_owned);
        }
        metadata.insert("name".into(), json!(name));
        if namespace.is_empty() {
            metadata.remove("namespace");
        } else {
            metadata.insert("namespace".into(), json!(namespace));
        }
        metadata.insert("uid".into(), json!(uuid()));
        metadata.insert("generation".into(), json!(1));
        metadata.insert("creationTimestamp".into(), json!(now()));
        rules::admit(&key, None, &mut object)?;
        let created = self.commit(&key, object, ChangeType::Added, None);
        Ok(self.collect_if_dangling(&key, created))
    }

    /// Any write to an existing object (PUT, the result of a PATCH, a test's status change):
    /// `candidate` is the whole object as the client wants it; only `part` of it is taken, the
    /// server-owned metadata is kept, generation bumps when anything outside metadata and status
    /// changed, a no-op changes nothing (no new resourceVersion, no event), and an object being
    /// deleted whose last finalizer goes is removed.
    pub fn update(
        &mut self,
        key: &Key,
        candidate: Value,
        part: Part,
        expected_rv: Option<&str>,
    ) -> Result<Value, ApiError> {
        let old = self
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(key))?;
        if !candidate.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        if let Some(rv) = expected_rv.filter(|rv| !rv.is_empty()) {
            if old["metadata"]["resourceVersion"] != rv {
                return Err(ApiError::conflict(key, "the object has been modified; please apply your changes to the latest version and try again"));
            }
        }
        if let Some(name) = candidate["metadata"]["name"]
            .as_str()
            .filter(|n| !n.is_empty())
        {
            if name != key.name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({name}) does not match the request ({})",
                    key.name
                )));
            }
        }
        let mut new = match part {
            Part::Main => with_field(candidate, "status", old.get("status")),
            Part::Status => with_field(old.clone(), "status", candidate.get("status")),
        };
        if !new["metadata"].is_object() {
            new["metadata"] = json!({});
        }
        for field in ["apiVersion", "kind"] {
            new[field] = old[field].clone();
        }
        let kept = [
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ];
        for field in kept {
            new["metadata"] = with_field(new["metadata"].take(), field, old["metadata"].get(field));
        }
        rules::admit(key, Some(&old), &mut new)?;
        if spec_of(&new) != spec_of(&old) {
            new["metadata"]["generation"] =
                json!(old["metadata"]["generation"].as_i64().unwrap_or(0) + 1);
        }
        if new == old {
            return Ok(old);
        }
        if new["metadata"].get("deletionTimestamp").is_some() && finalizers(&new).is_empty() {
            return Ok(self.remove(key, new));
        }
        let updated = self.commit(key, new, ChangeType::Modified, Some(old));
        Ok(self.collect_if_dangling(key, updated))
    }
}

/// `object` with `field` set to `value`, or removed when `value` is `None`.
fn with_field(mut object: Value, field: &str, value: Option<&Value>) -> Value {
    if let Value::Object(map) = &mut object {
        match value {
            Some(v) => drop(map.insert(field.into(), v.clone())),
            None => drop(map.remove(field)),
        }
    }
    object
}

/// Everything outside `metadata` and `status`: what `generation` tracks.
fn spec_of(object: &Value) -> Map<String, Value> {
    let mut map = object.as_object().cloned().unwrap_or_default();
    map.remove("metadata");
    map.remove("status");
    map
}

pub fn finalizers(object: &Value) -> Vec<String> {
    object["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect()
}

/// The current time as the API server writes it (RFC 3339, whole seconds, UTC).
pub fn now() -> String {
    use k8s_openapi::jiff::Timestamp;
    Timestamp::from_second(Timestamp::now().as_second())
        .expect("now is a valid time")
        .to_string()
}

fn random_hex() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn uuid() -> String {
    let h = random_hex();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}
