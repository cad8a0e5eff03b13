use super::*;
use crate::protocol::subject;

const CALLER: &str = r#"{"acc":"ATENANT","user":"UAGENT","tags":["mq9-address:team.writer"]}"#;

fn caller() -> Caller {
    Caller::from_request_info(CALLER).unwrap()
}

/// Parses one message the way the broker does: subject first, then the rest.
fn parse(
    subject: &str,
    headers: &[(&str, &str)],
    body: &str,
    caller: Option<Caller>,
) -> Result<Request, ProtoError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(*name, *value);
    }
    let payload = Bytes::copy_from_slice(body.as_bytes());
    Request::parse(subject::parse(subject)?, Some(&map), &payload, caller)
}

/// The variant a request serialises as: serde tags each by its name.
fn variant(json: &serde_json::Value) -> String {
    match json {
        serde_json::Value::String(unit) => unit.clone(),
        serde_json::Value::Object(tagged) => tagged.keys().next().unwrap().clone(),
        other => panic!("not a serialised variant: {other}"),
    }
}

/// Every variant's name, as serde knows them: its error for an unknown variant lists them
/// (`unknown variant `?`, expected one of `Create`, `Send`, …`), so a variant added later
/// fails the round trip below until a message of it is in [`one_of_each`].
fn every_variant() -> Vec<String> {
    let error = serde_json::from_str::<Request>(r#""?""#)
        .unwrap_err()
        .to_string();
    error
        .split('`')
        .skip(3)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// One message per command, with the optional parts filled in where a command has them.
fn one_of_each() -> Vec<Request> {
    let send_headers = [
        ("mq9-priority", "urgent"),
        ("mq9-key", "status"),
        ("mq9-delay", "5"),
        ("mq9-ttl", "60"),
        ("mq9-tags", "a,b"),
        ("Nats-Msg-Id", "order-7"),
        ("trace-id", "t1"),
    ];
    let caller = || Some(caller());
    [
        parse(
            "$mq9.AI.MAILBOX.CREATE",
            &[],
            r#"{"name":"team.a","ttl":0,"type":"latest","desc":"d"}"#,
            None,
        ),
        parse(
            "$mq9.AI.MSG.SEND.team.a",
            &send_headers,
            "\u{0}bin",
            caller(),
        ),
        parse(
            "$mq9.AI.MSG.FETCH.team.a",
            &[],
            r#"{"group_name":"g","deliver":"from_id","from_id":4,"config":{"num_msgs":3}}"#,
            None,
        ),
        parse(
            "$mq9.AI.MSG.ACK.team.a",
            &[],
            r#"{"group_name":"g","msg_id":9}"#,
            None,
        ),
        parse(
            "$mq9.AI.MAILBOX.QUERY.team.a",
            &[],
            r#"{"key":"k","tags":["x"],"since":1,"before":8,"delayed":true}"#,
            None,
        ),
        parse("$mq9.AI.MSG.DELETE.team.a.d12", &[], "", None),
        parse(
            "$mq9.AI.MAILBOX.SUBSCRIBE",
            &[],
            r#"{"mail_address":"team.a","topic":"tasks.>","account":"ATENANT"}"#,
            None,
        ),
        parse(
            "$mq9.AI.BROADCAST.tasks.new",
            &send_headers,
            "job",
            caller(),
        ),
        parse(
            "$mq9.AI.AGENT.REGISTER",
            &[],
            r#"{"name":"writer","ttl":30,"skills":["prose"]}"#,
            caller(),
        ),
        parse(
            "$mq9.AI.AGENT.UNREGISTER",
            &[],
            r#"{"mailbox":"team.a"}"#,
            None,
        ),
        parse(
            "$mq9.AI.AGENT.REPORT",
            &[],
            r#" {"name":"writer"} "#,
            caller(),
        ),
        parse(
            "$mq9.AI.AGENT.DISCOVER",
            &[],
            r#"{"text":"prose","limit":5}"#,
            None,
        ),
        parse(
            "$mq9.ADMIN.MAILBOX.ENSURE",
            &[],
            r#"{"name":"team.a","expires_at":99,"owner":"uid-1","type":"latest"}"#,
            None,
        ),
        parse(
            "$mq9.ADMIN.MAILBOX.DELETE",
            &[],
            r#"{"name":"team.a"}"#,
            None,
        ),
        parse("$mq9.ADMIN.MAILBOX.INFO", &[], r#"{"name":"team.a"}"#, None),
        parse(
            "$mq9.ADMIN.MAILBOX.LIST",
            &[],
            r#"{"prefix":"team.","after":"team.a"}"#,
            None,
        ),
        parse("$mq9.ADMIN.STATS", &[], "", None),
        parse("$mq9.ADMIN.SHARDS", &[], "{}", None),
    ]
    .into_iter()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn every_command_survives_a_serde_round_trip() {
    let mut covered = Vec::new();
    for request in one_of_each() {
        let json = serde_json::to_value(&request).unwrap();
        let read: Request = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(read, request);
        covered.push(variant(&json));
    }
    let mut every = every_variant();
    every.sort_unstable();
    covered.sort_unstable();
    assert_eq!(covered, every, "one request of each variant");
}

#[test]
fn a_known_sender_is_stamped_on_what_it_stores() {
    let Request::Send { options, .. } =
        parse("$mq9.AI.MSG.SEND.x", &[], "", Some(caller())).unwrap()
    else {
        panic!("not a SEND")
    };
    assert!(options
        .headers
        .contains(&("mq9-sender".to_owned(), "team.writer".to_owned())));
    let Request::Broadcast {
        options, publisher, ..
    } = parse("$mq9.AI.BROADCAST.t", &[], "", Some(caller())).unwrap()
    else {
        panic!("not a BROADCAST")
    };
    assert_eq!(publisher.as_deref(), Some("ATENANT"));
    assert_eq!(options.headers.len(), 1, "{:?}", options.headers);
    let Request::Send { options, .. } = parse("$mq9.AI.MSG.SEND.x", &[], "", None).unwrap() else {
        panic!("not a SEND")
    };
    assert!(
        options.headers.is_empty(),
        "an anonymous sender is not named"
    );
}

#[test]
fn the_two_queries_differ_only_in_unread() {
    let query = |subject| match parse(subject, &[], "{}", None).unwrap() {
        Request::Query { with_unread, .. } => with_unread,
        other => panic!("{other:?}"),
    };
    assert!(!query("$mq9.AI.MSG.QUERY.x"));
    assert!(query("$mq9.AI.MAILBOX.QUERY.x"));
}

#[test]
fn bad_headers_and_bodies_name_the_problem() {
    let err = parse("$mq9.AI.BROADCAST.t", &[("mq9-ttl", "soon")], "", None).unwrap_err();
    assert!(err.message.contains("mq9-ttl"), "{}", err.message);
    let err = parse("$mq9.AI.MSG.FETCH.x", &[], "[1]", None).unwrap_err();
    assert!(err.message.contains("JSON object"), "{}", err.message);
    let err = parse("$mq9.ADMIN.MAILBOX.INFO", &[], "{}", None).unwrap_err();
    assert!(err.message.contains("`name`"), "{}", err.message);
    // A DELETE reads no body: what SDKs send there is never refused.
    assert!(parse("$mq9.AI.MSG.DELETE.x.1", &[], "not json", None).is_ok());
}
