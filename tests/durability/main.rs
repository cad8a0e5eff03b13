//! Durability (protocol.md §5, security.md "Health and durability"): a restart (SIGTERM), a
//! crash (SIGKILL) or a power cut (SIGKILL plus the loss of every unsynced write) of the broker
//! on the same data dir keeps messages, the msg_id sequence, group state and TTLs; a failed sync
//! stops the broker from answering success and fails `/healthz`.
#[path = "../support/mod.rs"]
mod support;

mod crash;
mod power_cut;
mod restart;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use support::powercut::{Shim, Snapshot};
use support::*;

/// A SEND outcome: the msg_id for a success reply, `None` when no reply came.
async fn try_send(client: &async_nats::Client, subject: &str, payload: String) -> Option<Value> {
    let request = client.request(subject.to_owned(), payload.into_bytes().into());
    match tokio::time::timeout(Duration::from_secs(3), request).await {
        Ok(Ok(reply)) => serde_json::from_slice(&reply.payload).ok(),
        _ => None,
    }
}

/// Sends `t{task}-{i}` in a loop until `stop`; returns the acknowledged (msg_id, payload).
async fn sender(
    client: async_nats::Client,
    subject: String,
    task: usize,
    acked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Vec<(u64, String)> {
    let mut confirmed = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let payload = format!("t{task}-{i}");
        i += 1;
        match try_send(&client, &subject, payload.clone()).await {
            Some(reply) if reply["error"] == "" => {
                confirmed.push((reply["msg_id"].as_u64().unwrap(), payload));
                acked.fetch_add(1, Ordering::Relaxed);
            }
            // No broker (no responders) or no reply: back off briefly, the send may be lost.
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    confirmed
}

/// Every stored message of a mailbox by msg_id, read with stateless FETCHes.
async fn read_all(env: &Env, address: &str) -> HashMap<u64, String> {
    let mut stored = HashMap::new();
    let mut from_id = 0;
    loop {
        let body = json!({"deliver": "from_id", "from_id": from_id,
            "config": {"num_msgs": 1000, "max_wait_ms": 0}});
        let reply = env.fetch(address, body).await;
        let batch = messages(&reply);
        let Some(last) = batch.last() else { break };
        from_id = last["msg_id"].as_u64().unwrap() + 1;
        for m in &batch {
            let text = String::from_utf8(payload(m)).unwrap();
            stored.insert(m["msg_id"].as_u64().unwrap(), text);
        }
    }
    stored
}
