//! JWT auth end to end: the credentials the operator mints are accepted by a real nats-server
//! configured with the trust block the operator wrote into the Broker's ConfigMap, and they
//! allow exactly what the Mailbox's spec says.

mod support;

use serde_json::{json, Value};
use support::apiserver::FakeApiServer;
use support::cluster::*;
use support::data_plane::DataPlane;
use support::DEADLINE;
use tokio::sync::mpsc::UnboundedReceiver;

/// A connection made with minted credentials, and the errors nats-server sent on it (a refused
/// publish is dropped by the server, which says so only there).
struct Agent {
    client: async_nats::Client,
    server_errors: UnboundedReceiver<String>,
}

/// Connects with a `.creds` text, or fails.
async fn connect(url: &str, creds: &str) -> Result<Agent, String> {
    let (errors, server_errors) = tokio::sync::mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::with_credentials(creds)
        .map_err(|e| e.to_string())?
        .event_callback(move |event| {
            let errors = errors.clone();
            async move {
                if let async_nats::Event::ServerError(error) = event {
                    let _ = errors.send(error.to_string());
                }
            }
        })
        .connect(url)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Agent {
        client,
        server_errors,
    })
}

/// What became of a request.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    /// The broker answered without an error.
    Answered,
    /// nats-server refused the publish: `Permissions Violation for Publish to "<subject>"`.
    Refused,
    /// Something else: an error reply, no responders, or nothing at all before the deadline.
    Other(String),
}

impl Agent {
    async fn request(&mut self, subject: &str, body: &str) -> Fate {
        let Agent {
            client,
            server_errors,
        } = self;
        let violation = format!("Permissions Violation for Publish to \"{subject}\"");
        let request = client.request(subject.to_owned(), body.to_owned().into());
        let refused = async {
            while let Some(error) = server_errors.recv().await {
                if error.contains(&violation) {
                    return;
                }
            }
            std::future::pending().await
        };
        let fate = async {
            tokio::select! {
                reply = request => match reply {
                    Ok(reply) => {
                        let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
                        match reply["error"].as_str().filter(|e| !e.is_empty()) {
                            None => Fate::Answered,
                            Some(error) => Fate::Other(format!("error reply: {error}")),
                        }
                    }
                    Err(e) => Fate::Other(format!("request failed: {e}")),
                },
                () = refused => Fate::Refused,
            }
        };
        let timed_out = || Fate::Other("no answer and no refusal before the deadline".into());
        tokio::time::timeout(DEADLINE, fate)
            .await
            .unwrap_or_else(|_| timed_out())
    }
}

/// The fake API server, the operator, and the Broker `agents` (JWT auth, the default) served by
/// a real nats-server and broker at `url`, configured as the operator wrote them.
struct JwtBroker {
    api: FakeApiServer,
    operator: Operator,
    url: String,
    _data_plane: DataPlane,
}

