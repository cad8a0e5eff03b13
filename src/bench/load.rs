//! Load generation: how requests are driven and how a figure is summarised.
//!
//! Every throughput figure is a *closed loop*: `in_flight` tasks each send one request, wait
//! for its reply, and send the next. The number in flight is therefore fixed, and the rate
//! is what the system answers at that concurrency — 1 in flight measures pure latency
//! (one round trip at a time), 128 measures how well the server batches. An open loop
//! (requests at a fixed rate) would measure something else: queueing under a given offer.
//!
//! A run starts with a warm-up (connections, caches, the broker's first RocksDB writes)
//! that is not counted; only replies that arrive inside the measured window count, and each
//! one's latency (request sent → reply received) is kept to report p50 and p99.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

/// What one measurement found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Operations per second.
    pub rate: f64,
    /// Median and 99th percentile latency in microseconds (`None` when not measured).
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
}

impl Sample {
    /// A rate without latencies: `count` operations in `elapsed`.
    pub fn rate_only(count: u64, elapsed: Duration) -> Sample {
        Sample {
            rate: count as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_us: None,
            p99_us: None,
        }
    }
}

/// How long a closed-loop run warms up and then measures.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub warmup: Duration,
    pub measure: Duration,
}

/// Runs `op` from `in_flight` concurrent tasks for the whole window; any failed operation
/// fails the run (a benchmark that counts errors as work reports fiction).
pub async fn closed_loop<F, Fut>(in_flight: usize, window: Window, op: F) -> anyhow::Result<Sample>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let measure_from = Instant::now() + window.warmup;
    let end = measure_from + window.measure;
    let mut tasks = JoinSet::new();
    for _ in 0..in_flight {
        let op = op.clone();
        tasks.spawn(async move {
            let mut latencies_us = Vec::new();
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                op().await?;
                let answered = Instant::now();
                if answered >= measure_from && answered <= end {
                    latencies_us.push((answered - sent).as_micros() as u32);
                }
            }
            anyhow::Ok(latencies_us)
        });
    }
    let mut latencies_us = Vec::new();
    // On the first error the JoinSet is dropped, which aborts the other tasks.
    while let Some(task) = tasks.join_next().await {
        latencies_us.extend(task??);
    }
    latencies_us.sort_unstable();
    Ok(Sample {
        rate: latencies_us.len() as f64 / window.measure.as_secs_f64(),
        p50_us: percentile(&latencies_us, 0.50),
        p99_us: percentile(&latencies_us, 0.99),
    })
}

/// Runs `op(0)`, `op(1)`, … `op(count - 1)` from `in_flight` concurrent tasks (stopping
/// early, without error, once `deadline` passes) and returns every result with the time taken.
/// For fixed amounts of work: pre-filling a mailbox, creating N mailboxes or streams.
pub async fn fixed_count<T, F, Fut>(
    in_flight: usize,
    count: u64,
    deadline: Option<Instant>,
    op: F,
) -> anyhow::Result<(Vec<T>, Duration)>
where
    T: Send + 'static,
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..in_flight {
        let (op, next) = (op.clone(), next.clone());
        tasks.spawn(async move {
            let mut results = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                results.push(op(index).await?);
            }
            anyhow::Ok(results)
        });
    }
    let mut results = Vec::new();
    while let Some(task) = tasks.join_next().await {
        results.extend(task??);
    }
    Ok((results, started.elapsed()))
}

/// The sample with the median rate: with three runs, one slow outlier (a compaction, a
/// neighbour's burst on a 2-core machine) and one fast one are both discarded.
pub fn median(mut samples: Vec<Sample>) -> Option<Sample> {
    samples.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    samples.get(samples.len() / 2).copied()
}

/// Nearest-rank percentile of sorted microsecond latencies.
fn percentile(sorted_us: &[u32], p: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let rank = ((p * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    Some(f64::from(sorted_us[rank - 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&values, 0.50), Some(50.0));
        assert_eq!(percentile(&values, 0.99), Some(99.0));
        assert_eq!(percentile(&[7], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn the_median_sample_is_the_middle_rate() {
        let sample = |rate| Sample {
            rate,
            p50_us: None,
            p99_us: None,
        };
        let picked = median(vec![sample(3.0), sample(1.0), sample(2.0)]);
        assert_eq!(picked.map(|s| s.rate), Some(2.0));
        assert_eq!(median(Vec::new()), None);
    }
}
