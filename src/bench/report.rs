//! What a benchmark run reports: the figures, the ratios the targets are stated in, and the
//! machine they were measured on — as a table for people and as JSON for tools.
//!
//! Absolute rates mean little on a small, shared machine (fsync time alone swings by 40×
//! with the neighbours' load); ratios between systems measured in the same run, on the same
//! machine, minutes apart, are what the targets are written in.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use serde_json::{json, Value};

use super::load::Sample;

/// One measured point.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: String,
    pub in_flight: usize,
    /// Operations (or messages) per second.
    pub rate: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// How many objects the figure creates (creation and scale figures only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

impl Figure {
    pub fn new(name: &str, in_flight: usize, sample: Sample, count: Option<u64>) -> Figure {
        Figure {
            name: name.to_owned(),
            in_flight,
            rate: sample.rate,
            p50_us: sample.p50_us,
            p99_us: sample.p99_us,
            count,
        }
    }
}

/// The memory side of the scale figure.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ScaleMemory {
    pub mailboxes: u64,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
}

/// How long something was unavailable after a kill (`mq9 bench --replicated`).
#[derive(Debug, Clone, Serialize)]
pub struct Failover {
    pub name: &'static str,
    pub seconds: f64,
}

impl Failover {
    pub fn new(name: &'static str, took: std::time::Duration) -> Failover {
        Failover {
            name,
            seconds: took.as_secs_f64(),
        }
    }
}

/// Everything measured in one run.
#[derive(Debug, Default)]
pub struct Report {
    pub figures: Vec<Figure>,
    pub scale: Option<ScaleMemory>,
    pub failovers: Vec<Failover>,
}

/// Which way a target points.
#[derive(Debug, Clone, Copy)]
enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

/// A target of issue 5 and how its value is computed from the figures.
struct Target {
    key: &'static str,
    bound: Bound,
    value: fn(&Report) -> Option<f64>,
}

const TARGETS: [Target; 11] = [
    Target {
        key: "send_nosync_vs_ceiling_128",
        bound: Bound::AtLeast(0.6),
        value: |r| r.rate_ratio(("mq9.send_nosync", 128), ("ceiling.nats_reqrep", 128)),
    },
    Target {
        key: "send_vs_jetstream_sync_128",
        bound: Bound::AtLeast(5.0),
        value: |r| r.rate_ratio(("mq9.send", 128), ("jetstream.publish_ack_sync", 128)),
    },
    Target {
        key: "send_vs_ceiling_128",
        bound: Bound::AtLeast(0.45),
        value: |r| r.rate_ratio(("mq9.send", 128), ("ceiling.nats_reqrep", 128)),
    },
    Target {
        key: "fetch_ack_vs_jetstream",
        bound: Bound::AtLeast(1.0),
        value: |r| r.rate_ratio(("mq9.fetch_ack", 1), ("jetstream.fetch_ack", 1)),
    },
    Target {
        key: "mailbox_create_vs_stream_create",
        bound: Bound::AtLeast(100.0),
        value: |r| {
            let mq9 = r.largest_count("mq9.mailbox_create")?;
            let js = r.largest_count("jetstream.stream_create")?;
            Some(mq9.rate / js.rate)
        },
    },
    Target {
        key: "send_nosync_p99_vs_ceiling_p99_16",
        bound: Bound::AtMost(2.0),
        value: |r| {
            let mq9 = r.figure("mq9.send_nosync", 16)?.p99_us?;
            let ceiling = r.figure("ceiling.nats_reqrep", 16)?.p99_us?;
            Some(mq9 / ceiling)
        },
    },
    Target {
        key: "create_seconds_per_million",
        bound: Bound::AtMost(60.0),
        value: |r| Some(1e6 / r.figure("mq9.scale.create", 128)?.rate),
    },
    Target {
        key: "rss_bytes_per_mailbox",
        bound: Bound::AtMost(300.0),
        value: |r| {
            let memory = r.scale?;
            let grown = memory
                .rss_after_bytes
                .saturating_sub(memory.rss_before_bytes);
            Some(grown as f64 / memory.mailboxes.max(1) as f64)
        },
    },
    Target {
        key: "replicated_send_vs_jetstream_r3_128",
        bound: Bound::AtLeast(0.8),
        value: |r| r.rate_ratio(("replicated.send", 128), ("jetstream.r3.publish_ack", 128)),
    },
    Target {
        key: "replicated_send_sync_vs_jetstream_r3_sync_128",
        bound: Bound::AtLeast(2.0),
        value: |r| {
            let sync = ("jetstream.r3.publish_ack_sync", 128);
            r.rate_ratio(("replicated.send_sync", 128), sync)
        },
    },
    Target {
        key: "replicated_broker_failover_seconds",
        bound: Bound::AtMost(5.0),
        value: |r| {
            let failover = r
                .failovers
                .iter()
                .find(|f| f.name == "replicated.broker_kill")?;
            Some(failover.seconds)
        },
    },
];

