//! The `mq9-*` headers of a SEND (protocol.md §3), matched case-insensitively.
//!
//! `mq9-*` headers are options: they are read into [`SendOptions`] and are not stored as
//! headers (their effect is: priority, key and tags come back as fields of the message).
//! Unknown `mq9-*` headers are ignored — so a sender can never forge `mq9-sender`, which only
//! the broker writes ([`SendOptions::set_sender`]). `Nats-Request-Info` is nats-server's note on
//! who called (see `identity`), not the sender's data: it is never stored either. Every other
//! header is stored as sent and returned with the message; a header sent several times is
//! returned once, its values joined by `,`.

use async_nats::HeaderMap;

use super::{Priority, ProtoError};

/// What a SEND's headers ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SendOptions {
    pub priority: Option<Priority>,
    pub key: Option<String>,
    pub delay_secs: Option<u64>,
    pub ttl_secs: Option<u64>,
    pub tags: Vec<String>,
    /// Every non-`mq9-` header, names as sent, sorted by name.
    pub headers: Vec<(String, String)>,
    /// The sender's idempotency key, from [`DEDUP_HEADER`] (also kept in `headers`).
    pub dedup_id: Option<String>,
}

/// The option headers of a SEND, read case-insensitively and written in lowercase.
pub const PRIORITY_HEADER: &str = "mq9-priority";
pub const KEY_HEADER: &str = "mq9-key";
pub const DELAY_HEADER: &str = "mq9-delay";
pub const TTL_HEADER: &str = "mq9-ttl";
pub const TAGS_HEADER: &str = "mq9-tags";

/// JetStream's idempotency header: a SEND that repeats one within the broker's window stores
/// nothing and is answered with the original msg_id (see `engine::dedup`).
pub const DEDUP_HEADER: &str = "Nats-Msg-Id";

/// Longest accepted [`DEDUP_HEADER`] value: it is part of two store keys per SEND.
pub const MAX_DEDUP_ID_BYTES: usize = 1024;

/// Reads the headers of a SEND. Invalid values are a `bad_request` naming the header.
pub fn parse(headers: Option<&HeaderMap>) -> Result<SendOptions, ProtoError> {
    let mut options = SendOptions::default();
    let Some(headers) = headers else {
        return Ok(options);
    };
    for (name, values) in headers.iter() {
        let name: &str = name.as_ref();
        let value = values
            .iter()
            .map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(",");
        match name.to_ascii_lowercase().as_str() {
            PRIORITY_HEADER => {
                options.priority = Some(Priority::parse(&value).ok_or_else(|| {
                    ProtoError::bad_request(format!(
                        "header mq9-priority must be critical, urgent, normal or notify, got {value:?}"
                    ))
                })?)
            }
            KEY_HEADER => {
                let key = value.trim();
                options.key = (!key.is_empty()).then(|| key.to_owned());
            }
            DELAY_HEADER => options.delay_secs = Some(seconds(DELAY_HEADER, &value)?),
            TTL_HEADER => options.ttl_secs = Some(seconds(TTL_HEADER, &value)?),
            TAGS_HEADER => {
                options.tags = value
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
            lower if lower.starts_with("mq9-") => {}
            "nats-request-info" => {}
            "nats-msg-id" => {
                options.dedup_id = dedup_id(&value)?;
                options.headers.push((name.to_owned(), value));
            }
            _ => options.headers.push((name.to_owned(), value)),
        }
    }
    options.headers.sort();
    Ok(options)
}

impl SendOptions {
    /// Records the sender's identity as the stored header `mq9-sender` (kept in name order).
    pub fn set_sender(&mut self, sender: &str) {
        let entry = (super::identity::SENDER_HEADER.to_owned(), sender.to_owned());
        let at = self.headers.partition_point(|header| *header < entry);
        self.headers.insert(at, entry);
    }
}

/// The `Nats-Msg-Id` value as a dedup id: trimmed, bounded, blank = none.
fn dedup_id(value: &str) -> Result<Option<String>, ProtoError> {
    let id = value.trim();
    if id.len() > MAX_DEDUP_ID_BYTES {
        return Err(ProtoError::bad_request(format!(
            "header {DEDUP_HEADER} is {} bytes long, more than the {MAX_DEDUP_ID_BYTES} allowed",
            id.len()
        )));
    }
    Ok((!id.is_empty()).then(|| id.to_owned()))
}

fn seconds(header: &str, value: &str) -> Result<u64, ProtoError> {
    value.trim().parse().map_err(|_| {
        ProtoError::bad_request(format!(
            "header {header} must be a whole number of seconds, got {value:?}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, *value);
        }
        headers
    }

    #[test]
    fn reads_options_case_insensitively_and_keeps_other_headers() {
        let headers = map(&[
            ("MQ9-Priority", "urgent"),
            ("mq9-key", "status"),
            ("Mq9-Delay", "5"),
            ("mq9-ttl", "60"),
            ("mq9-tags", "a, b,,c"),
            ("mq9-future", "ignored"),
            ("trace-id", "t1"),
        ]);
        let options = parse(Some(&headers)).unwrap();
        assert_eq!(options.priority, Some(Priority::Urgent));
        assert_eq!(options.key.as_deref(), Some("status"));
        assert_eq!(options.delay_secs, Some(5));
        assert_eq!(options.ttl_secs, Some(60));
        assert_eq!(options.tags, vec!["a", "b", "c"]);
        assert_eq!(
            options.headers,
            vec![("trace-id".to_owned(), "t1".to_owned())]
        );
    }

    #[test]
    fn bad_values_name_the_header() {
        for (name, value) in [
            ("mq9-priority", "loud"),
            ("mq9-delay", "-1"),
            ("mq9-ttl", "1.5"),
        ] {
            let err = parse(Some(&map(&[(name, value)]))).unwrap_err();
            assert!(err.message.contains(name), "{}", err.message);
        }
    }

    #[test]
    fn the_sender_header_is_the_brokers_alone() {
        let headers = map(&[
            ("mq9-sender", "forged.address"),
            ("Nats-Request-Info", r#"{"acc":"AFORGED"}"#),
            ("a-first", "1"),
            ("z-last", "2"),
        ]);
        let mut options = parse(Some(&headers)).unwrap();
        let names = |o: &SendOptions| o.headers.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&options),
            ["a-first", "z-last"],
            "neither is stored as sent"
        );
        options.set_sender("team.translator");
        assert_eq!(names(&options), ["a-first", "mq9-sender", "z-last"]);
        assert_eq!(options.headers[1].1, "team.translator");
    }

    #[test]
    fn the_idempotency_key_is_read_and_kept_as_a_header() {
        let options = parse(Some(&map(&[("Nats-Msg-Id", " order-7 ")]))).unwrap();
        assert_eq!(options.dedup_id.as_deref(), Some("order-7"));
        assert_eq!(options.headers[0].0, "Nats-Msg-Id");
        let blank = parse(Some(&map(&[("nats-msg-id", " ")]))).unwrap();
        assert_eq!(blank.dedup_id, None, "a blank id deduplicates nothing");
        let long = "x".repeat(MAX_DEDUP_ID_BYTES + 1);
        let err = parse(Some(&map(&[("Nats-Msg-Id", &long)]))).unwrap_err();
        assert!(err.message.contains(DEDUP_HEADER), "{}", err.message);
    }
}
