//! Every encoder read back by the broker's own parser.

use std::fmt::Debug;

use super::*;
use crate::protocol::admin;
use crate::protocol::body::Body;
use crate::protocol::{headers, Priority};

/// `parse(encode(x)) == x`, with the encoded body in the failure message.
fn assert_round_trip<T: PartialEq + Debug>(
    request: &T,
    encoded: Vec<u8>,
    parse: impl Fn(&Body) -> Result<T, ProtoError>,
) {
    let text = String::from_utf8(encoded).unwrap();
    let body = Body::parse(text.as_bytes()).unwrap();
    assert_eq!(&parse(&body).unwrap(), request, "{text}");
}

#[test]
fn create_and_ensure() {
    let create = CreateRequest {
        name: Some("team.a1".into()),
        ttl: Some(0),
        kind: MailboxType::Latest,
        desc: Some("inbox".into()),
    };
    assert_round_trip(&create, create.encode(), CreateRequest::parse);
    let defaults = CreateRequest {
        name: None,
        ttl: None,
        kind: MailboxType::Standard,
        desc: None,
    };
    assert_eq!(defaults.encode(), b"{}", "defaults are left out");
    assert_round_trip(&defaults, defaults.encode(), CreateRequest::parse);

    let ensure = EnsureRequest {
        name: "orders.agent1".into(),
        ttl: Some(60),
        expires_at: Some(1_700_000_000),
        kind: MailboxType::Latest,
        owner: Some("uid-1".into()),
        desc: Some("d".into()),
    };
    assert_round_trip(&ensure, ensure.encode(), EnsureRequest::parse);
    let minimal = EnsureRequest {
        name: "orders.agent1".into(),
        ttl: None,
        expires_at: None,
        kind: MailboxType::Standard,
        owner: None,
        desc: None,
    };
    assert_round_trip(&minimal, minimal.encode(), EnsureRequest::parse);
    assert_round_trip(&"a.b".to_owned(), mailbox_name("a.b"), admin::name);
}

#[test]
fn fetch_with_every_start_and_the_defaults_left_out() {
    for deliver in [
        Deliver::Earliest,
        Deliver::Latest,
        Deliver::FromTime(1_700_000_000),
        Deliver::FromId(0),
    ] {
        let fetch = FetchRequest {
            group: Some("workers".into()),
            deliver,
            force_deliver: true,
            num_msgs: 1,
            max_wait_ms: 0,
            ack_wait_ms: 5,
        };
        assert_round_trip(&fetch, fetch.encode(), FetchRequest::parse);
    }
    let defaults = FetchRequest {
        group: None,
        deliver: Deliver::Earliest,
        force_deliver: false,
        num_msgs: DEFAULT_NUM_MSGS as usize,
        max_wait_ms: DEFAULT_MAX_WAIT_MS,
        ack_wait_ms: DEFAULT_ACK_WAIT_MS,
    };
    assert_eq!(defaults.encode(), b"{}");
    assert_round_trip(&defaults, defaults.encode(), FetchRequest::parse);
}

#[test]
fn ack_query_subscribe_and_list() {
    let ack = AckRequest {
        group: "g".into(),
        msg_id: 41,
    };
    assert_round_trip(&ack, ack.encode(), AckRequest::parse);

    let query = QueryRequest {
        key: Some("status".into()),
        tags: vec!["a".into(), "b".into()],
        since: Some(10),
        limit: 3,
        before: Some(99),
        delayed: true,
    };
    assert_round_trip(&query, query.encode(), QueryRequest::parse);
    let defaults = QueryRequest {
        key: None,
        tags: Vec::new(),
        since: None,
        limit: DEFAULT_QUERY_LIMIT as usize,
        before: None,
        delayed: false,
    };
    assert_eq!(defaults.encode(), b"{}");

    for account in [None, Some("team-a".to_owned())] {
        let subscribe = SubscribeRequest {
            address: "team.a1".into(),
            topic: "task.*".into(),
            account,
        };
        assert_round_trip(&subscribe, subscribe.encode(), SubscribeRequest::parse);
    }

    let list = ListRequest {
        prefix: "orders.".into(),
        after: Some("orders.a".into()),
        limit: 7,
        owner: Some("uid-1".into()),
    };
    assert_round_trip(&list, list.encode(), ListRequest::parse);
    let defaults = ListRequest {
        prefix: String::new(),
        after: None,
        limit: DEFAULT_LIST_LIMIT as usize,
        owner: None,
    };
    assert_eq!(defaults.encode(), b"{}");
}

#[test]
fn agent_registry_requests() {
    let card = br#"{"name":"translator","mailbox":"t.box","ttl":30,"skills":["fr"]}"#;
    let register = RegisterRequest::parse(card).unwrap();
    assert_eq!(
        RegisterRequest::parse(&register.encode()).unwrap(),
        register
    );

    for (name, mailbox) in [(Some("translator"), None), (None, Some("t.box"))] {
        let lookup = AgentLookup {
            name: name.map(str::to_owned),
            mailbox: mailbox.map(str::to_owned),
        };
        assert_round_trip(&lookup, lookup.encode(), AgentLookup::parse);
        let report = lookup.encode_report(Some(serde_json::json!({"load": 0.5})));
        assert_round_trip(&lookup, report.clone(), AgentLookup::parse);
        let report: Value = serde_json::from_slice(&report).unwrap();
        assert_eq!(report[field::STATUS]["load"], 0.5, "the status travels");
    }

    let discover = DiscoverRequest {
        query: Some("translate french".into()),
        limit: 5,
        page: 2,
    };
    assert_round_trip(&discover, discover.encode(), DiscoverRequest::parse);
    let defaults = DiscoverRequest {
        query: None,
        limit: DEFAULT_DISCOVER_LIMIT as usize,
        page: 1,
    };
    assert_eq!(defaults.encode(), b"{}");
}

#[test]
fn send_options_round_trip_through_the_header_parser() {
    let options = SendOptions {
        priority: Some(Priority::Urgent),
        key: Some("status".into()),
        delay_secs: Some(5),
        ttl_secs: Some(60),
        tags: vec!["a".into(), "b".into()],
        headers: vec![
            ("Nats-Msg-Id".into(), "order-7".into()),
            ("trace-id".into(), "t1".into()),
        ],
        dedup_id: Some("order-7".into()),
    };
    let encoded = options.to_headers().unwrap();
    assert_eq!(headers::parse(Some(&encoded)).unwrap(), options);
    assert!(SendOptions::default().to_headers().unwrap().is_empty());

    let dedup_only = SendOptions {
        dedup_id: Some("order-8".into()),
        ..SendOptions::default()
    };
    let parsed = headers::parse(Some(&dedup_only.to_headers().unwrap())).unwrap();
    assert_eq!(parsed.dedup_id.as_deref(), Some("order-8"));
}

#[test]
fn headers_nats_cannot_carry_are_refused_not_panicked_on() {
    let comma = SendOptions {
        tags: vec!["a,b".into()],
        ..SendOptions::default()
    };
    let err = comma.to_headers().unwrap_err();
    assert!(err.message.contains("a,b"), "{}", err.message);
    for (name, value) in [("bad:name", "v"), ("x-ok", "two\nlines")] {
        let options = SendOptions {
            headers: vec![(name.into(), value.into())],
            ..SendOptions::default()
        };
        let err = options.to_headers().unwrap_err();
        assert_eq!(err.code, crate::protocol::ErrorCode::BadRequest);
    }
}
