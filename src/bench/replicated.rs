//! `mq9 bench --replicated`: the replicated data plane (replication.md) on one 3-node loopback
//! cluster, against JetStream R3 on the same servers, in one run.
//!
//! - `replicated.send` vs `jetstream.r3.publish_ack`: a durable SEND through pod 0 (its shard's
//!   leader appends each group-commit batch to an R3 log before answering) against a publish
//!   to an R3 stream, acknowledged once a quorum stored it; servers at their default sync.
//! - `replicated.send_sync` vs `jetstream.r3.publish_ack_sync`: the same on a second cluster
//!   whose servers sync every write (`sync_interval: always`).
//! - Failovers: kill -9 of the mailbox's shard leader's broker, until a SEND through another
//!   pod is answered again; then kill -9 of the nats-server leading the R3 stream, until
//!   JetStream acknowledges a publish again, with mq9's time for the same kill beside it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;

use super::procs::{self, BrokerProcess};
use super::report::{Failover, Figure, Report};
use super::throughput::{self, Endpoint, Throughput};
use super::{jetstream, mq9, Settings};
use crate::natsd::{self, NatsServer};
use crate::replication::shard::shard_of;

/// The cluster's name, shards and stream.
const CLUSTER: &str = "bench";
const SHARDS: u32 = 16;
const STREAM: &str = "BENCH_R3";
const SUBJECT: &str = "bench.r3";
/// How long a failover may take before the figure gives up.
const FAILOVER_LIMIT: Duration = Duration::from_secs(60);

/// Measures the replicated figures `settings` wants into `report`.
pub async fn measure(
    settings: &Settings,
    binary: &Path,
    dir: &Path,
    payload: &Bytes,
    report: &mut Report,
) -> anyhow::Result<()> {
    for sync_always in [false, true] {
        let (send, publish) = match sync_always {
            false => ("replicated.send", "jetstream.r3.publish_ack"),
            true => ("replicated.send_sync", "jetstream.r3.publish_ack_sync"),
        };
        let failovers = !sync_always && settings.wants("replicated.failover");
        if !(settings.wants(send) || settings.wants(publish) || failovers) {
            continue;
        }
        let base = dir.join(send);
        let mut cluster = Cluster::start(binary, &base, sync_always).await?;
        let client = procs::connect(&cluster.urls[0]).await?;
        let mail_id = retry(|| mq9::create_mailbox(&client)).await?;
        let js = async_nats::jetstream::new(client.clone());
        let stream = jetstream::fresh_stream(&js, STREAM, SUBJECT, 3).await?;
        let mut figures = Vec::new();
        if settings.wants(send) {
            let subject = mq9::send_subject(&mail_id);
            figures.push(Throughput {
                name: send,
                endpoint: Endpoint::Mailbox(client.clone(), subject),
            });
        }
        if settings.wants(publish) {
            figures.push(Throughput {
                name: publish,
                endpoint: Endpoint::Stream(js.clone(), Box::new(stream), SUBJECT.into()),
            });
        }
        let medians =
            throughput::measure_all(&mut figures, settings.runs, settings.window, payload).await?;
        for (name, in_flight, sample) in medians {
            report
                .figures
                .push(Figure::new(name, in_flight, sample, None));
        }
        if failovers {
            let measured = cluster.failovers(&mail_id, payload).await?;
            report.failovers.extend(measured);
        }
    }
    Ok(())
}

/// Three clustered nats-servers and a replicated broker on each.
struct Cluster {
    /// `None` once killed.
    servers: Vec<Option<NatsServer>>,
    urls: Vec<String>,
    brokers: Vec<Option<BrokerProcess>>,
}

