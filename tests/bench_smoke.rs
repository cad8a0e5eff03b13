//! `mq9 bench` still works: a short run of two figures through the real binary, its JSON
//! checked for shape. No timing assertions — rates on a shared machine prove nothing.

use std::process::Command;

use serde_json::Value;

/// Runs `mq9 bench --duration 0.3` with `args` through the real binary, which must succeed;
/// its table and its JSON report.
fn bench(args: &[&str]) -> (String, Value) {
    let dir = tempfile::TempDir::new().unwrap();
    let json_path = dir.path().join("bench.json");
    let output = Command::new(env!("CARGO_BIN_EXE_mq9"))
        .args(["bench", "--duration", "0.3"])
        .args(args)
        .arg("--out")
        .arg(&json_path)
        .output()
        .expect("mq9 bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "mq9 bench {args:?} failed: {stderr}"
    );
    let report = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    (String::from_utf8_lossy(&output.stdout).into_owned(), report)
}

/// The figures `names` at 1, 16 and 128 in flight, each measured (a rate above 0).
fn points<'a>(report: &'a Value, names: &[&str]) -> Vec<&'a Value> {
    let figures = report["figures"].as_array().expect("figures is an array");
    let mut points = Vec::new();
    for name in names {
        for in_flight in [1, 16, 128] {
            let figure = figures
                .iter()
                .find(|f| f["name"] == *name && f["in_flight"] == in_flight)
                .unwrap_or_else(|| panic!("no {name} at {in_flight} in flight: {report}"));
            assert!(figure["rate"].as_f64().unwrap() > 0.0, "{figure}");
            points.push(figure);
        }
    }
    points
}

#[test]
fn a_quick_bench_writes_figures_and_ratios() {
    let (stdout, report) = bench(&["--quick", "--only", "ceiling,mq9.send"]);
    assert!(
        stdout.contains("send_vs_ceiling_128"),
        "no targets table: {stdout}"
    );
    for figure in points(
        &report,
        &["ceiling.nats_reqrep", "mq9.send", "mq9.send_nosync"],
    ) {
        assert!(figure["p99_us"].as_f64().unwrap() > 0.0, "{figure}");
    }
    let figures = report["figures"].as_array().expect("figures is an array");
    assert!(
        figures
            .iter()
            .all(|f| !f["name"].as_str().unwrap().starts_with("jetstream")),
        "--only selected jetstream figures: {report}"
    );
    let ratios = report["ratios"].as_object().expect("ratios is an object");
    for key in [
        "send_nosync_vs_ceiling_128",
        "send_vs_jetstream_sync_128",
        "send_vs_ceiling_128",
        "fetch_ack_vs_jetstream",
        "mailbox_create_vs_stream_create",
        "send_nosync_p99_vs_ceiling_p99_16",
        "create_seconds_per_million",
        "rss_bytes_per_mailbox",
    ] {
        assert!(ratios.contains_key(key), "no ratio {key}: {report}");
    }
    assert!(ratios["send_vs_ceiling_128"].as_f64().unwrap() > 0.0);
    assert!(
        ratios["fetch_ack_vs_jetstream"].is_null(),
        "not measured, so null"
    );
    assert!(report["machine"]["cores"].as_u64().unwrap() >= 1);
}

#[test]
fn bad_settings_are_refused_with_a_clear_error() {
    for args in [
        &["bench", "--duration", "0"][..],
        &["bench", "--runs", "0"],
        &["bench", "--only", "nothing.like.this"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_mq9"))
            .args(args)
            .output()
            .expect("mq9 bench runs");
        assert!(!output.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.starts_with("mq9: "), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// `mq9 bench --replicated` still works: every replicated figure, tiny, and its failovers.
#[test]
fn a_quick_replicated_bench_writes_its_figures_failovers_and_ratios() {
    let (_, report) = bench(&["--replicated", "--quick"]);
    points(
        &report,
        &[
            "replicated.send",
            "jetstream.r3.publish_ack",
            "replicated.send_sync",
            "jetstream.r3.publish_ack_sync",
        ],
    );
    let failovers = report["failovers"]
        .as_array()
        .expect("failovers is an array");
    for name in [
        "replicated.broker_kill",
        "jetstream.r3.server_kill",
        "replicated.server_kill",
    ] {
        let failover = failovers.iter().find(|f| f["name"] == name);
        let seconds = failover.and_then(|f| f["seconds"].as_f64());
        assert!(seconds.is_some_and(|s| s > 0.0), "no {name}: {report}");
    }
    for key in [
        "replicated_send_vs_jetstream_r3_128",
        "replicated_send_sync_vs_jetstream_r3_sync_128",
        "replicated_broker_failover_seconds",
    ] {
        let value = report["ratios"][key].as_f64();
        assert!(value.is_some_and(|v| v > 0.0), "no ratio {key}: {report}");
    }
}
