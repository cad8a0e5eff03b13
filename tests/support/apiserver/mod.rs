//! A small fake Kubernetes API server, served over HTTP on loopback, for testing the operator's
//! controllers end to end with a real `kube::Client` and the real `kube::runtime::Controller`
//! loop (no kube-apiserver, k3s or envtest can run on the test machines). Test infrastructure
//! only: never part of the product.
//!
//! Use: `let server = FakeApiServer::start().await;` then hand `server.client()` (default
//! namespace "default") to the code under test; inspect and drive the cluster directly with
//! `server.get("apps/v1/statefulsets", "default", "b")`, `list`, `create`, `delete`,
//! `patch_status(.., json!({"readyReplicas": 3}))` (playing the StatefulSet controller) and
//! `wait_for("what", |s| ...)`, which re-checks after every write until a deadline. Dropping the
//! server ends its watches and stops it.
//!
//! What it models, generically for any group/version/plural (objects are stored as JSON keyed by
//! `<apiVersion>/<plural>` + namespace + name; `"v1/configmaps"`, `"apps/v1/statefulsets"`):
//! - Paths `/api/v1/[namespaces/{ns}/]{plural}[/{name}[/status]]` and
//!   `/apis/{group}/{version}/[namespaces/{ns}/]{plural}[/{name}[/status]]`; without
//!   `namespaces/{ns}` a collection means all namespaces (an object, a cluster-scoped one).
//! - Server-owned metadata: random `uid`, one global `resourceVersion` counter, `generation`
//!   (1 at create, +1 whenever anything outside `metadata` and `status` changes),
//!   `creationTimestamp`, `generateName`.
//! - create (409 `AlreadyExists`), get (404 `NotFound`), list with `labelSelector` (`a=b`,
//!   `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x,y)`) and `fieldSelector` (`=`, `!=` on any
//!   dotted path, e.g. `metadata.name`), replace (409 `Conflict` on a stale resourceVersion),
//!   delete and delete-collection; a write that changes nothing is a no-op (no new
//!   resourceVersion, no watch event), as on a real server.
//! - watch (`?watch=true`): ADDED/MODIFIED/DELETED after `resourceVersion`, synthetic ADDED
//!   events for the current objects when it is absent or "0" or with `sendInitialEvents=true`
//!   (then a BOOKMARK marked `k8s.io/initial-events-end`), selectors (an object that stops or
//!   starts matching is seen DELETED or ADDED), a BOOKMARK before closing at `timeoutSeconds`
//!   when `allowWatchBookmarks`. The last 10,000 changes are kept: a watch from an older
//!   resourceVersion, or one that falls that far behind, gets a 410 Gone ERROR event, as after
//!   etcd's compaction ([`FakeApiServer::compact`] compacts at once).
//! - PATCH: merge patch (RFC 7386); strategic merge patch, treated as a merge patch; JSON patch
//!   (add/remove/replace/move/copy/test; a failed `test` is 422; `test` of a missing path against
//!   `null` succeeds, as kube's finalizer helper expects); server-side apply, which creates the
//!   object when missing and otherwise deep-merges the body into it (objects merged recursively,
//!   arrays replaced, `null` removes). Merge and apply honour a `metadata.resourceVersion` in the
//!   body (409 when stale).
//! - A status subresource for every resource: writes to `/status` change only `.status`; creates
//!   drop `.status`; writes to the main resource keep the stored `.status`.
//! - Finalizers: deleting an object with finalizers sets `deletionTimestamp` (returned, 200); it
//!   is removed (DELETED event) once an update empties its finalizers. Without finalizers it is
//!   removed at once.
//! - Garbage collection, synchronously: in the background style (the default), when an object
//!   is removed, every object whose `ownerReferences` name its uid and none of whose owners
//!   still exist is deleted too (recursively, honouring their finalizers); with
//!   `propagationPolicy: Foreground` the owner is held by the `foregroundDeletion` finalizer,
//!   its dependents go first, and it is released once none with `blockOwnerDeletion` is left.
//! - Rules that bit the operator on real clusters (`rules.rs`): resource quantities stored in
//!   canonical form (`1.5Gi` as `1536Mi`, in any `requests`/`limits` map), and a StatefulSet
//!   update that changes its spec outside `replicas`, `ordinals`, `template`, `updateStrategy`,
//!   `persistentVolumeClaimRetentionPolicy`, `minReadySeconds` refused with the real 422.
//! - `/version` answers a fixed Kubernetes v1.33 (the operator checks it reaches the API).
//! - A request counter: [`FakeApiServer::requests`] counts every request by verb (`get`,
//!   `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`) and resource
//!   (`/status` apart), for tests of how much API traffic the operator makes.
//! - Errors are `Status` objects, so kube reports them as `kube::Error::Api` with the real codes
//!   and reasons.
//!
//! What it does NOT model: authentication, authorization, admission (defaulting, validation,
//! webhooks, CEL rules), schemas (any JSON is stored as sent, quantities aside; CRDs need not be
//! installed; no per-kind behaviour such as folding a Secret's `stringData` into `data` or giving
//! a Service a `clusterIP`), immutable fields other than the server-owned metadata and a
//! StatefulSet's spec, discovery
//! (`/api`, `/apis`), namespaces as objects that must exist or that cascade,
//! field ownership for server-side apply (`managedFields`, conflicts between managers, removing
//! fields a manager stopped applying; `force` and `fieldManager` are ignored), strategic merge
//! keys (lists are replaced), pagination (`limit` is ignored and no `continue` token is given),
//! `resourceVersionMatch` (lists are always the latest state), `dryRun`, deletion
//! `propagationPolicy: Orphan`, grace periods (pods go at once), dangling owner
//! references (an object whose owner never existed stays), several versions of one resource
//! (each apiVersion is a separate store), protobuf, and any
//! controller other than the garbage collector: no StatefulSet controller, kubelet, scheduler or
//! endpoints; tests play them with [`FakeApiServer::patch_status`] and friends.

