//! HTTP: one handler that parses Kubernetes REST paths generically and dispatches to the store.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};

use super::patch;
use super::select::Selector;
use super::store::{ApiError, Key, Part};
use super::watches::watch;
use super::Shared;

/// What a path names.
struct Target {
    /// `<apiVersion>/<plural>`, e.g. `v1/configmaps`, `apps/v1/statefulsets`.
    resource: String,
    /// `None`: all namespaces (collections) or cluster-scoped (objects).
    namespace: Option<String>,
    name: Option<String>,
    part: Part,
}

/// `/api/v1/...` and `/apis/{group}/{version}/...`, then `[namespaces/{ns}/]{plural}[/{name}[/status]]`.
fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => (version.to_string(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, plural, tail) = match rest {
        ["namespaces", _, "status"] => (None, "namespaces", &rest[1..]),
        ["namespaces", ns, plural, tail @ ..] => (Some(ns.to_string()), *plural, tail),
        [plural, tail @ ..] => (None, *plural, tail),
        [] => return None,
    };
    let (name, part) = match tail {
        [] => (None, Part::Main),
        [name] => (Some(name.to_string()), Part::Main),
        [name, "status"] => (Some(name.to_string()), Part::Status),
        _ => return None,
    };
    Some(Target {
        resource: format!("{api_version}/{plural}"),
        namespace,
        name,
        part,
    })
}

/// Decodes a query string (`+` and `%XX` escapes).
fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    let decode = |s: &str| {
        let bytes = s.replace('+', " ").into_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (bytes[i], hex) {
                (b'%', Some(byte)) => {
                    out.push(byte);
                    i += 3;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

pub async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    route(&shared, &method, &uri, &headers, &body)
        .unwrap_or_else(|e| json_response(e.code, &e.status()))
}

fn json_response(code: u16, body: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::to_vec(body).expect("JSON values serialize"),
        ))
        .expect("a valid response")
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))
}

/// DeleteOptions (`preconditions`, `propagationPolicy`), if a body was sent.
fn delete_options(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    parse_body(body)
}

/// The Kubernetes verb of a request (as RBAC and audit logs name it).
fn verb(method: &Method, named: bool, watching: bool) -> &'static str {
    match (method.as_str(), named) {
        ("GET", _) if watching => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "other",
    }
}

fn route(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let not_found = || {
        ApiError::new(
            404,
            "NotFound",
            format!(
                "the server could not find the requested resource ({})",
                uri.path()
            ),
        )
    };
    if uri.path() == "/version" {
        let version = json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "platform": "linux/amd64"});
        return Ok(json_response(200, &version));
    }
    let target = parse_path(uri.path()).ok_or_else(not_found)?;
    let query = parse_query(uri.query());
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let resource = match target.part {
        Part::Main => target.resource.clone(),
        Part::Status => format!("{}/status", target.resource),
    };
    shared.count(verb(method, target.name.is_some(), watching), resource);
    let selector = || {
        Selector::parse(
            target.namespace.clone(),
            query.get("labelSelector").map(String::as_str),
            query.get("fieldSelector").map(String::as_str),
        )
    };
    let Some(name) = &target.name else {
        return match *method {
            Method::GET if watching => watch(shared, &target.resource, &query, selector()?),
            Method::GET => {
                let store = shared.lock();
                let (api_version, kind) = store.type_of(&target.resource);
                let items = store.list(&target.resource, &selector()?);
                Ok(json_response(
                    200,
                    &json!({"apiVersion": api_version, "kind": format!("{kind}List"),
                    "metadata": {"resourceVersion": store.rv.to_string()}, "items": items}),
                ))
            }
            Method::POST => {
                let namespace = target.namespace.clone().unwrap_or_default();
                let object =
                    shared.write(|s| s.create(&target.resource, &namespace, parse_body(body)?))?;
                Ok(json_response(201, &object))
            }
            Method::DELETE => {
                let options = delete_options(body)?;
                let selector = selector()?;
                let items = shared.write(|s| {
                    let keys: Vec<Key> = s
                        .objects
                        .iter()
                        .filter(|(k, o)| k.resource == target.resource && selector.matches(o))
                        .map(|(k, _)| k.clone())
                        .collect();
                    let mut items = Vec::new();
                    for key in keys {
                        // An earlier deletion may have cascaded to this one.
                        if s.objects.contains_key(&key) {
                            items.push(s.delete(&key, &options)?);
                        }
                    }
                    Ok::<_, ApiError>(items)
                })?;
                let (api_version, kind) = shared.lock().type_of(&target.resource);
                Ok(json_response(
                    200,
                    &json!({"apiVersion": api_version, "kind": format!("{kind}List"), "metadata": {}, "items": items}),
                ))
            }
            _ => Err(ApiError::new(
                405,
                "MethodNotAllowed",
                format!("{method} is not allowed on a collection"),
            )),
        };
    };
    let key = Key::new(
        &target.resource,
        target.namespace.as_deref().unwrap_or_default(),
        name,
    );
    let object = match *method {
        Method::GET => shared
            .lock()
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&key))?,
        Method::PUT => {
            let body = parse_body(body)?;
            let rv = body["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_owned);
            shared.write(|s| s.update(&key, body, target.part, rv.as_deref()))?
        }
        Method::DELETE => {
            let options = delete_options(body)?;
            shared.write(|s| s.delete(&key, &options))?
        }
        Method::PATCH => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let content_type = content_type.split(';').next().unwrap_or_default().trim();
            // kube sends apply patches as JSON; accept YAML too.
            let patch_body = match content_type {
                "application/apply-patch+yaml" => parse_body(body).or_else(|_| {
                    serde_yaml::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))
                })?,
                _ => parse_body(body)?,
            };
            let (object, created) = shared.write(|s| {
                let Some(current) = s.objects.get(&key).cloned() else {
                    return match content_type {
                        "application/apply-patch+yaml" if target.part == Part::Main => {
                            let mut object = patch_body.clone();
                            if !object.is_object()
                                || !object["metadata"].is_object() && !object["metadata"].is_null()
                            {
                                return Err(ApiError::bad_request(
                                    "an apply patch must be an object",
                                ));
                            }
                            object["metadata"]["name"] = json!(name);
                            s.create(&key.resource, &key.namespace, object)
                                .map(|o| (o, true))
                        }
                        _ => Err(ApiError::not_found(&key)),
                    };
                };
                let mut candidate = current;
                let expected_rv = match content_type {
                    "application/json-patch+json" => {
                        patch::json_patch(&mut candidate, &patch_body)?;
                        None
                    }
                    "application/merge-patch+json"
                    | "application/strategic-merge-patch+json"
                    | "application/apply-patch+yaml" => {
                        patch::merge(&mut candidate, &patch_body);
                        patch_body["metadata"]["resourceVersion"].as_str()
                    }
                    other => {
                        return Err(ApiError::new(
                            415,
                            "UnsupportedMediaType",
                            format!("unsupported patch type {other:?}"),
                        ))
                    }
                };
                s.update(&key, candidate, target.part, expected_rv)
                    .map(|o| (o, false))
            })?;
            return Ok(json_response(if created { 201 } else { 200 }, &object));
        }
        _ => {
            return Err(ApiError::new(
                405,
                "MethodNotAllowed",
                format!("{method} is not allowed on an object"),
            ))
        }
    };
    Ok(json_response(200, &object))
}
