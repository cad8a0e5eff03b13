//! `mq9 bench`: mq9 measured against its ceiling and against JetStream, in one run, on one
//! machine, with the ratios the performance targets are written in (issue 5, README
//! "Performance").
//!
//! Everything runs on loopback and is started here: nats-servers with JetStream (one per
//! broker, since brokers on one server would share the `mq9` queue group, plus one with
//! `sync_interval: always`), `mq9 broker` child processes, an in-process echo responder.
//! All of it lives in a temporary directory and is stopped at the end, on error, and on
//! Ctrl-C.
//!
//! The modules, in the order a reader might want them:
//! - [`load`]: closed-loop load generation, latency percentiles, median of runs;
//! - [`throughput`]: the request/reply figures (ceiling, SEND, JetStream publish);
//! - [`ceiling`], [`mq9`], [`jetstream`]: how each system is spoken to;
//! - [`scale`]: a million mailboxes — create rate, memory per mailbox, SEND across them;
//! - [`procs`]: the processes; [`report`]: table, JSON, ratios and targets.

mod ceiling;
mod jetstream;
mod load;
mod mq9;
mod procs;
mod replicated;
mod report;
mod scale;
mod throughput;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use serde_json::json;

use crate::natsd::{find_binary, NatsServer};
use load::Window;
use procs::{BrokerProcess, JetStreamSync};
use report::{Figure, Report};
use throughput::{Endpoint, Throughput};

/// Every figure, in the order they are measured and printed (`--only` selects by prefix); the
/// `replicated.` and `jetstream.r3.` ones with `--replicated` only.
const FIGURES: [&str; 15] = [
    "ceiling.nats_reqrep",
    "mq9.send",
    "mq9.send_nosync",
    "jetstream.publish_ack",
    "jetstream.publish_ack_sync",
    "mq9.fetch_ack",
    "jetstream.fetch_ack",
    "mq9.mailbox_create",
    "jetstream.stream_create",
    "mq9.scale",
    "replicated.send",
    "jetstream.r3.publish_ack",
    "replicated.send_sync",
    "jetstream.r3.publish_ack_sync",
    "replicated.failover",
];

/// Size of every message payload.
const PAYLOAD_BYTES: usize = 256;
/// Requests in flight while creating mailboxes or streams.
const CREATE_IN_FLIGHT: usize = 128;

/// `mq9 bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Short smoke version: ~1 s per point, one run, small counts (well under a minute).
    #[arg(long)]
    pub quick: bool,
    /// Seconds measured per point (default 10; 1 with --quick).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Runs per point, the median is reported (default 3; 1 with --quick).
    #[arg(long)]
    pub runs: Option<u32>,
    /// Only the figures whose names start with one of these prefixes (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "PREFIX")]
    pub only: Vec<String>,
    /// Mailboxes the scale figure creates at most (default 1000000; 2000 with --quick).
    #[arg(long)]
    pub scale_mailboxes: Option<u64>,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Measure the replicated data plane instead (replication.md): replicated SEND vs JetStream
    /// R3 on one 3-node loopback cluster, at default sync and at `sync_interval: always`, and
    /// failover times.
    #[arg(long)]
    pub replicated: bool,
    /// The nats-server executable (default: from PATH).
    #[arg(long, env = "MQ9_NATS_SERVER")]
    pub nats_server: Option<PathBuf>,
}

/// The resolved settings of a run.
struct Settings {
    window: Window,
    runs: u32,
    only: Vec<String>,
    /// Messages pre-filled for each fetch figure.
    fetch_messages: u64,
    /// Mailboxes / streams created by the creation figures.
    create_counts: Vec<u64>,
    scale_mailboxes: u64,
    scale_time_limit: Duration,
    replicated: bool,
}

impl Settings {
    fn new(args: &BenchArgs) -> anyhow::Result<Settings> {
        let seconds = args.duration.unwrap_or(if args.quick { 1.0 } else { 10.0 });
        if !(seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0) {
            bail!("--duration must be between 0 and 3600 seconds, not {seconds}");
        }
        let runs = args.runs.unwrap_or(if args.quick { 1 } else { 3 });
        if runs == 0 {
            bail!("--runs must be at least 1");
        }
        let measure = Duration::from_secs_f64(seconds);
        for prefix in &args.only {
            if !FIGURES.iter().any(|f| f.starts_with(prefix.as_str())) {
                bail!(
                    "--only {prefix:?} matches no figure; figures: {}",
                    FIGURES.join(", ")
                );
            }
        }
        let (fetch_messages, create_counts, scale_mailboxes) = if args.quick {
            (5_000, vec![100], 2_000)
        } else {
            (100_000, vec![1_000, 5_000], 1_000_000)
        };
        Ok(Settings {
            window: Window {
                warmup: (measure / 5).min(Duration::from_secs(1)),
                measure,
            },
            runs,
            only: args.only.clone(),
            fetch_messages,
            create_counts,
            scale_mailboxes: args.scale_mailboxes.unwrap_or(scale_mailboxes).max(1),
            scale_time_limit: Duration::from_secs(600),
            replicated: args.replicated,
        })
    }

