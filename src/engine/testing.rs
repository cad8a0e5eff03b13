//! What the engine's unit tests share: an engine on a temporary store, jobs, and a sink that
//! records what the engine sends out.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Parser;

use super::{Command, Engine, EngineConfig, Job, Outgoing, Sink, Totals};
use crate::config::{Limits, SyncMode};
use crate::store::Store;

#[derive(Parser)]
struct Defaults {
    #[command(flatten)]
    limits: Limits,
}

/// An engine with the default limits on a store in `dir`.
pub fn engine(dir: &Path, dedup_window_secs: u64) -> Engine {
    let config = EngineConfig {
        limits: Defaults::parse_from(["defaults"]).limits,
        default_mailbox_ttl: 0,
        dedup_window_secs,
        sync: SyncMode::Always,
        max_payload: 1 << 20,
        shard: None,
    };
    Engine::open(Store::open(dir).unwrap(), config).unwrap()
}

pub fn job(command: Command, reply_to: &str) -> Job {
    Job {
        command,
        reply_to: Some(reply_to.to_owned().into()),
        kind: "test",
        received: Instant::now(),
    }
}

/// Records replies and failures.
#[derive(Default)]
pub struct RecordingSink {
    panic_on_totals_call: Option<usize>,
    totals_calls: AtomicUsize,
    replies: Mutex<Vec<(String, serde_json::Value)>>,
    pub failures: Mutex<Vec<String>>,
}

impl RecordingSink {
    /// A sink whose `call`-th `totals` call (0-based) panics, as any bug on the engine thread
    /// could.
    pub fn panicking_on_totals_call(call: usize) -> RecordingSink {
        RecordingSink {
            panic_on_totals_call: Some(call),
            ..RecordingSink::default()
        }
    }

    /// The replies so far, once there are at least `count` (fails the test after 10 s).
    pub fn replies(&self, count: usize) -> Vec<(String, serde_json::Value)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let replies = self.replies.lock().unwrap();
            if replies.len() >= count {
                return replies.clone();
            }
            drop(replies);
            assert!(Instant::now() < deadline, "fewer than {count} replies");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Sink for RecordingSink {
    fn reply(&self, outgoing: Outgoing) {
        let body = serde_json::from_slice(&outgoing.body).unwrap();
        let mut replies = self.replies.lock().unwrap();
        replies.push((outgoing.subject.to_string(), body));
    }

    fn finished(&self, _: &'static str, _: &'static str, _: Duration) {}

    fn totals(&self, _: &Totals) {
        let call = self.totals_calls.fetch_add(1, Ordering::SeqCst);
        if self.panic_on_totals_call == Some(call) {
            panic!("a bug in the engine");
        }
    }

    fn failed(&self, reason: &str) {
        self.failures.lock().unwrap().push(reason.to_owned());
    }
}
