//! Brokers that come back: one with an empty data directory catches up from the logs while
//! writes go on, then serves every acknowledged message alone; a rolling restart of all three
//! loses nothing acknowledged.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_broker_catches_up_and_serves_everything() {
    let mut cluster = Cluster::start().await;
    let names = cluster.create_mailboxes().await;
    let mut acked = Acked::default();
    for round in 0..5 {
        acked.add(send_round(&cluster, &names, round).await);
    }
    // Broker n2 goes, with its data; it comes back empty while SENDs go on.
    cluster.rejoin_empty(2);
    for round in 5..15 {
        acked.add(send_round(&cluster, &names, round).await);
    }
    // n2's copy catches up with the leaders' (followers apply as the logs grow).
    cluster.caught_up(2).await;
    // The others go: n2 takes every shard over from its own, rebuilt copy.
    cluster.kill(0, Kill::Broker);
    cluster.kill(1, Kill::Broker);
    assert_served(&cluster, &acked.by_mailbox).await;
}

/// A rolling restart (SIGTERM, then started again on the same data, one broker at a time)
/// while SENDs go on: every acknowledged message is served afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_loses_no_acknowledged_message() {
    let mut cluster = Cluster::start().await;
    let names = cluster.create_mailboxes().await;
    let mut acked = Acked::default();
    for round in 0..20 {
        if round % 5 == 4 && round < 15 {
            cluster.restart(round / 5).await;
        }
        acked.add(send_round(&cluster, &names, round).await);
    }
    assert!(acked.by_mailbox.values().all(|sent| !sent.is_empty()));
    assert_served(&cluster, &acked.by_mailbox).await;
}