impl Report {
    /// Adds the median run of each figure that was measured (the others have no runs).
    pub fn push_medians(
        &mut self,
        figures: [(&str, Vec<Sample>); 2],
        in_flight: usize,
        count: u64,
    ) {
        for (name, runs) in figures {
            if let Some(sample) = super::load::median(runs) {
                self.figures
                    .push(Figure::new(name, in_flight, sample, Some(count)));
            }
        }
    }

    fn figure(&self, name: &str, in_flight: usize) -> Option<&Figure> {
        self.figures
            .iter()
            .find(|f| f.name == name && f.in_flight == in_flight)
    }

    /// The figure of that name that created the most objects.
    fn largest_count(&self, name: &str) -> Option<&Figure> {
        self.figures
            .iter()
            .filter(|f| f.name == name)
            .max_by_key(|f| f.count)
    }

    fn rate_ratio(&self, (a, a_in): (&str, usize), (b, b_in): (&str, usize)) -> Option<f64> {
        Some(self.figure(a, a_in)?.rate / self.figure(b, b_in)?.rate)
    }

    /// Every target: key, value (if its figures were measured), the bound, pass.
    fn ratios(&self) -> Vec<(&'static str, Option<f64>, Bound, Option<bool>)> {
        TARGETS
            .iter()
            .map(|t| {
                let value = (t.value)(self).filter(|v| v.is_finite());
                let pass = value.map(|v| match t.bound {
                    Bound::AtLeast(min) => v >= min,
                    Bound::AtMost(max) => v <= max,
                });
                (t.key, value, t.bound, pass)
            })
            .collect()
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<28} {:>9} {:>9} {:>12} {:>10} {:>10}\n",
            "figure", "in_flight", "count", "rate/s", "p50 µs", "p99 µs"
        );
        let cell = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
        for f in &self.figures {
            out += &format!(
                "{:<28} {:>9} {:>9} {:>12.0} {:>10} {:>10}\n",
                f.name,
                f.in_flight,
                f.count.map_or("-".to_owned(), |c| c.to_string()),
                f.rate,
                cell(f.p50_us),
                cell(f.p99_us),
            );
        }
        if let Some(memory) = self.scale {
            out += &format!(
                "\nscale: {} mailboxes, broker RSS {} MiB -> {} MiB\n",
                memory.mailboxes,
                memory.rss_before_bytes >> 20,
                memory.rss_after_bytes >> 20
            );
        }
        for failover in &self.failovers {
            out += &format!("\nfailover {}: {:.2} s", failover.name, failover.seconds);
        }
        if !self.failovers.is_empty() {
            out += "\n";
        }
        out += &format!(
            "\n{:<36} {:>10} {:>10}  result\n",
            "target", "value", "bound"
        );
        for (key, value, bound, pass) in self.ratios() {
            let bound = match bound {
                Bound::AtLeast(min) => format!(">= {min}"),
                Bound::AtMost(max) => format!("<= {max}"),
            };
            let result = match pass {
                Some(true) => "pass",
                Some(false) => "MISS",
                None => "not measured",
            };
            let value = value.map_or("-".to_owned(), |v| format!("{v:.3}"));
            out += &format!("{key:<36} {value:>10} {bound:>10}  {result}\n");
        }
        out
    }

    /// The JSON document: machine, settings, figures, ratios (key → value, `null` when not
    /// measured) and targets (key → bound and pass).
    pub fn json(&self, machine: Value, settings: Value) -> Value {
        let mut ratios = serde_json::Map::new();
        let mut targets = serde_json::Map::new();
        for (key, value, bound, pass) in self.ratios() {
            ratios.insert(key.to_owned(), json!(value));
            let bound = match bound {
                Bound::AtLeast(min) => json!({"at_least": min}),
                Bound::AtMost(max) => json!({"at_most": max}),
            };
            targets.insert(key.to_owned(), json!({"bound": bound, "pass": pass}));
        }
        json!({
            "machine": machine,
            "settings": settings,
            "figures": self.figures,
            "scale": self.scale,
            "failovers": self.failovers,
            "ratios": ratios,
            "targets": targets,
        })
    }
}

/// Cores, CPU model, memory and kernel of this machine, and the nats-server version.
pub fn machine(nats_server: &Path) -> Value {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let field = |text: &str, name: &str| {
        text.lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_once(':'))
            .map(|(_, value)| value.trim().to_owned())
    };
    let memory_bytes = field(&read("/proc/meminfo"), "MemTotal")
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024);
    let nats_version = std::process::Command::new(nats_server)
        .arg("--version")
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "cpu": field(&cpuinfo, "model name"),
        "memory_bytes": memory_bytes,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "nats_server": nats_version,
        "mq9": env!("CARGO_PKG_VERSION"),
    })
}

/// Writes the JSON document to `path`.
pub fn write_json(path: &Path, document: &Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(document)?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}
