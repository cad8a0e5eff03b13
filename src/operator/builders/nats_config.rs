//! nats-server's configuration file and the ConfigMap that carries it into the pods.
//!
//! The file is the same for every pod of a Broker: what differs per pod (its name) comes in
//! through the environment (`$POD_NAME`, which nats-server's config syntax resolves from the
//! environment). That keeps one ConfigMap per Broker and makes its checksum a faithful
//! "the configuration changed" signal for rolling the pods.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use sha2::{Digest, Sha256};

use super::{config_map_name, headless_service_name, metadata, namespace, CLUSTER_PORT};
use super::{CLIENT_PORT, MONITOR_PORT};
use crate::crd::Broker;

/// The key of the ConfigMap that holds `nats-server.conf` (mounted at `/etc/nats`).
pub const CONFIG_KEY: &str = "nats-server.conf";

/// Where nats-server writes its pid: the preStop hook reads it to signal lame-duck mode. A
/// writable emptyDir, since the root filesystem is read-only.
pub(super) const PID_FILE: &str = "/var/run/nats/nats.pid";

/// nats-server.conf for `broker`.
///
/// - `listen` takes clients on 4222 (the broker container is one, over `127.0.0.1`), `http`
///   serves monitoring on 8222, whose `/healthz` the probes use.
/// - No JetStream: mailboxes live in the broker's RocksDB, nats-server only routes messages.
/// - Lame duck: on the preStop signal the server stops accepting clients and, over
///   `lame_duck_duration` (after `lame_duck_grace_period`), closes its clients gradually so they
///   reconnect to the other pods instead of all at once. 10s + 30s fits within the pod's 60s
///   termination grace period.
/// - With more than one replica, a `cluster` block routes to every pod through the headless
///   Service (`<b>-<i>.<b>-nats.<ns>.svc:6222`, the pod's own route included: nats-server
///   recognises and skips itself), so the set of routes is the same on every pod.
/// - `auth_block`, the JWT operator and resolver configuration, is appended when the Broker
///   uses JWT authentication.
pub fn nats_server_config(broker: &Broker, auth_block: Option<&str>) -> String {
    let name = broker.name_any();
    let mut conf = format!(
        "# nats-server.conf of Broker {name}, written by the mq9 operator: edits are overwritten.\n\
         server_name: $POD_NAME\n\
         listen: 0.0.0.0:{CLIENT_PORT}\n\
         http: 0.0.0.0:{MONITOR_PORT}\n\
         pid_file: \"{PID_FILE}\"\n\
         lame_duck_duration: \"30s\"\n\
         lame_duck_grace_period: \"10s\"\n"
    );
    if broker.spec.replicas > 1 {
        let service = headless_service_name(broker);
        let namespace = namespace(broker);
        conf.push_str("\ncluster {\n");
        let _ = writeln!(conf, "  name: {name}");
        let _ = writeln!(conf, "  listen: 0.0.0.0:{CLUSTER_PORT}");
        conf.push_str("  routes: [\n");
        for i in 0..broker.spec.replicas {
            let _ = writeln!(
                conf,
                "    nats://{name}-{i}.{service}.{namespace}.svc:{CLUSTER_PORT}"
            );
        }
        conf.push_str("  ]\n}\n");
    }
    if let Some(auth) = auth_block {
        conf.push('\n');
        conf.push_str(auth);
        if !auth.ends_with('\n') {
            conf.push('\n');
        }
    }
    conf
}

/// SHA-256 (hex) over the ConfigMap's keys and values, in key order. It goes into the pod
/// template as an annotation: a changed configuration changes the template, so the StatefulSet
/// rolls the pods (nats-server does not notice a remounted file by itself).
pub fn config_checksum(data: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in data {
        // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        for part in [key, value] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
    }
    hasher
        .finalize()
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// The ConfigMap `<b>-config` holding `nats_conf` under [`CONFIG_KEY`].
pub fn config_map(broker: &Broker, nats_conf: String) -> ConfigMap {
    ConfigMap {
        metadata: metadata(broker, config_map_name(broker)),
        data: Some(BTreeMap::from([(CONFIG_KEY.to_owned(), nats_conf)])),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::builders::tests::{assert_applyable, broker};
    use serde_json::json;

    #[test]
    fn single_pod_config_has_no_cluster() {
        let conf = nats_server_config(&broker(json!({"replicas": 1})), None);
        for line in [
            "server_name: $POD_NAME",
            "listen: 0.0.0.0:4222",
            "http: 0.0.0.0:8222",
            "pid_file: \"/var/run/nats/nats.pid\"",
            "lame_duck_duration: \"30s\"",
            "lame_duck_grace_period: \"10s\"",
        ] {
            assert!(conf.lines().any(|l| l == line), "{line} missing in\n{conf}");
        }
        assert!(!conf.contains("cluster"));
        assert!(!conf.contains("jetstream"));
        assert!(!conf.contains("routes"));
    }

    #[test]
    fn replicas_form_a_cluster_routing_to_every_pod() {
        let conf = nats_server_config(&broker(json!({"replicas": 3})), None);
        assert!(conf.contains("cluster {\n  name: b1\n  listen: 0.0.0.0:6222\n"));
        let routes: Vec<&str> = conf
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("nats://"))
            .collect();
        assert_eq!(
            routes,
            [
                "nats://b1-0.b1-nats.ns.svc:6222",
                "nats://b1-1.b1-nats.ns.svc:6222",
                "nats://b1-2.b1-nats.ns.svc:6222",
            ]
        );
    }

    #[test]
    fn auth_block_is_appended() {
        let b = broker(json!({}));
        let conf = nats_server_config(&b, Some("operator: \"JWT\""));
        assert!(conf.ends_with("\noperator: \"JWT\"\n"));
        assert!(!nats_server_config(&b, None).contains("operator"));
    }

    #[test]
    fn checksum_follows_the_content() {
        let data = |conf: &str| BTreeMap::from([(CONFIG_KEY.to_owned(), conf.to_owned())]);
        let one = config_checksum(&data("listen: 0.0.0.0:4222\n"));
        assert_eq!(one.len(), 64);
        assert!(one.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(one, config_checksum(&data("listen: 0.0.0.0:4222\n")));
        assert_ne!(one, config_checksum(&data("listen: 0.0.0.0:4223\n")));
        let split = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        assert_ne!(
            config_checksum(&split("ab", "c")),
            config_checksum(&split("a", "bc"))
        );
    }

    #[test]
    fn config_map_holds_the_file() {
        let b = broker(json!({}));
        let map = config_map(&b, "listen: 0.0.0.0:4222\n".into());
        assert_applyable(&map, "ConfigMap", "b1-config");
        assert_eq!(map.data.unwrap()[CONFIG_KEY], "listen: 0.0.0.0:4222\n");
    }
}
