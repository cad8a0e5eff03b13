//! The request/reply figures: one request → one reply, 256-byte payloads, at 1, 16 and 128
//! in flight. They answer "what does a SEND cost against the alternatives":
//!
//! - `ceiling.nats_reqrep`: the echo responder (see [`super::ceiling`]) — the upper bound;
//! - `mq9.send` (`--sync always`, the default: replied after the WAL fsync, concurrent SENDs
//!   sharing one fsync) and `mq9.send_nosync` (`--sync none`: replied after the WAL write);
//! - `jetstream.publish_ack` (server default sync) and `jetstream.publish_ack_sync`
//!   (`sync_interval: always`) — JetStream's durable publish at the two matching durabilities.
//!
//! Runs are interleaved (all figures at 1 in flight, then at 16, …, then the next run), so
//! a slow minute on a shared machine hurts every figure a little rather than one a lot.

use std::future::Future;

use async_nats::jetstream;
use async_nats::{Client, Subject};
use bytes::Bytes;

use super::load::{self, Sample, Window};
use super::{ceiling, jetstream as js, mq9};

/// The concurrencies every request/reply figure is measured at.
pub const IN_FLIGHT: [usize; 3] = [1, 16, 128];

/// What a figure sends its requests to.
pub enum Endpoint {
    /// The echo responder.
    Echo(Client),
    /// A mailbox, SEND subject prepared.
    Mailbox(Client, Subject),
    /// A JetStream stream on `subject`; purged before every measurement so each starts from
    /// the same (empty) stream. (Boxed: a stream handle carries its whole info.)
    Stream(jetstream::Context, Box<jetstream::stream::Stream>, Subject),
}

/// A named request/reply figure.
pub struct Throughput {
    pub name: &'static str,
    pub endpoint: Endpoint,
}

impl Throughput {
    /// One closed-loop measurement at `in_flight`.
    pub async fn measure(
        &mut self,
        in_flight: usize,
        window: Window,
        payload: &Bytes,
    ) -> anyhow::Result<Sample> {
        let requests = Requests {
            in_flight,
            window,
            payload: payload.clone(),
        };
        match &mut self.endpoint {
            Endpoint::Echo(client) => {
                requests
                    .run(client.clone(), |client, payload| async move {
                        ceiling::round_trip(&client, payload).await
                    })
                    .await
            }
            Endpoint::Mailbox(client, subject) => {
                let target = (client.clone(), subject.clone());
                requests
                    .run(target, |(client, subject), payload| async move {
                        mq9::send(&client, subject, payload).await
                    })
                    .await
            }
            Endpoint::Stream(context, stream, subject) => {
                stream
                    .purge()
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot purge the JetStream stream: {e}"))?;
                let target = (context.clone(), subject.clone());
                requests
                    .run(target, |(context, subject), payload| async move {
                        js::publish_ack(&context, subject, payload).await
                    })
                    .await
            }
        }
    }
}

/// One closed-loop measurement, whatever it sends to.
struct Requests {
    in_flight: usize,
    window: Window,
    payload: Bytes,
}

impl Requests {
    /// Runs `request` in a closed loop, each call with its own clone of `target` (client
    /// handles and the subject, all reference-counted) and of the payload.
    async fn run<T, F, Fut>(self, target: T, request: F) -> anyhow::Result<Sample>
    where
        T: Clone + Send + Sync + 'static,
        F: Fn(T, Bytes) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let payload = self.payload;
        load::closed_loop(self.in_flight, self.window, move || {
            request(target.clone(), payload.clone())
        })
        .await
    }
}

/// Measures every figure at every concurrency `runs` times (interleaved) and returns, per
/// figure and concurrency, the median run.
pub async fn measure_all(
    figures: &mut [Throughput],
    runs: u32,
    window: Window,
    payload: &Bytes,
) -> anyhow::Result<Vec<(&'static str, usize, Sample)>> {
    let mut samples: Vec<Vec<Vec<Sample>>> = figures
        .iter()
        .map(|_| IN_FLIGHT.iter().map(|_| Vec::new()).collect())
        .collect();
    for run in 1..=runs {
        for (point, &in_flight) in IN_FLIGHT.iter().enumerate() {
            for (index, figure) in figures.iter_mut().enumerate() {
                tracing::info!(figure = figure.name, in_flight, run, runs, "measuring");
                let sample = figure.measure(in_flight, window, payload).await?;
                samples[index][point].push(sample);
            }
        }
    }
    let mut medians = Vec::new();
    for (figure, per_point) in figures.iter().zip(samples) {
        for (&in_flight, runs) in IN_FLIGHT.iter().zip(per_point) {
            if let Some(sample) = load::median(runs) {
                medians.push((figure.name, in_flight, sample));
            }
        }
    }
    Ok(medians)
}