impl JwtBroker {
    async fn start() -> JwtBroker {
        let api = FakeApiServer::start().await;
        let port = support::free_port().port();
        let url = format!("nats://127.0.0.1:{port}");
        let operator = Operator::start(&api, &url, 2);
        let broker = json!({"apiVersion": "mq9.io/v1alpha1", "kind": "Broker",
            "metadata": {"name": "agents", "namespace": NS}, "spec": {}});
        api.create(BROKERS, broker);
        let _data_plane = DataPlane::start(&api, &operator, NS, "agents", port).await;
        JwtBroker {
            api,
            operator,
            url,
            _data_plane,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn minted_credentials_work_and_are_scoped_to_their_mailbox() {
    let JwtBroker {
        api,
        operator,
        url,
        _data_plane,
    } = JwtBroker::start().await;
    assert!(
        async_nats::connect(&url).await.is_err(),
        "the server refuses clients without credentials"
    );

    broker_pods_ready(&api, NS, "agents", 1).await;
    for (name, address, send_to) in [
        ("inbox", "team.inbox", json!(["team.*"])),
        ("other", "other.box", json!([])),
    ] {
        let mailbox = json!({"apiVersion": "mq9.io/v1alpha1", "kind": "Mailbox",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"brokerRef": {"name": "agents"}, "address": address, "sendTo": send_to, "ttl": "1h"}});
        api.create(MAILBOXES, mailbox);
    }
    let what = |name: &str| operator.waiting_for(format!("Mailbox {name} Created"));
    for name in ["inbox", "other"] {
        api.wait_for(&what(name), |api| {
            let mailbox = api.get(MAILBOXES, NS, name)?;
            condition(&mailbox, "Ready").filter(|c| c["reason"] == "Created")
        })
        .await;
    }

    let secret = api.get(SECRETS, NS, "inbox-mq9").unwrap();
    assert_eq!(
        secret_text(&secret, "MQ9_CREDS").unwrap(),
        "/var/run/secrets/mq9/user.creds"
    );
    let mut agent = connect(&url, &secret_text(&secret, "user.creds").unwrap())
        .await
        .expect("the minted credentials log in");
    for (subject, body, fate, what) in [
        (
            "$mq9.AI.MSG.FETCH.team.inbox",
            "{}",
            Fate::Answered,
            "its own mailbox",
        ),
        (
            "$mq9.AI.MSG.SEND.team.inbox",
            "to myself",
            Fate::Answered,
            "sendTo team.*",
        ),
        (
            "$mq9.AI.MSG.SEND.other.box",
            "hi",
            Fate::Refused,
            "outside sendTo",
        ),
        (
            "$mq9.AI.MSG.FETCH.other.box",
            "{}",
            Fate::Refused,
            "another agent's mailbox",
        ),
        (
            "$mq9.ADMIN.MAILBOX.LIST",
            "{}",
            Fate::Refused,
            "the admin API",
        ),
    ] {
        assert_eq!(agent.request(subject, body).await, fate, "{what}");
    }

    // Credentials expire with the mailbox: the JWT carries the mailbox's expiry.
    let creds = secret_text(&secret, "user.creds").unwrap();
    let jwt = creds.lines().nth(1).unwrap();
    let claims = jwt.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &data_encoding::BASE64URL_NOPAD
            .decode(claims.as_bytes())
            .unwrap(),
    )
    .unwrap();
    let mailbox = api.get(MAILBOXES, NS, "inbox").unwrap();
    let expires_at: k8s_openapi::jiff::Timestamp = mailbox["status"]["expiresAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(claims["exp"], expires_at.as_second());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_samples_become_ready() {
    let api = FakeApiServer::start().await;
    let port = support::free_port().port();
    let operator = Operator::start(&api, &format!("nats://127.0.0.1:{port}"), 2);
    let mut samples: Vec<Value> = std::fs::read_dir("config/samples")
        .unwrap()
        .map(|entry| {
            serde_yaml::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap()
        })
        .collect();
    samples.sort_by_key(|s| s["kind"] != "Broker");
    for sample in samples {
        let resource = match sample["kind"].as_str().unwrap() {
            "Broker" => BROKERS,
            "Mailbox" => MAILBOXES,
            _ => BROADCASTS,
        };
        api.create(resource, sample);
    }
    let _data_plane = DataPlane::start(&api, &operator, "mq9", "agents", port).await;
    broker_pods_ready(&api, "mq9", "agents", 3).await;
    for name in ["translator", "translator-status"] {
        api.wait_for(
            operator.waiting_for(format!("Mailbox {name} Ready")),
            |api| {
                let mailbox = api.get(MAILBOXES, "mq9", name)?;
                condition(&mailbox, "Ready").filter(|c| c["status"] == "True")
            },
        )
        .await;
    }
    let secret = api
        .get(SECRETS, "mq9", "translator-status-credentials")
        .expect("the sample's secretName");
    assert_eq!(
        secret_text(&secret, "mail_address").unwrap(),
        "status.translator"
    );
    let translator = api.get(SECRETS, "mq9", "translator-mq9").unwrap();
    assert_eq!(
        translator["metadata"]["labels"]["team"], "language",
        "secretTemplate labels"
    );
    api.wait_for(
        operator.waiting_for("Broadcast tasks with both members"),
        |api| {
            let broadcast = api.get(BROADCASTS, "mq9", "tasks")?;
            condition(&broadcast, "Ready").filter(|c| c["status"] == "True")?;
            (broadcast["status"]["memberCount"] == 2).then_some(())
        },
    )
    .await;
}

/// With JWT auth a Mailbox pass needs the Broker's keys (its auth Secret) and its namespace's
/// tenant record (the `<broker>-tenants` ConfigMap): a resync reads neither from the API
/// server — they are known from the Broker controller's own passes, which read each once.
#[tokio::test(flavor = "multi_thread")]
async fn resyncs_with_jwt_auth_read_no_broker_object() {
    let mailboxes = 5;
    let JwtBroker {
        api,
        operator,
        _data_plane,
        ..
    } = JwtBroker::start().await;
    broker_pods_ready(&api, NS, "agents", 1).await;
    for i in 0..mailboxes {
        let mailbox = json!({"apiVersion": "mq9.io/v1alpha1", "kind": "Mailbox",
            "metadata": {"name": format!("m{i}"), "namespace": NS},
            "spec": {"brokerRef": {"name": "agents"}}});
        api.create(MAILBOXES, mailbox);
    }
    for i in 0..mailboxes {
        let what = operator.waiting_for(format!("Mailbox m{i} Created"));
        api.wait_for(&what, |api| {
            let mailbox = api.get(MAILBOXES, NS, &format!("m{i}"))?;
            condition(&mailbox, "Ready").filter(|c| c["reason"] == "Created")
        })
        .await;
    }
    let before = api.requests();
    let (mailbox_passes, broker_passes) = (
        operator.passes("mailbox").await,
        operator.passes("broker").await,
    );
    let deadline = tokio::time::Instant::now() + DEADLINE;
    // Two resyncs of every Mailbox.
    while operator.passes("mailbox").await < mailbox_passes + 2.0 * mailboxes as f64 {
        assert!(tokio::time::Instant::now() < deadline, "no resync");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let made = api.requests_since(&before);
    let broker_passes = operator.passes("broker").await - broker_passes;
    let reads = |resource: &str| made.get(&format!("get {resource}")).copied().unwrap_or(0);
    let (secrets, config_maps) = (reads("v1/secrets"), reads("v1/configmaps"));
    assert!(
        secrets as f64 <= broker_passes && config_maps as f64 <= broker_passes,
        "{secrets} Secret and {config_maps} ConfigMap reads for {broker_passes} Broker passes \
         and at least {} Mailbox passes: {made:?}",
        2 * mailboxes
    );
}
