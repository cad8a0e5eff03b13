//! Leaders spread over the live brokers (replication.md, "Balance"): a broker that comes back is
//! handed shards until none leads more than `ceil(S / live)`, while SENDs go on, and no
//! acknowledged one is lost.

use super::load::Load;
use super::*;

/// Six shards: two brokers lead three each; three lead at most two each.
const SIX: u32 = 6;

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_that_comes_back_is_handed_its_share_of_the_shards() {
    let mut cluster = Cluster::start_with(&["--shards", "6"]).await;
    cluster.leaders_of(SIX).await;
    let names = mailboxes_of(SIX);
    for name in &names {
        let body = json!({"name": name}).to_string();
        cluster.until_ok("$mq9.AI.MAILBOX.CREATE", &body).await;
    }
    let load = Load::start(&cluster.clients, &names, 32);

    cluster.kill(2, Kill::Broker);
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.leaders_of(SIX).await.values().any(|h| h == "n2") {
        assert!(Instant::now() < deadline, "n2's shards never taken over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.revive(2, Kill::Broker).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let holders = cluster.leaders_of(SIX).await;
        let led = |node: &str| holders.values().filter(|h| *h == node).count();
        if ["n0", "n1", "n2"].iter().all(|node| led(node) == 2) {
            break;
        }
        assert!(Instant::now() < deadline, "not balanced: {holders:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    load.stop_and_check(&cluster).await;
}
