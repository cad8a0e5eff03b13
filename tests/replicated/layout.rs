//! A data directory made for another layout is refused at start.

use super::*;

/// A data directory made for another shard count, another cluster, or a single node is
/// refused at start, saying what it holds: its shards' stores would be applied from the wrong
/// logs.
#[tokio::test(flavor = "multi_thread")]
async fn a_data_directory_of_another_layout_is_refused() {
    let cluster = Cluster::start().await;
    cluster.create_mailboxes().await;
    // Started with `data_dir`: how it ended and what it said (a broker that starts instead of
    // refusing is killed after the deadline, and the test fails on its status).
    let start = |data_dir: &Path, shards: &str, name: &str| {
        let mut broker = Command::new(env!("CARGO_BIN_EXE_mq9"))
            .args([
                "broker",
                "--nats-url",
                cluster.servers[0].url(),
                "--data-dir",
            ])
            .arg(data_dir)
            .args(["--http-addr", &support::free_port().to_string()])
            .args([
                "--replication",
                "jetstream",
                "--cluster",
                name,
                "--shards",
                shards,
            ])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + support::DEADLINE;
        while broker.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = broker.kill();
        broker.wait_with_output().unwrap()
    };
    let data_dir = cluster.dir.path().join("b0");
    for (shards, name, holds) in [
        ("8", "t", "cluster \"t\" with 4 shards"),
        ("4", "other", "cluster \"t\" with 4 shards"),
    ] {
        let refused = start(&data_dir, shards, name);
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !refused.status.success(),
            "{shards} shards of {name} started: {said}"
        );
        assert!(
            said.contains(holds) && said.contains("refusing to start"),
            "{said}"
        );
    }
    let single = cluster.dir.path().join("single");
    std::fs::create_dir_all(single.join("db")).unwrap();
    let refused = start(&single, "4", "t");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("a single node's data"), "{said}");
}
