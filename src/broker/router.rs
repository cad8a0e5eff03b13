//! A replicated broker's routing (replication.md, "Routing"): a request for a shard this broker
//! leads goes to that shard's engine; any other is forwarded on `$mq9.FWD.<cluster>.<shard>`,
//! which only the shard's leader subscribes to, with the client's reply subject and headers
//! kept (the original subject in a header), so the leader answers the client directly: one
//! extra hop, no extra reply hop.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use serde_json::Value;

use crate::engine::Job;
use crate::protocol::{reply, ErrorCode, ProtoError, Request};
use crate::replication::gather;
use crate::replication::route::{self, Target, FORWARDED_SUBJECT};

/// How long a gathering waits for each shard's answer.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a replicated broker's jobs go.
pub struct Router {
    client: async_nats::Client,
    /// A second connection, for asking every shard (`LIST`, `STATS`): the answers come back
    /// from this broker's own shards too, which the main connection (`no_echo`) would not see.
    gather: async_nats::Client,
    cluster: String,
    shards: u32,
    /// The job queues of the shards this broker leads now.
    leading: RwLock<HashMap<u32, flume::Sender<Job>>>,
}

impl Router {
    pub fn new(
        client: async_nats::Client,
        gather: async_nats::Client,
        cluster: &str,
        shards: u32,
    ) -> Router {
        Router {
            client,
            gather,
            cluster: cluster.to_owned(),
            shards,
            leading: RwLock::default(),
        }
    }

    /// This broker now leads `shard`, whose engine reads `jobs`.
    pub fn lead(&self, shard: u32, jobs: flume::Sender<Job>) {
        self.write().insert(shard, jobs);
    }

    /// This broker no longer leads `shard`: its queue is dropped here (the engine ends once
    /// the jobs already handed over are done).
    pub fn step_down(&self, shard: u32) {
        self.write().remove(&shard);
    }

    /// Routes `job`, made from `message`; `forwarded_to` is the shard a forwarded message was
    /// sent to (its target is not computed again: a broadcast forwarded to one shard is for
    /// that shard alone).
    pub async fn route(&self, job: Job, message: &async_nats::Message, forwarded_to: Option<u32>) {
        let target = match forwarded_to {
            Some(shard) => Target::Shard(shard),
            None => route::target(&job.command, self.shards),
        };
        match target {
            Target::Shard(shard) => self.to_shard(shard, job, message).await,
            Target::AnyShard => {
                let led = self
                    .leading
                    .read()
                    .ok()
                    .and_then(|l| l.keys().next().copied());
                let shard = led.unwrap_or_else(|| rand::random_range(0..self.shards));
                self.to_shard(shard, job, message).await;
            }
            Target::Gather => self.gather(job, message),
            Target::EveryShard => {
                for shard in 0..self.shards {
                    let copy = Job {
                        command: job.command.clone(),
                        reply_to: job.reply_to.clone(),
                        kind: job.kind,
                        received: job.received,
                    };
                    self.to_shard(shard, copy, message).await;
                }
            }
        }
    }

    async fn to_shard(&self, shard: u32, job: Job, message: &async_nats::Message) {
        let local = self
            .leading
            .read()
            .ok()
            .and_then(|l| l.get(&shard).cloned());
        if let Some(jobs) = local {
            if jobs.send_async(job).await.is_ok() {
                return;
            }
            // The shard's engine just stopped (stepping down): its next leader serves it.
        }
        self.forward(shard, message).await;
    }

    /// Asks every shard `message` (a LIST or STATS) and answers the client the merged reply,
    /// or `unavailable` naming a shard that did not answer.
    fn gather(&self, job: Job, message: &async_nats::Message) {
        let Some(reply_to) = job.reply_to else {
            return;
        };
        let (gather, client) = (self.gather.clone(), self.client.clone());
        let (cluster, shards) = (self.cluster.clone(), self.shards);
        let max_payload = self.client.server_info().max_payload;
        let mut headers = message.headers.clone().unwrap_or_default();
        headers.insert(FORWARDED_SUBJECT, message.subject.as_str());
        let payload = message.payload.clone();
        tokio::spawn(async move {
            let asks = (0..shards).map(|shard| {
                let request = async_nats::Request::new()
                    .headers(headers.clone())
                    .payload(payload.clone())
                    .timeout(Some(GATHER_TIMEOUT));
                let subject = route::forward_subject(&cluster, shard);
                let gather = &gather;
                async move {
                    let answer = gather.send_request(subject, request).await.ok();
                    let answer =
                        answer.and_then(|m| serde_json::from_slice::<Value>(&m.payload).ok());
                    answer.filter(|a| a["error"] == "").ok_or(shard)
                }
            });
            let answers = futures::future::join_all(asks).await;
            let body = match answers.into_iter().collect::<Result<Vec<Value>, u32>>() {
                Ok(replies) => match &job.command {
                    Request::List(list) => {
                        reply::ok(gather::list(&replies, list.limit, max_payload))
                    }
                    _ => reply::ok(gather::stats(&replies)),
                },
                Err(shard) => ProtoError::new(
                    ErrorCode::Unavailable,
                    format!("shard {shard} did not answer; retry"),
                )
                .to_reply(),
            };
            if let Err(e) = client.publish(reply_to, body).await {
                tracing::warn!(error = %e, "publishing a gathered reply failed");
            }
        });
    }

    /// Publishes `message` to `shard`'s leader, keeping its reply subject and headers.
    async fn forward(&self, shard: u32, message: &async_nats::Message) {
        let mut headers = message.headers.clone().unwrap_or_default();
        headers.insert(FORWARDED_SUBJECT, message.subject.as_str());
        let subject = route::forward_subject(&self.cluster, shard);
        let payload = message.payload.clone();
        let sent = match message.reply.clone() {
            Some(reply) => {
                self.client
                    .publish_with_reply_and_headers(subject, reply, headers, payload)
                    .await
            }
            None => {
                self.client
                    .publish_with_headers(subject, headers, payload)
                    .await
            }
        };
        if let Err(e) = sent {
            tracing::warn!(shard, error = %e, "forwarding a request to its shard failed");
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u32, flume::Sender<Job>>> {
        self.leading
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The original message of a forwarded one: its subject back from the header (the header
/// itself stays; nothing reads it afterwards).
pub fn unforwarded(mut message: async_nats::Message) -> Option<async_nats::Message> {
    let original = message.headers.as_ref()?.get(FORWARDED_SUBJECT)?.as_str();
    message.subject = original.into();
    Some(message)
}
