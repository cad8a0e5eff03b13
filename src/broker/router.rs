//! A replicated broker's routing (replication.md, "Routing"): a request for a shard this broker
//! leads goes to that shard's engine; any other is forwarded to the shard's leader, which
//! answers the client directly: one extra hop, no extra reply hop (see [`super::forward`],
//! which also waits for a leader when the shard has none).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;

use super::forward::{self, Forwarder, Undelivered};
use super::shards_report::ShardsReport;
use crate::engine::Job;
use crate::protocol::{reply, ErrorCode, ProtoError, Request};
use crate::replication::gather;
use crate::replication::route::{self, Target};

/// How long a gathering waits for each shard's answer.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a replicated broker's jobs go.
pub struct Router {
    client: async_nats::Client,
    forwarder: Arc<Forwarder>,
    report: Arc<ShardsReport>,
    shards: u32,
    /// The job queues of the shards this broker leads now.
    leading: RwLock<HashMap<u32, flume::Sender<Job>>>,
}

impl Router {
    pub fn new(client: async_nats::Client, forwarder: Forwarder, report: ShardsReport) -> Router {
        Router {
            client,
            forwarder: Arc::new(forwarder),
            shards: report.shards,
            report: Arc::new(report),
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
            Target::Here => self.report(job),
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
        let answer_to = job.reply_to.clone();
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
        self.forwarder.forward(shard, message, answer_to);
    }

    /// Answers SHARDS from the leases and the logs' state.
    fn report(&self, job: Job) {
        let Some(reply_to) = job.reply_to else {
            return;
        };
        let (report, client) = (self.report.clone(), self.client.clone());
        tokio::spawn(async move {
            if let Err(e) = client.publish(reply_to, report.answer().await).await {
                tracing::warn!(error = %e, "publishing the SHARDS reply failed");
            }
        });
    }

    /// Asks every shard `message` (a LIST or STATS) and answers the client the merged reply,
    /// or `unavailable` naming a shard that did not answer.
    fn gather(&self, job: Job, message: &async_nats::Message) {
        let Some(reply_to) = job.reply_to else {
            return;
        };
        let (forwarder, client) = (self.forwarder.clone(), self.client.clone());
        let shards = self.shards;
        let max_payload = self.client.server_info().max_payload;
        let message = message.clone();
        tokio::spawn(async move {
            let asks = (0..shards).map(|shard| {
                let (forwarder, message) = (&forwarder, &message);
                async move {
                    let answer = forwarder.ask(shard, message, GATHER_TIMEOUT).await;
                    let answer = answer.map_err(|why| (shard, why))?;
                    serde_json::from_slice::<Value>(&answer.payload)
                        .ok()
                        .filter(|a| a["error"] == "")
                        .ok_or((shard, Undelivered::Lost("an error answer".into())))
                }
            });
            let answers = futures::future::join_all(asks).await;
            let body = match answers.into_iter().collect::<Result<Vec<Value>, _>>() {
                Ok(replies) => match &job.command {
                    Request::List(list) => {
                        reply::ok(gather::list(&replies, list.limit, max_payload))
                    }
                    _ => reply::ok(gather::stats(&replies)),
                },
                Err((shard, Undelivered::NoLeader)) => forward::no_leader(shard).to_reply(),
                Err((shard, Undelivered::Lost(_))) => ProtoError::new(
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

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u32, flume::Sender<Job>>> {
        self.leading
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