    fn wants(&self, figure: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| figure.starts_with(p.as_str()))
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "payload_bytes": PAYLOAD_BYTES,
            "measure_seconds": self.window.measure.as_secs_f64(),
            "warmup_seconds": self.window.warmup.as_secs_f64(),
            "runs": self.runs,
            "only": self.only,
            "replicated": self.replicated,
            "fetch_messages": self.fetch_messages,
            "create_counts": self.create_counts,
            "create_in_flight": CREATE_IN_FLIGHT,
            "scale_mailboxes": self.scale_mailboxes,
            "scale_time_limit_seconds": self.scale_time_limit.as_secs(),
        })
    }
}

/// Runs the benchmark, prints the table, writes the JSON.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let settings = Settings::new(&args)?;
    let binary = find_binary(args.nats_server.as_deref())?;
    let dir = tempfile::Builder::new()
        .prefix("mq9-bench-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    // Dropping the measuring future (on Ctrl-C) drops, and so stops, every process it started.
    let measuring = async {
        match args.replicated {
            false => measure(&settings, &binary, dir.path()).await,
            true => {
                let mut report = Report::default();
                let payload = Bytes::from(vec![b'x'; PAYLOAD_BYTES]);
                replicated::measure(&settings, &binary, dir.path(), &payload, &mut report).await?;
                Ok(report)
            }
        }
    };
    let report = tokio::select! {
        report = measuring => report?,
        () = crate::shutdown_signal() => bail!("interrupted"),
    };
    print!("{}", report.table());
    if let Some(path) = &args.out {
        let document = report.json(report::machine(&binary), settings.json());
        report::write_json(path, &document)?;
    }
    Ok(())
}

/// The broker processes, each with the nats-server it alone serves on.
struct Mq9Side {
    durable: Option<(NatsServer, BrokerProcess)>,
    nosync: Option<(NatsServer, BrokerProcess)>,
}

async fn start_broker(
    binary: &Path,
    dir: &Path,
    durable: bool,
) -> anyhow::Result<(NatsServer, BrokerProcess)> {
    let nats = procs::start_nats(binary, &dir.join("nats"), JetStreamSync::Default).await?;
    let broker = BrokerProcess::start(nats.url(), &dir.join("broker"), durable).await?;
    Ok((nats, broker))
}

