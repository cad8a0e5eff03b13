//! Reading replies: the messages of a FETCH or QUERY, their payloads, error replies, metrics.

use base64::Engine as _;
use serde_json::Value;

/// The messages of a FETCH or QUERY reply (panics on an error reply).
pub fn messages(reply: &Value) -> Vec<Value> {
    assert_eq!(reply["error"], "", "error reply: {reply}");
    reply["messages"]
        .as_array()
        .expect("messages array")
        .clone()
}

/// The msg_ids of a FETCH or QUERY reply, in reply order.
pub fn ids(reply: &Value) -> Vec<u64> {
    messages(reply)
        .iter()
        .map(|m| m["msg_id"].as_u64().unwrap())
        .collect()
}

/// A message's payload, base64-decoded as every SDK decodes it.
pub fn payload(message: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(message["payload"].as_str().unwrap())
        .expect("standard base64 with padding")
}

/// The payloads of a FETCH or QUERY reply as strings, in reply order.
pub fn texts(reply: &Value) -> Vec<String> {
    messages(reply)
        .iter()
        .map(|m| String::from_utf8(payload(m)).unwrap())
        .collect()
}

/// The value of the line `name value` (no labels) in a Prometheus text exposition.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (metric, value) = line.split_once(' ')?;
        (metric == name).then(|| value.trim().parse().ok())?
    })
}

/// Asserts an error reply with this code whose message contains `needle`.
pub fn assert_error_says(reply: &Value, code: &str, needle: &str) {
    assert_error(reply, code);
    let message = reply["error"].as_str().unwrap();
    assert!(
        message.contains(needle),
        "error should mention {needle:?}: {reply}"
    );
}

/// Asserts an error reply with this code and exactly two fields.
pub fn assert_error(reply: &Value, code: &str) {
    assert_eq!(reply["code"], code, "expected {code}: {reply}");
    assert!(
        !reply["error"].as_str().unwrap_or("").is_empty(),
        "error message missing: {reply}"
    );
    assert_eq!(
        reply.as_object().unwrap().len(),
        2,
        "failure replies carry only error and code: {reply}"
    );
}
