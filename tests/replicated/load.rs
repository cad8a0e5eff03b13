//! Load for the failover tests: SENDs kept in flight without pause through every pod, each
//! acknowledged one recorded (its msg_id and payload) with the moment its answer came.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::*;

/// What the load saw.
#[derive(Default)]
pub struct Acked {
    /// Per mailbox, every acknowledged SEND: (msg_id, payload in base64).
    pub messages: BTreeMap<String, Vec<(u64, String)>>,
    /// Per mailbox, when its last acknowledgement came.
    pub last: BTreeMap<String, Instant>,
    /// Answers other than success or `unavailable`: there must be none.
    pub wrong: Vec<Value>,
}

pub struct Load {
    acked: Arc<Mutex<Acked>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    /// `in_flight` SENDs at all times, spread over `names` and the pods of `clients`; a SEND
    /// unanswered within 1 s is given up (it may still be stored: only acknowledged ones count).
    pub fn start(clients: &[async_nats::Client], names: &[String], in_flight: usize) -> Load {
        let acked = Arc::new(Mutex::new(Acked::default()));
        let (stop, stopping) = watch::channel(false);
        let tasks = (0..in_flight)
            .map(|task| {
                let (clients, names) = (clients.to_vec(), names.to_vec());
                let (acked, stopping) = (acked.clone(), stopping.clone());
                tokio::spawn(async move {
                    for sent in 0.. {
                        if *stopping.borrow() {
                            break;
                        }
                        let name = &names[(task + sent) % names.len()];
                        let client = &clients[(task + sent) % clients.len()];
                        let payload = format!("{task}.{sent}");
                        let subject = format!("$mq9.AI.MSG.SEND.{name}");
                        let request = client.request(subject, payload.clone().into());
                        let Ok(Ok(reply)) =
                            tokio::time::timeout(Duration::from_secs(1), request).await
                        else {
                            continue;
                        };
                        let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
                        let mut acked = acked.lock().unwrap();
                        match reply["msg_id"].as_u64() {
                            Some(msg_id) if reply["error"] == "" => {
                                let stored = (msg_id, base64(payload.as_bytes()));
                                acked.messages.entry(name.clone()).or_default().push(stored);
                                acked.last.insert(name.clone(), Instant::now());
                            }
                            _ if reply["code"] == "unavailable" => {}
                            _ => acked.wrong.push(reply),
                        }
                    }
                })
            })
            .collect();
        Load { acked, stop, tasks }
    }

    /// When `name`'s last SEND was acknowledged, if after `since`.
    pub fn acknowledged_after(&self, name: &str, since: Instant) -> Option<Instant> {
        let acked = self.acked.lock().unwrap();
        acked.last.get(name).copied().filter(|at| *at > since)
    }

    /// Stops the load once the SENDs in flight are done; what it saw.
    async fn stop(self) -> Acked {
        self.stop.send_replace(true);
        for task in self.tasks {
            task.await.unwrap();
        }
        Arc::into_inner(self.acked).unwrap().into_inner().unwrap()
    }
}

impl Load {
    /// Stops the load and checks what it saw: only `unavailable` was ever answered as an
    /// error, and every acknowledged message is stored ([`assert_all_stored`]).
    pub async fn stop_and_check(self, cluster: &Cluster) -> Acked {
        let acked = self.stop().await;
        let wrong = &acked.wrong;
        assert!(
            wrong.is_empty(),
            "only unavailable, never a wrong answer: {wrong:?}"
        );
        assert_all_stored(cluster, &acked).await;
        acked
    }
}

/// Every acknowledged message is stored under its msg_id with its payload, and no msg_id was
/// given twice (read back page by page, through any pod).
async fn assert_all_stored(cluster: &Cluster, acked: &Acked) {
    for (name, messages) in &acked.messages {
        let ids: BTreeSet<u64> = messages.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids.len(), messages.len(), "{name}: no msg_id given twice");
        let mut stored: BTreeMap<u64, String> = BTreeMap::new();
        loop {
            let from = stored.keys().next_back().map_or(0, |last| last + 1);
            let body = json!({"deliver": "from_id", "from_id": from, "config": {"num_msgs": 1000}});
            let page = cluster
                .until_ok(&format!("$mq9.AI.MSG.FETCH.{name}"), &body.to_string())
                .await;
            let page = page["messages"].as_array().unwrap().clone();
            if page.is_empty() {
                break;
            }
            for message in page {
                let msg_id = message["msg_id"].as_u64().unwrap();
                stored.insert(msg_id, message["payload"].as_str().unwrap().to_owned());
            }
        }
        for (msg_id, payload) in messages {
            assert_eq!(
                stored.get(msg_id),
                Some(payload),
                "{name}: acknowledged {msg_id} is stored"
            );
        }
    }
}
