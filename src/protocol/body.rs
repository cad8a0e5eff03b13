//! JSON request bodies, read field by field so that every error names its field.
//!
//! Rules of protocol.md §1: an empty body means "all defaults"; `null` counts as absent;
//! unknown fields are ignored (SDKs send extras such as `mail_address` in ACK); a wrong type or
//! an unknown enum value is a `bad_request` naming the field — never a silent default.

use serde_json::{Map, Value};

use super::ProtoError;

/// A parsed request body: a JSON object, possibly empty.
#[derive(Debug, Default, Clone)]
pub struct Body(Map<String, Value>);

impl Body {
    /// Parses a request body. Empty or whitespace-only bodies are the empty object.
    pub fn parse(bytes: &[u8]) -> Result<Body, ProtoError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body::default());
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(Body(map)),
            Ok(_) => Err(ProtoError::bad_request(
                "request body must be a JSON object",
            )),
            Err(e) => Err(ProtoError::bad_request(format!(
                "request body is not valid JSON: {e}"
            ))),
        }
    }

    /// A body from an already parsed object (nested objects such as FETCH's `config`).
    pub fn from_map(map: Map<String, Value>) -> Body {
        Body(map)
    }

    /// The raw value, `None` when absent or `null`.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.0.get(field).filter(|v| !v.is_null())
    }

    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }

    pub fn opt_str(&self, field: &str) -> Result<Option<&str>, ProtoError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(type_error(field, "a string")),
        }
    }

    pub fn opt_u64(&self, field: &str) -> Result<Option<u64>, ProtoError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| type_error(field, "a non-negative integer")),
        }
    }

    /// An integer within `range`, with the range in the error message.
    pub fn opt_u64_in(
        &self,
        field: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, ProtoError> {
        match self.opt_u64(field)? {
            Some(n) if !range.contains(&n) => Err(ProtoError::bad_request(format!(
                "field `{field}` must be between {} and {}",
                range.start(),
                range.end()
            ))),
            other => Ok(other),
        }
    }

    pub fn opt_bool(&self, field: &str) -> Result<Option<bool>, ProtoError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(type_error(field, "true or false")),
        }
    }

    pub fn opt_object(&self, field: &str) -> Result<Option<Body>, ProtoError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Body(map.clone()))),
            Some(_) => Err(type_error(field, "a JSON object")),
        }
    }

    pub fn opt_str_list(&self, field: &str) -> Result<Option<Vec<String>>, ProtoError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| type_error(field, "an array of strings")),
            Some(_) => Err(type_error(field, "an array of strings")),
        }
    }

    /// A string field restricted to a closed set of values.
    pub fn opt_enum<T>(
        &self,
        field: &str,
        allowed: &[&str],
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, ProtoError> {
        match self.opt_str(field)? {
            None => Ok(None),
            Some(s) => parse(s).map(Some).ok_or_else(|| {
                ProtoError::bad_request(format!(
                    "field `{field}` must be one of {}, got {s:?}",
                    allowed.join(", ")
                ))
            }),
        }
    }
}

fn type_error(field: &str, expected: &str) -> ProtoError {
    ProtoError::bad_request(format!("field `{field}` must be {expected}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_whitespace_bodies_are_empty_objects() {
        assert!(Body::parse(b"").unwrap().get("x").is_none());
        assert!(Body::parse(b" \n").unwrap().get("x").is_none());
    }

    #[test]
    fn errors_name_the_field() {
        let body = Body::parse(br#"{"ttl":"soon","tags":[1],"kind":"odd"}"#).unwrap();
        assert!(body.opt_u64("ttl").unwrap_err().message.contains("`ttl`"));
        assert!(body
            .opt_str_list("tags")
            .unwrap_err()
            .message
            .contains("`tags`"));
        let err = body
            .opt_enum("kind", &["a", "b"], |_| None::<()>)
            .unwrap_err();
        assert!(err.message.contains("`kind`") && err.message.contains("odd"));
    }

    #[test]
    fn null_is_absent_and_non_objects_are_rejected() {
        let body = Body::parse(br#"{"ttl":null}"#).unwrap();
        assert_eq!(body.opt_u64("ttl").unwrap(), None);
        assert!(Body::parse(b"[1]").is_err());
        assert!(Body::parse(b"{").is_err());
    }
}
