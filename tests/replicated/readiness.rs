//! A replicated broker is ready only while its pod's nats-server answers and holds current
//! copies of the logs: what keeps a rolling update above quorum and a stalled pod out of the
//! client Service.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_whose_nats_server_stalls_is_not_ready_until_it_answers_again() {
    let cluster = Cluster::start().await;
    cluster.create_mailboxes().await;
    for pod in 0..3 {
        cluster.until_readyz(pod, |status, _| status == 200).await;
    }
    let server = cluster.servers[2].pid() as libc::pid_t;
    // SAFETY: kill(2) with the pid of a nats-server child we own.
    unsafe { libc::kill(server, libc::SIGSTOP) };
    let reason = cluster.until_readyz(2, |status, _| status == 503).await;
    assert!(reason.contains("nats-server"), "{reason}");
    for pod in 0..2 {
        let (status, reason) = support::http_get(cluster.http[pod], "/readyz").await;
        assert_eq!(status, 200, "pod {pod} stays ready: {reason}");
    }
    // SAFETY: as above.
    unsafe { libc::kill(server, libc::SIGCONT) };
    cluster.until_readyz(2, |status, _| status == 200).await;
}