impl Cluster {
    async fn start(binary: &Path, base: &Path, sync_always: bool) -> anyhow::Result<Cluster> {
        let nats = base.join("nats");
        let servers = natsd::start_cluster(&nats, 3, None, Some(binary), sync_always).await?;
        let mut brokers = Vec::new();
        for (i, server) in servers.iter().enumerate() {
            let extra = [
                "--replication",
                "jetstream",
                "--cluster",
                CLUSTER,
                "--peers",
                "3",
            ]
            .map(str::to_owned);
            let mut extra = extra.to_vec();
            extra.extend([
                "--shards".into(),
                SHARDS.to_string(),
                "--node".into(),
                format!("n{i}"),
            ]);
            let data_dir = base.join(format!("broker-{i}"));
            let broker = BrokerProcess::start_with(server.url(), &data_dir, true, &extra).await?;
            brokers.push(Some(broker));
        }
        Ok(Cluster {
            urls: servers.iter().map(|s| s.url().to_owned()).collect(),
            servers: servers.into_iter().map(Some).collect(),
            brokers,
        })
    }

    /// The broker failover, then JetStream's and mq9's for the kill of a nats-server.
    async fn failovers(&mut self, mail_id: &str, payload: &Bytes) -> anyhow::Result<Vec<Failover>> {
        let leader = self.shard_leader(&self.urls[0], mail_id).await?;
        let survivor = (leader + 1) % 3;
        let client = procs::connect(&self.urls[survivor]).await?;
        let subject = mq9::send_subject(mail_id);
        let sending = || mq9::send(&client, subject.clone(), payload.clone());
        let killed = Instant::now();
        self.brokers[leader]
            .take()
            .context("the leader runs")?
            .kill()?;
        retry(sending).await?;
        let broker_kill = Failover::new("replicated.broker_kill", killed.elapsed());

        // The server that leads the R3 stream goes.
        let js = async_nats::jetstream::new(client.clone());
        let mut stream = js.get_stream(STREAM).await?;
        let info = stream.info().await?;
        let stream_leader = info
            .cluster
            .as_ref()
            .and_then(|c| c.leader.as_deref())
            .and_then(|name| name.strip_prefix('n')?.parse::<usize>().ok())
            .context("the R3 stream has a leader")?;
        let observer = (0..3)
            .find(|i| *i != stream_leader && self.servers[*i].is_some())
            .context("a server stays")?;
        let client = procs::connect(&self.urls[observer]).await?;
        let js = async_nats::jetstream::new(client.clone());
        let server = self.servers[stream_leader]
            .take()
            .context("the leader runs")?;
        let killed = Instant::now();
        // SAFETY: kill(2) with the pid of a child we own; dropping the NatsServer reaps it.
        unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGKILL) };
        drop(server);
        let publishing = || jetstream::publish_ack(&js, SUBJECT.into(), payload.clone());
        let subject = mq9::send_subject(mail_id);
        let sending = || mq9::send(&client, subject.clone(), payload.clone());
        let (published, sent) = tokio::join!(
            async {
                retry(publishing).await?;
                anyhow::Ok(killed.elapsed())
            },
            async {
                retry(sending).await?;
                anyhow::Ok(killed.elapsed())
            }
        );
        Ok(vec![
            broker_kill,
            Failover::new("jetstream.r3.server_kill", published?),
            Failover::new("replicated.server_kill", sent?),
        ])
    }

    /// The pod whose broker leads `mail_id`'s shard (the lease bucket's holder, `n<i>`).
    async fn shard_leader(&self, url: &str, mail_id: &str) -> anyhow::Result<usize> {
        let js = async_nats::jetstream::new(procs::connect(url).await?);
        let bucket = js.get_key_value(format!("MQ9_LEASES_{CLUSTER}")).await?;
        let key = format!("shard.{}", shard_of(mail_id, SHARDS));
        let holder = bucket.get(key).await?.context("the shard has a leader")?;
        let holder = String::from_utf8_lossy(&holder);
        holder
            .strip_prefix('n')
            .and_then(|i| i.parse().ok())
            .with_context(|| format!("an unexpected lease holder {holder:?}"))
    }
}

/// Repeats `attempt` (each bounded to 200 ms) until it succeeds, within [`FAILOVER_LIMIT`].
async fn retry<T, F, Fut>(attempt: F) -> anyhow::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let started = Instant::now();
    loop {
        if let Ok(Ok(done)) = tokio::time::timeout(Duration::from_millis(200), attempt()).await {
            return Ok(done);
        }
        if started.elapsed() > FAILOVER_LIMIT {
            bail!("no success within {FAILOVER_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
