//! The patch formats kube sends: JSON merge patch (RFC 7386, also used for strategic merge and,
//! as a deep merge, for server-side apply) and JSON patch (RFC 6902).

use serde_json::Value;

use super::store::ApiError;

/// RFC 7386: objects merge recursively, `null` removes a key, anything else (arrays included)
/// replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// RFC 6902 over `doc`: `add`, `remove`, `replace`, `move`, `copy`, `test`. As in the real API
/// server (evanphx/json-patch), `test` against a missing path compares with `null`, which kube's
/// finalizer helper relies on. A failed `test` or a bad path is a 422 `Invalid`.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), ApiError> {
    let ops = ops
        .as_array()
        .ok_or_else(|| ApiError::bad_request("a JSON patch must be an array"))?;
    for op in ops {
        let kind = op["op"].as_str().unwrap_or_default();
        let path = pointer(
            op["path"]
                .as_str()
                .ok_or_else(|| invalid("an operation has no path"))?,
        )?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| invalid(format!("`{kind}` needs a value")))
        };
        match kind {
            "add" => add(doc, &path, value()?)?,
            "remove" => drop(remove(doc, &path)?),
            "replace" => {
                remove(doc, &path)?;
                add(doc, &path, value()?)?;
            }
            "move" | "copy" => {
                let from = pointer(
                    op["from"]
                        .as_str()
                        .ok_or_else(|| invalid("`from` is missing"))?,
                )?;
                let moved = if kind == "move" {
                    remove(doc, &from)?
                } else {
                    get(doc, &from)?.clone()
                };
                add(doc, &path, moved)?;
            }
            "test" => {
                let actual = get(doc, &path).cloned().unwrap_or(Value::Null);
                if actual != value()? {
                    return Err(invalid(format!("test operation failed at {}", op["path"])));
                }
            }
            other => {
                return Err(invalid(format!(
                    "unsupported JSON patch operation `{other}`"
                )))
            }
        }
    }
    Ok(())
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(422, "Invalid", message)
}

/// Splits a JSON pointer into unescaped tokens.
fn pointer(path: &str) -> Result<Vec<String>, ApiError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| invalid(format!("bad JSON pointer {path:?}")))?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn get<'a>(doc: &'a Value, path: &[String]) -> Result<&'a Value, ApiError> {
    path.iter()
        .try_fold(doc, |node, token| match node {
            Value::Object(map) => map.get(token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
        .ok_or_else(|| invalid(format!("path /{} does not exist", path.join("/"))))
}

/// The container holding the last token, and that token.
fn parent<'a>(
    doc: &'a mut Value,
    path: &'a [String],
) -> Result<(&'a mut Value, &'a str), ApiError> {
    let (last, init) = path
        .split_last()
        .ok_or_else(|| invalid("cannot change the whole document"))?;
    let mut node = doc;
    for token in init {
        node = match node {
            Value::Object(map) => map.get_mut(token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| invalid(format!("path /{} does not exist", path.join("/"))))?;
    }
    Ok((node, last))
}

fn add(doc: &mut Value, path: &[String], value: Value) -> Result<(), ApiError> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    match parent(doc, path)? {
        (Value::Object(map), key) => {
            map.insert(key.to_owned(), value);
        }
        (Value::Array(items), "-") => items.push(value),
        (Value::Array(items), index) => match index.parse::<usize>() {
            Ok(i) if i <= items.len() => items.insert(i, value),
            _ => return Err(invalid(format!("bad array index {index:?}"))),
        },
        _ => return Err(invalid(format!("cannot add at /{}", path.join("/")))),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &[String]) -> Result<Value, ApiError> {
    let missing = || invalid(format!("path /{} does not exist", path.join("/")));
    match parent(doc, path)? {
        (Value::Object(map), key) => map.remove(key).ok_or_else(missing),
        (Value::Array(items), index) => match index.parse::<usize>() {
            Ok(i) if i < items.len() => Ok(items.remove(i)),
            _ => Err(missing()),
        },
        _ => Err(missing()),
    }
}
