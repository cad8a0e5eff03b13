//! Waiting on a condition with a deadline: tests never sleep and hope.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Env, DEADLINE};

/// Unix seconds now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sleeps into the next wall-clock second: creates the gap that `from_time` and `since`
/// (whole seconds) need to tell two sends apart.
pub async fn sleep_into_next_second() {
    wait_past_second(now_secs()).await;
}

/// Waits until the wall clock has left Unix second `second`: what is issued from then on is
/// told apart from what was issued in it (token `iat`s, cut-offs, whole-second times).
pub async fn wait_past_second(second: u64) {
    let deadline = Instant::now() + DEADLINE;
    while now_secs() <= second {
        assert!(Instant::now() < deadline, "the clock stands still");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until nats-server has processed everything `client` sent so far, its SUBs above all,
/// so that a publish from another connection reaches them. `flush` only writes the buffer;
/// this publishes to the client itself and waits for the echo, which the server sends only
/// after handling what came before it on the connection.
pub async fn server_caught_up(client: &async_nats::Client) {
    use futures::StreamExt;
    let subject = client.new_inbox();
    let mut echo = client.subscribe(subject.clone()).await.unwrap();
    client.publish(subject, "".into()).await.unwrap();
    tokio::time::timeout(DEADLINE, echo.next())
        .await
        .expect("nats-server echoes a publish within the deadline");
}

/// Waits for a condition, polling, failing the test at the deadline.
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// How soon after the reply to what woke it a waiting FETCH must be answered. The broker answers
/// a woken FETCH in the commit right after the one that released the waking reply, so the gap
/// is scheduling alone; a FETCH answered by its deadline or a timer instead misses it by far.
pub const WOKEN_WITHIN: Duration = Duration::from_millis(100);

impl Env {
    /// Waits until the broker reports exactly `count` parked long-poll FETCHes (the gauge
    /// `mq9_waiting_fetches`, set at every commit before its replies go out). What a test sends
    /// after this reaches a FETCH known to wait, rather than one a sleep hoped was waiting.
    pub async fn wait_for_waiting_fetches(&self, count: u64) {
        let what = format!("the broker holds {count} waiting FETCHes");
        wait_until(&what, || async {
            self.metric("mq9_waiting_fetches").await == Some(count as f64)
        })
        .await;
    }

    /// A long-poll FETCH that a timer answers (a lease ending, a delayed message showing, the
    /// mailbox expiring), with how long it took; checks that the broker held it waiting, so
    /// that a FETCH which arrived after the timer cannot pass for one it woke.
    pub async fn fetch_held(&self, address: &str, body: Value) -> (Value, Duration) {
        let held = self.wait_for_waiting_fetches(1);
        let (answered, ()) = tokio::join!(self.fetch_timed(address, body), held);
        answered
    }

    /// Runs `polls` (a future whose long-poll FETCHes wait) and, once the broker holds
    /// `waiting` FETCHes, `wake`; asserts that `polls` ends within [`WOKEN_WITHIN`] of `wake`:
    /// what `wake` did answered the FETCHes, not their deadline. Returns both outputs.
    pub async fn woken_by<P: Future, W: Future>(
        &self,
        waiting: u64,
        polls: P,
        wake: W,
    ) -> (P::Output, W::Output) {
        let polls = async { (polls.await, Instant::now()) };
        let wake = async {
            self.wait_for_waiting_fetches(waiting).await;
            (wake.await, Instant::now())
        };
        let ((polled, answered), (woke, woken)) = tokio::join!(polls, wake);
        let late = answered.saturating_duration_since(woken);
        assert!(
            late <= WOKEN_WITHIN,
            "the waiting FETCHes were answered {late:?} after what should wake them"
        );
        (polled, woke)
    }
}
