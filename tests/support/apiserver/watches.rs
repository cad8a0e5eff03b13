//! `?watch=true`: newline-delimited watch events, replayed from the store's history and then
//! followed live until the timeout or server shutdown.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::select::Selector;
use super::store::ApiError;
use super::Shared;

/// State of one watch stream.
struct Watch {
    shared: Arc<Shared>,
    resource: String,
    selector: Selector,
    /// Changes up to this resourceVersion have been looked at.
    cursor: u64,
    pending: VecDeque<Value>,
    deadline: tokio::time::Instant,
    bookmarks: bool,
    changed: tokio::sync::watch::Receiver<u64>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    done: bool,
}

impl Watch {
    fn bookmark(&self, initial_end: bool) -> Value {
        let (api_version, kind) = self.shared.lock().type_of(&self.resource);
        let annotations = if initial_end {
            json!({"k8s.io/initial-events-end": "true"})
        } else {
            json!({})
        };
        json!({"type": "BOOKMARK", "object": {"apiVersion": api_version, "kind": kind,
            "metadata": {"resourceVersion": self.cursor.to_string(), "annotations": annotations}}})
    }

    /// The next newline-terminated event; `None` at timeout or server shutdown.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                let mut line = serde_json::to_vec(&event).expect("JSON values serialize");
                line.push(b'\n');
                return Some(line.into());
            }
            if self.done {
                return None;
            }
            self.changed.borrow_and_update();
            {
                let store = self.shared.lock();
                if self.cursor < store.compacted {
                    // Fell behind the history (a slow reader, or a resume from too long ago).
                    self.pending.push_back(gone(self.cursor, store.compacted));
                    self.done = true;
                    continue;
                }
                let start = store.history.partition_point(|c| c.rv <= self.cursor);
                let events = store
                    .history
                    .range(start..)
                    .filter(|c| c.resource == self.resource)
                    .filter_map(|c| c.event_for(&self.selector));
                self.pending.extend(events);
                self.cursor = store.rv;
            }
            if !self.pending.is_empty() {
                continue;
            }
            let timed_out = tokio::select! {
                changed = self.changed.changed() => {
                    self.done = changed.is_err();
                    false
                }
                _ = tokio::time::sleep_until(self.deadline) => true,
                _ = self.shutdown.wait_for(|stop| *stop) => {
                    self.done = true;
                    false
                }
            };
            if timed_out {
                if self.bookmarks {
                    let bookmark = self.bookmark(false);
                    self.pending.push_back(bookmark);
                }
                self.done = true;
            }
        }
    }
}

/// The watch event that ends a watch from a compacted resourceVersion. As on a real API server
/// (its watch cache), the watch is answered 200 and its one event is an ERROR carrying the
/// `410 Gone` Status, which tells a client to list again.
fn gone(since: u64, compacted: u64) -> Value {
    let message = format!("too old resource version: {since} ({compacted})");
    let status = ApiError::new(410, "Expired", message).status();
    json!({"type": "ERROR", "object": status})
}

/// `?watch=true`: ADDED/MODIFIED/DELETED events after `resourceVersion` (or, without one, or
/// with "0", or with `sendInitialEvents=true`, synthetic ADDED events for the current objects
/// first), until `timeoutSeconds` (default 30 minutes) or server shutdown. A `resourceVersion`
/// older than the kept history is `410 Gone` (an ERROR event, see [`gone`]).
pub fn watch(
    shared: &Arc<Shared>,
    resource: &str,
    query: &HashMap<String, String>,
    selector: Selector,
) -> Result<Response, ApiError> {
    let flag = |name: &str| matches!(query.get(name).map(String::as_str), Some("true" | "1"));
    let since = query
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or_default();
    let initial = flag("sendInitialEvents") || since.is_empty() || since == "0";
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .unwrap_or(1800);
    let mut watch = Watch {
        shared: shared.clone(),
        resource: resource.to_owned(),
        selector,
        cursor: 0,
        pending: VecDeque::new(),
        deadline: tokio::time::Instant::now() + Duration::from_secs(timeout),
        bookmarks: flag("allowWatchBookmarks"),
        changed: shared.changed.subscribe(),
        shutdown: shared.shutdown.subscribe(),
        done: false,
    };
    if initial {
        let store = shared.lock();
        let objects = store.list(&watch.resource, &watch.selector);
        watch.pending.extend(
            objects
                .into_iter()
                .map(|o| json!({"type": "ADDED", "object": o})),
        );
        watch.cursor = store.rv;
    } else {
        watch.cursor = since
            .parse()
            .map_err(|_| ApiError::bad_request(format!("bad resourceVersion {since:?}")))?;
    }
    if flag("sendInitialEvents") && watch.bookmarks {
        let bookmark = watch.bookmark(true);
        watch.pending.push_back(bookmark);
    }
    let stream = futures::stream::unfold(watch, |mut w| async move {
        w.next().await.map(|line| (Ok::<_, Infallible>(line), w))
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("a valid response"))
}