mod gc;
mod patch;
mod routes;
mod rules;
mod select;
mod store;
mod watches;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::sync::watch;

use select::Selector;
use store::{Key, Part, Store};

/// How long [`FakeApiServer::wait_for`] waits before failing the test.
const WAIT: Duration = Duration::from_secs(15);

/// State shared by the HTTP handlers and the test.
struct Shared {
    store: Mutex<Store>,
    /// The latest resourceVersion, published after every write (wakes watches and waiters).
    changed: watch::Sender<u64>,
    /// Set when the server is dropped: ends the watch streams and the HTTP server.
    shutdown: watch::Sender<bool>,
    /// Every request served, counted by what it did (see [`Request`]).
    requests: Mutex<BTreeMap<Request, u64>>,
}

/// What a request did, as counted by [`FakeApiServer::requests`]: the verb as Kubernetes
/// names it (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
/// `deletecollection`) and the resource (`<apiVersion>/<plural>`, with `/status` for the
/// status subresource).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Request {
    pub verb: &'static str,
    pub resource: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one request (see [`Request`]).
    fn count(&self, verb: &'static str, resource: String) {
        let mut requests = self
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *requests.entry(Request { verb, resource }).or_default() += 1;
    }

    /// Runs a write on the store and wakes whoever waits for changes.
    fn write<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let mut store = self.lock();
        let result = f(&mut store);
        self.changed.send_replace(store.rv);
        result
    }
}