async fn measure(settings: &Settings, binary: &Path, dir: &Path) -> anyhow::Result<Report> {
    let payload = Bytes::from(vec![b'x'; PAYLOAD_BYTES]);
    let mut report = Report::default();
    let anchor = procs::start_nats(binary, &dir.join("anchor"), JetStreamSync::Default).await?;
    let anchor_client = procs::connect(anchor.url()).await?;
    let anchor_js = async_nats::jetstream::new(anchor_client.clone());
    let mut side = Mq9Side {
        durable: None,
        nosync: None,
    };
    if ["mq9.send", "mq9.fetch_ack", "mq9.mailbox_create"]
        .iter()
        .any(|f| settings.wants(f))
    {
        side.durable = Some(start_broker(binary, &dir.join("durable"), true).await?);
    }
    let durable_client = match &side.durable {
        Some((nats, _)) => Some(procs::connect(nats.url()).await?),
        None => None,
    };

    // Request/reply figures.
    let mut figures = Vec::new();
    let _echo = if settings.wants("ceiling.nats_reqrep") {
        let echo = ceiling::Echo::start(anchor.url()).await?;
        figures.push(Throughput {
            name: "ceiling.nats_reqrep",
            endpoint: Endpoint::Echo(anchor_client.clone()),
        });
        Some(echo)
    } else {
        None
    };
    if let (true, Some(client)) = (settings.wants("mq9.send"), &durable_client) {
        let mail_id = mq9::create_mailbox(client).await?;
        figures.push(Throughput {
            name: "mq9.send",
            endpoint: Endpoint::Mailbox(client.clone(), mq9::send_subject(&mail_id)),
        });
    }
    if settings.wants("mq9.send_nosync") {
        let (nats, broker) = start_broker(binary, &dir.join("nosync"), false).await?;
        let client = procs::connect(nats.url()).await?;
        let mail_id = mq9::create_mailbox(&client).await?;
        figures.push(Throughput {
            name: "mq9.send_nosync",
            endpoint: Endpoint::Mailbox(client, mq9::send_subject(&mail_id)),
        });
        side.nosync = Some((nats, broker));
    }
    if settings.wants("jetstream.publish_ack") {
        let stream = jetstream::fresh_stream(&anchor_js, "BENCH", "bench.js", 1).await?;
        figures.push(Throughput {
            name: "jetstream.publish_ack",
            endpoint: Endpoint::Stream(anchor_js.clone(), Box::new(stream), "bench.js".into()),
        });
    }
    let _sync_server = if settings.wants("jetstream.publish_ack_sync") {
        let server = procs::start_nats(binary, &dir.join("sync"), JetStreamSync::Always).await?;
        let js = async_nats::jetstream::new(procs::connect(server.url()).await?);
        let stream = jetstream::fresh_stream(&js, "BENCH", "bench.js", 1).await?;
        figures.push(Throughput {
            name: "jetstream.publish_ack_sync",
            endpoint: Endpoint::Stream(js, Box::new(stream), "bench.js".into()),
        });
        Some(server)
    } else {
        None
    };
    let medians =
        throughput::measure_all(&mut figures, settings.runs, settings.window, &payload).await?;
    for (name, in_flight, sample) in medians {
        report
            .figures
            .push(Figure::new(name, in_flight, sample, None));
    }
    drop(figures);
    if let Some((nats, broker)) = side.nosync.take() {
        broker.stop().await?;
        drop(nats);
    }

    // FETCH + ACK.
    let fetch_count = settings.fetch_messages;
    let mut mq9_fetch = Vec::new();
    let mut js_fetch = Vec::new();
    for run in 1..=settings.runs {
        if let (true, Some(client)) = (settings.wants("mq9.fetch_ack"), &durable_client) {
            tracing::info!(figure = "mq9.fetch_ack", run, "measuring");
            let mail_id = mq9::create_mailbox(client).await?;
            mq9::fill(client, &mail_id, fetch_count, payload.clone()).await?;
            mq9_fetch.push(mq9::drain(client, &mail_id, fetch_count).await?);
        }
        if settings.wants("jetstream.fetch_ack") {
            tracing::info!(figure = "jetstream.fetch_ack", run, "measuring");
            js_fetch.push(jetstream::fetch_ack(&anchor_js, fetch_count, payload.clone()).await?);
        }
    }
    report.push_medians(
        [
            ("mq9.fetch_ack", mq9_fetch),
            ("jetstream.fetch_ack", js_fetch),
        ],
        1,
        fetch_count,
    );

    // Creating mailboxes vs creating streams.
    for &count in &settings.create_counts {
        let mut mq9_create = Vec::new();
        let mut js_create = Vec::new();
        for run in 1..=settings.runs {
            if let (true, Some(client)) = (settings.wants("mq9.mailbox_create"), &durable_client) {
                tracing::info!(figure = "mq9.mailbox_create", count, run, "measuring");
                let (_, elapsed) = mq9::create_many(client, count, CREATE_IN_FLIGHT, None).await?;
                mq9_create.push(load::Sample::rate_only(count, elapsed));
            }
            if settings.wants("jetstream.stream_create") {
                tracing::info!(figure = "jetstream.stream_create", count, run, "measuring");
                let work_dir = dir.join(format!("streams-{count}-{run}"));
                js_create.push(
                    jetstream::stream_create(binary, &work_dir, count, CREATE_IN_FLIGHT).await?,
                );
                std::fs::remove_dir_all(&work_dir)?;
            }
        }
        report.push_medians(
            [
                ("mq9.mailbox_create", mq9_create),
                ("jetstream.stream_create", js_create),
            ],
            CREATE_IN_FLIGHT,
            count,
        );
    }
    if let Some((nats, broker)) = side.durable.take() {
        broker.stop().await?;
        drop(nats);
    }

    // A million mailboxes, on a broker of their own.
    if settings.wants("mq9.scale") {
        let (figures, memory) = scale::measure(
            anchor.url(),
            &dir.join("scale"),
            settings.scale_mailboxes,
            settings.scale_time_limit,
            settings.window,
            payload,
        )
        .await?;
        report.figures.extend(figures);
        report.scale = Some(memory);
    }
    Ok(report)
}
