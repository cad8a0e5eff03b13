//! Requests of the agent registry: `$mq9.AI.AGENT.REGISTER | UNREGISTER | REPORT | DISCOVER`.

use super::body::Body;
use super::request::field;
use super::ProtoError;

/// Default and maximum page size of DISCOVER.
pub const DEFAULT_DISCOVER_LIMIT: u64 = 20;
pub const MAX_DISCOVER_LIMIT: u64 = 1000;

/// REGISTER: the agent's card, kept exactly as sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RegisterRequest {
    /// The identity: `name` when present, else `mailbox`.
    pub identity: String,
    pub name: Option<String>,
    pub mailbox: Option<String>,
    /// Seconds the entry lives without a REPORT; `None` = for ever.
    pub ttl: Option<u64>,
    /// The body as sent (a JSON object), returned by DISCOVER.
    pub card: String,
    /// Every string value of the card, for full-text search.
    pub text: String,
}

impl RegisterRequest {
    pub fn parse(raw: &[u8]) -> Result<Self, ProtoError> {
        let body = Body::parse(raw)?;
        let lookup = AgentLookup::parse(&body)?;
        let ttl = body.opt_u64(field::TTL)?.filter(|ttl| *ttl > 0);
        let card = String::from_utf8(raw.to_vec())
            .map_err(|_| ProtoError::bad_request("request body must be UTF-8 JSON"))?
            .trim()
            .to_owned();
        let mut text = String::new();
        collect_strings(&serde_json::Value::Object(body.into_map()), &mut text);
        Ok(RegisterRequest {
            identity: lookup
                .name
                .clone()
                .or(lookup.mailbox.clone())
                .expect("one is present"),
            name: lookup.name,
            mailbox: lookup.mailbox,
            ttl,
            card,
            text,
        })
    }
}

/// UNREGISTER and REPORT: which agent, by `name` or by `mailbox`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AgentLookup {
    pub name: Option<String>,
    pub mailbox: Option<String>,
}

impl AgentLookup {
    pub fn parse(body: &Body) -> Result<Self, ProtoError> {
        let non_empty = |name| {
            body.opt_str(name)
                .map(|v| v.filter(|s| !s.is_empty()).map(str::to_owned))
        };
        let lookup = AgentLookup {
            name: non_empty(field::NAME)?,
            mailbox: non_empty(field::MAILBOX)?,
        };
        if lookup.name.is_none() && lookup.mailbox.is_none() {
            return Err(ProtoError::bad_request(
                "field `name` or `mailbox` is required",
            ));
        }
        Ok(lookup)
    }
}

/// DISCOVER.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DiscoverRequest {
    /// Full-text query; `semantic` runs the same ranked search until embeddings exist.
    pub query: Option<String>,
    pub limit: usize,
    /// 1-based.
    pub page: usize,
}

impl DiscoverRequest {
    pub fn parse(body: &Body) -> Result<Self, ProtoError> {
        let text = body.opt_str(field::TEXT)?.filter(|t| !t.trim().is_empty());
        let semantic = body
            .opt_str(field::SEMANTIC)?
            .filter(|t| !t.trim().is_empty());
        Ok(DiscoverRequest {
            query: text.or(semantic).map(str::to_owned),
            limit: body
                .opt_u64_in(field::LIMIT, 1..=MAX_DISCOVER_LIMIT)?
                .unwrap_or(DEFAULT_DISCOVER_LIMIT) as usize,
            page: body
                .opt_u64_in(field::PAGE, 1..=u32::MAX as u64)?
                .unwrap_or(1) as usize,
        })
    }
}

fn collect_strings(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::String(s) => {
            out.push_str(s);
            out.push(' ');
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_keeps_the_card_and_its_text() {
        let raw = br#"{"name":"translator","skills":[{"id":"fr-en","tags":["french"]}],"ttl":30}"#;
        let request = RegisterRequest::parse(raw).unwrap();
        assert_eq!(request.identity, "translator");
        assert_eq!(request.card.as_bytes(), raw);
        assert_eq!(request.ttl, Some(30));
        assert!(request.text.contains("fr-en") && request.text.contains("french"));
    }

    #[test]
    fn identity_falls_back_to_mailbox_and_one_is_required() {
        let request = RegisterRequest::parse(br#"{"mailbox":"m1"}"#).unwrap();
        assert_eq!(request.identity, "m1");
        let err = RegisterRequest::parse(br#"{"desc":"x"}"#).unwrap_err();
        assert!(err.message.contains("`name` or `mailbox`"));
    }

    #[test]
    fn discover_defaults_and_semantic() {
        let request =
            DiscoverRequest::parse(&Body::parse(br#"{"semantic":"translate"}"#).unwrap()).unwrap();
        assert_eq!(
            (request.query.as_deref(), request.limit, request.page),
            (Some("translate"), 20, 1)
        );
        assert!(DiscoverRequest::parse(&Body::parse(br#"{"page":0}"#).unwrap()).is_err());
    }
}