/// A running fake API server; it stops when dropped.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl FakeApiServer {
    /// Starts an empty server on a random loopback port.
    pub async fn start() -> FakeApiServer {
        let shared = Arc::new(Shared {
            store: Mutex::default(),
            changed: watch::channel(0).0,
            shutdown: watch::channel(false).0,
            requests: Mutex::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let app = axum::Router::new()
            .fallback(routes::handle)
            .with_state(shared.clone());
        let mut shutdown = shared.shutdown.subscribe();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            };
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await;
        });
        FakeApiServer { shared, addr }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client for this server, with default namespace "default". Call it within a Tokio
    /// runtime.
    pub fn client(&self) -> kube::Client {
        let mut config = kube::Config::new(self.url().parse().expect("a valid URL"));
        config.default_namespace = "default".into();
        kube::Client::try_from(config).expect("a kube client")
    }

    /// The store's name for a typed resource: `<apiVersion>/<plural>`, e.g. `"apps/v1/statefulsets"`.
    pub fn resource<K: Resource<DynamicType = ()>>() -> String {
        format!("{}/{}", K::api_version(&()), K::plural(&()))
    }

    /// The stored object (`namespace` "" for cluster-scoped ones).
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.shared
            .lock()
            .objects
            .get(&Key::new(resource, namespace, name))
            .cloned()
    }

    /// The stored object, typed.
    pub fn get_as<K: Resource<DynamicType = ()> + DeserializeOwned>(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<K> {
        let object = self.get(&Self::resource::<K>(), namespace, name)?;
        Some(serde_json::from_value(object).expect("a stored object deserializes as its type"))
    }

    /// The stored objects of a resource, in one namespace or (`None`) all, by namespace and name.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        let selector = Selector::namespace(namespace.map(str::to_owned));
        self.shared.lock().list(resource, &selector)
    }

    /// Creates an object as a POST would (namespace from its `metadata.namespace`); panics when
    /// the server refuses it.
    pub fn create(&self, resource: &str, object: Value) -> Value {
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.shared
            .write(|s| s.create(resource, &namespace, object))
            .unwrap_or_else(|e| panic!("create {resource}: {}", e.message))
    }

    /// Deletes an object as a DELETE would (finalizers and cascade included); `None` if missing.
    pub fn delete(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.delete_with(resource, namespace, name, Value::Null)
    }

    /// Deletes an object as a DELETE with these DeleteOptions would (e.g.
    /// `{"propagationPolicy": "Foreground"}`); `None` if missing.
    pub fn delete_with(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        options: Value,
    ) -> Option<Value> {
        self.shared
            .write(|s| s.delete(&Key::new(resource, namespace, name), &options))
            .ok()
    }

    /// Merges `patch` (RFC 7386) into the object's `.status`, as the controller that owns that
    /// status would (e.g. `json!({"readyReplicas": 3})` on a StatefulSet); watchers see a
    /// MODIFIED event. Panics when the object is missing.
    pub fn patch_status(&self, resource: &str, namespace: &str, name: &str, patch: Value) -> Value {
        let key = Key::new(resource, namespace, name);
        self.shared
            .write(|s| {
                let mut object = s
                    .objects
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| store::ApiError::not_found(&key))?;
                patch::merge(&mut object, &json!({ "status": patch }));
                s.update(&key, object, Part::Status, None)
            })
            .unwrap_or_else(|e| {
                panic!(
                    "patch status of {resource} {namespace}/{name}: {}",
                    e.message
                )
            })
    }

    /// How many requests of each kind the server has answered so far (including refused ones):
    /// what a test of the operator's API traffic asserts on. A watch counts once, when opened.
    pub fn requests(&self) -> BTreeMap<Request, u64> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The requests answered since `before` (an earlier [`FakeApiServer::requests`]), as
    /// `"<verb> <resource>"` → how many; kinds with none left out.
    pub fn requests_since(&self, before: &BTreeMap<Request, u64>) -> BTreeMap<String, u64> {
        self.requests()
            .iter()
            .map(|(request, n)| {
                let made = n - before.get(request).copied().unwrap_or(0);
                (format!("{} {}", request.verb, request.resource), made)
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Compacts the history, as etcd does: a watch from any resourceVersion handed out so far
    /// is then answered `410 Gone` (an ERROR event), and a client must list again.
    pub fn compact(&self) {
        self.shared.write(store::Store::compact);
    }

    /// The last resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Waits until `check` returns `Some` (it is re-run after every write), failing the test after
    /// 15 s with `what` (formatted only then, so it may describe the state at the deadline).
    pub async fn wait_for<T>(
        &self,
        what: impl std::fmt::Display,
        mut check: impl FnMut(&FakeApiServer) -> Option<T>,
    ) -> T {
        let mut changed = self.shared.changed.subscribe();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            changed.borrow_and_update();
            if let Some(found) = check(self) {
                return found;
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(_) => {}
                Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
            }
        }
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
    }
}
