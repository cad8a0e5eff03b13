//! The StatefulSet checked against what reads it: the broker's own flag parser, the Services
//! that route to its ports, nats-server's configuration, the volumes it mounts.

use super::*;
use crate::config::{BrokerConfig, ReplicationMode};
use crate::operator::builders::tests::{assert_applyable, broker};
use crate::operator::builders::{client_service, headless_service, nats_server_config, route_urls};
use crate::operator::names::{JETSTREAM_DIR, RESOLVER_DIR};
use k8s_openapi::api::core::v1::{Container, EnvVar, Probe};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

/// The StatefulSet of a new Broker of `spec` (its layout: [`Layout::for_new`]).
pub(crate) fn new_sts(spec: serde_json::Value, auth_secret: Option<&str>) -> StatefulSet {
    let b = broker(spec);
    statefulset(
        &b,
        Layout::for_new(&b),
        &Images::default(),
        "sum",
        auth_secret,
    )
}

fn pod_spec(sts: &StatefulSet) -> &PodSpec {
    sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn container<'a>(sts: &'a StatefulSet, name: &str) -> &'a Container {
    pod_spec(sts)
        .containers
        .iter()
        .find(|c| c.name == name)
        .unwrap()
}

/// The broker container's arguments, parsed by `mq9 broker`'s own clap definition.
fn broker_flags(sts: &StatefulSet) -> BrokerConfig {
    #[derive(clap::Parser)]
    struct BrokerCli {
        #[command(flatten)]
        config: BrokerConfig,
        /// The binary's global flag (`main.rs`).
        #[arg(long)]
        log_format: String,
    }
    let args = container(sts, "broker").args.clone().unwrap();
    assert_eq!(args[0], "broker");
    let parsed = <BrokerCli as clap::Parser>::try_parse_from(
        std::iter::once("mq9-broker").chain(args[1..].iter().map(String::as_str)),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    parsed.config
}

/// Where `container` mounts `volume`.
fn mount_path(container: &Container, volume: &str) -> std::path::PathBuf {
    let mounts = container.volume_mounts.iter().flatten();
    let mount = mounts.into_iter().find(|m| m.name == volume).unwrap();
    mount.mount_path.clone().into()
}

#[test]
fn pods_run_nats_and_the_broker_on_a_retained_volume() {
    let b = broker(
        json!({"replicas": 3, "image": "mq9:1", "natsImage": "nats:2.15",
        "storage": {"size": "5Gi", "storageClassName": "fast"}}),
    );
    let sts = statefulset(&b, Layout::for_new(&b), &Images::default(), "sum1", None);
    assert_applyable(&sts, "StatefulSet", "b1");
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("b1-nats"));
    assert_eq!(
        spec.selector.match_labels.as_ref(),
        Some(&broker_labels("b1"))
    );
    let retention = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .unwrap();
    assert_eq!(
        (
            retention.when_deleted.as_deref(),
            retention.when_scaled.as_deref()
        ),
        (Some("Retain"), Some("Retain"))
    );
    let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
    assert_eq!(claim.metadata.name.as_deref(), Some("data"));
    let claim_spec = claim.spec.as_ref().unwrap();
    assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(
        claim_spec
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()["storage"],
        Quantity("5Gi".into())
    );
    assert_eq!(container(&sts, "nats").image.as_deref(), Some("nats:2.15"));
    assert_eq!(container(&sts, "broker").image.as_deref(), Some("mq9:1"));
}

#[test]
fn without_images_the_operators_own_and_nats_has_resources() {
    let sts = new_sts(json!({}), None);
    let version = env!("CARGO_PKG_VERSION");
    let broker_image = format!("ghcr.io/mq9/mq9:{version}");
    assert_eq!(container(&sts, "broker").image, Some(broker_image));
    assert_eq!(
        container(&sts, "nats").image.as_deref(),
        Some("nats:2.15.1-alpine")
    );
    // A ResourceQuota on requests and limits admits only containers that state them.
    let resources = container(&sts, "nats").resources.clone().unwrap();
    let requests = resources.requests.unwrap();
    assert!(requests.contains_key("cpu") && requests.contains_key("memory"));
    assert!(resources.limits.unwrap().contains_key("memory"));
    let mine = json!({"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}});
    let sts = new_sts(json!({"natsResources": mine}), None);
    let resources = serde_json::to_value(&container(&sts, "nats").resources).unwrap();
    assert_eq!(resources, mine, "spec.natsResources as given");
}

#[test]
fn config_checksum_rolls_the_pods() {
    let b = broker(json!({}));
    let annotations = |sum: &str| {
        let sts = statefulset(&b, Layout::for_new(&b), &Images::default(), sum, None);
        sts.spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap()[CONFIG_CHECKSUM_ANNOTATION]
            .clone()
    };
    assert_eq!(
        annotations("a"),
        annotations("a"),
        "the same configuration rolls nothing"
    );
    assert_ne!(annotations("a"), annotations("b"));
}

#[test]
fn probes_and_lame_duck() {
    let sts = new_sts(json!({}), None);
    let nats = container(&sts, "nats");
    let probe_path = |p: &Option<Probe>| {
        p.as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .clone()
            .unwrap()
    };
    let tcp_port = |p: &Option<Probe>| {
        p.as_ref()
            .unwrap()
            .tcp_socket
            .as_ref()
            .unwrap()
            .port
            .clone()
    };
    // Every port a Service routes to is a port of the nats container, and the probes check
    // the one clients use; monitoring is no container port.
    let container_port = |name: &str| {
        let ports = nats.ports.iter().flatten();
        let port = ports.into_iter().find(|p| p.name.as_deref() == Some(name));
        port.map(|p| p.container_port)
    };
    let b = broker(json!({}));
    let mut client_port = None;
    for service in [client_service(&b), headless_service(&b)] {
        for port in service.spec.unwrap().ports.unwrap() {
            let Some(IntOrString::String(target)) = &port.target_port else {
                panic!("{port:?} targets a named port");
            };
            assert_eq!(container_port(target), Some(port.port), "{target}");
            client_port.get_or_insert(port.port);
        }
    }
    let client_port = IntOrString::Int(client_port.unwrap());
    assert_eq!(tcp_port(&nats.readiness_probe), client_port);
    assert_eq!(tcp_port(&nats.liveness_probe), client_port);
    assert_eq!(
        nats.ports.as_ref().unwrap().len(),
        2,
        "monitoring is not a container port"
    );
    let pre_stop = nats.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap();
    let command = pre_stop
        .exec
        .as_ref()
        .unwrap()
        .command
        .as_ref()
        .unwrap()
        .join(" ");
    let config = nats_server_config(&b, Layout::for_new(&b), None);
    let pid_file = command.split("ldm=").nth(1).expect("lame duck by signal");
    assert!(
        config.contains(&format!("pid_file: \"{pid_file}\"")),
        "the preStop hook signals the pid nats-server writes: {command}"
    );
    let broker_container = container(&sts, "broker");
    assert_eq!(probe_path(&broker_container.readiness_probe), "/readyz");
    assert_eq!(probe_path(&broker_container.liveness_probe), "/healthz");
    assert!(
        pod_spec(&sts).termination_grace_period_seconds.unwrap() >= 40,
        "lame duck fits in the grace period"
    );
}

/// The nats container's environment variable `name`, if set.
fn env<'a>(sts: &'a StatefulSet, name: &str) -> Option<&'a EnvVar> {
    let nats = container(sts, "nats");
    nats.env.iter().flatten().find(|e| e.name == name)
}

#[test]
fn cluster_pods_get_the_route_password_from_its_secret_and_the_urls_built_on_it() {
    let sts = new_sts(json!({"replicas": 3}), None);
    let password = env(&sts, "ROUTE_PASSWORD").expect("ROUTE_PASSWORD");
    assert_eq!(password.value, None, "never the password itself");
    let reference = password
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (reference.name.as_str(), reference.key.as_str()),
        ("b1-routes", "password")
    );
    let names: Vec<&str> = container(&sts, "nats")
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["POD_NAME", "ROUTE_PASSWORD", "ROUTES"],
        "ROUTES after what it references"
    );
    let routes = env(&sts, "ROUTES").unwrap().value.as_deref().unwrap();
    assert_eq!(routes, route_urls(&broker(json!({"replicas": 3}))));
    assert!(
        env(&sts, "ROUTE_PASSWORD").is_some()
            && container(&sts, "broker")
                .env
                .iter()
                .flatten()
                .all(|e| e.name == "POD_NAME"),
        "the broker container gets no route password"
    );

    let single = new_sts(json!({"replicas": 1}), None);
    assert!(env(&single, "ROUTE_PASSWORD").is_none() && env(&single, "ROUTES").is_none());
}

#[test]
fn broker_flags_follow_the_spec() {
    let b = broker(
        json!({"defaultMailboxTtl": "1h", "dedupWindow": "90s", "limits": {"maxMailboxes": 10,
        "maxMessagesPerMailbox": 20, "maxBytesPerMailbox": 30, "maxDelayedPerMailbox": 40,
        "maxDelay": 50, "maxGroupsPerMailbox": 60, "maxWaitersPerMailbox": 70,
        "maxWaiters": 80, "maxScan": 90}}),
    );
    let sts = statefulset(&b, Layout::for_new(&b), &Images::default(), "sum", None);
    let flags = broker_flags(&sts);
    let nats_url = flags.nats.nats_url.clone();
    let nats_port = nats_url
        .strip_prefix("nats://127.0.0.1:")
        .expect("its own pod's server");
    let nats = container(&sts, "nats");
    assert!(nats
        .ports
        .iter()
        .flatten()
        .any(|p| p.container_port.to_string() == nats_port));
    let broker_container = container(&sts, "broker");
    assert_eq!(flags.data_dir, mount_path(broker_container, "data"));
    let http_port = flags.http_addr.port();
    let probe = broker_container.readiness_probe.as_ref().unwrap();
    let probe_port = &probe.http_get.as_ref().unwrap().port;
    assert_eq!(*probe_port, IntOrString::Int(i32::from(http_port)));
    assert_eq!((flags.default_mailbox_ttl, flags.dedup_window), (3600, 90));
    let l = flags.limits;
    assert_eq!(
        [
            l.max_mailboxes,
            l.max_messages_per_mailbox,
            l.max_bytes_per_mailbox
        ],
        [10, 20, 30]
    );
    assert_eq!(
        [
            l.max_delayed_per_mailbox,
            l.max_delay,
            l.max_groups_per_mailbox
        ],
        [40, 50, 60]
    );
    assert_eq!(
        [l.max_waiters_per_mailbox, l.max_waiters, l.max_scan],
        [70, 80, 90]
    );
    assert!(flags.nats.nats_creds.is_none() && !flags.security.trust_request_info);
    assert_eq!(flags.active_pod, None, "a single pod always serves");
    let nats_mounts = container(&sts, "nats").volume_mounts.as_ref().unwrap();
    assert!(!nats_mounts.iter().any(|m| m.name == "data"));
}

/// The flags the builder writes are the ones `mq9 broker` reads: parsed by the broker's own
/// clap definition, they carry the spec's limits.
#[test]
fn broker_args_parse_as_broker_flags() {
    let b = broker(json!({"limits": {"maxAgents": 7, "maxAgentsPerIdentity": 3,
        "maxCardBytes": 999, "maxBytesPerMailbox": 30}}));
    let sts = statefulset(
        &b,
        Layout::Single,
        &Images::default(),
        "sum",
        Some("b1-auth"),
    );
    let limits = broker_flags(&sts).limits;
    assert_eq!(
        (
            limits.max_agents,
            limits.max_agents_per_identity,
            limits.max_card_bytes
        ),
        (7, 3, 999)
    );
    assert_eq!(limits.max_bytes_per_mailbox, 30);
}

#[test]
fn in_the_active_pod_layout_only_pod_zero_serves_mailboxes() {
    let b = broker(json!({"replicas": 3}));
    let sts = statefulset(&b, Layout::ActivePod, &Images::default(), "sum", None);
    let pod_zero = format!("{}-0", sts.metadata.name.as_deref().unwrap());
    let flags = broker_flags(&sts);
    assert_eq!(flags.active_pod, Some(pod_zero));
    assert_eq!(flags.replication.replication, ReplicationMode::None);
    assert_eq!(
        flags.data_dir,
        mount_path(container(&sts, "broker"), "data")
    );
}

/// A new Broker of 3 replicas: every pod's broker replicated, as `mq9 broker` parses its
/// flags, its stores in a directory of its own on the volume, JetStream's beside them.
#[test]
fn every_pod_of_a_replicated_broker_serves_its_shards() {
    let sts = new_sts(json!({"replicas": 3, "shards": 32}), Some("b1-auth"));
    let flags = broker_flags(&sts);
    assert_eq!(flags.active_pod, None, "no pod stands by");
    let replication = &flags.replication;
    assert_eq!(replication.replication, ReplicationMode::Jetstream);
    assert_eq!(
        (replication.shards, replication.cluster.as_str()),
        (32, "b1")
    );
    assert_eq!(replication.node.as_deref(), Some("$(POD_NAME)"));
    assert_eq!((replication.peers, replication.log_replicas), (3, 3));
    let broker_env = container(&sts, "broker").env.iter().flatten();
    assert!(
        broker_env.into_iter().any(|e| e.name == "POD_NAME"
            && e.value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path
                == "metadata.name"),
        "$(POD_NAME) is the pod's name, from the downward API"
    );
    let volume = mount_path(container(&sts, "broker"), "data");
    assert_eq!(
        flags.data_dir,
        volume.join("broker"),
        "a directory of its own"
    );
    let nats_volume = mount_path(container(&sts, "nats"), "data");
    assert!(
        std::path::Path::new(JETSTREAM_DIR).starts_with(&nats_volume),
        "JetStream's store is on the volume"
    );
    assert!(!flags.data_dir.starts_with(JETSTREAM_DIR));
    let spec = sts.spec.as_ref().unwrap();
    let strategy = spec.update_strategy.as_ref().unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    assert!(
        strategy.rolling_update.is_none(),
        "one pod at a time (no maxUnavailable)"
    );
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    let conf = nats_server_config(
        &broker(json!({"replicas": 3})),
        Layout::Replicated { shards: 32 },
        None,
    );
    assert!(
        conf.contains(&format!("store_dir: \"{JETSTREAM_DIR}\"")),
        "{conf}"
    );
}

#[test]
fn jwt_auth_mounts_only_the_broker_credentials() {
    let sts = new_sts(json!({}), Some("b1-auth"));
    let flags = broker_flags(&sts);
    assert!(flags.security.trust_request_info);
    let creds = mount_path(container(&sts, "broker"), "auth").join(BROKER_CREDS_KEY);
    assert_eq!(flags.nats.nats_creds, Some(creds), "the projected key");
    let nats_mounts = container(&sts, "nats").volume_mounts.as_ref().unwrap();
    let data = nats_mounts.iter().find(|m| m.name == "data").unwrap();
    assert!(
        RESOLVER_DIR.starts_with(&format!("{}/", data.mount_path)),
        "the account resolver's directory is on the volume"
    );
    let volume = pod_spec(&sts)
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "auth")
        .unwrap();
    let secret = volume.secret.as_ref().unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("b1-auth"));
    let keys: Vec<&str> = secret
        .items
        .as_ref()
        .unwrap()
        .iter()
        .map(|i| i.key.as_str())
        .collect();
    assert_eq!(
        keys,
        [BROKER_CREDS_KEY],
        "the signing keys never reach a pod"
    );
}

#[test]
fn pods_run_unprivileged() {
    let sts = new_sts(json!({}), None);
    let pod = pod_spec(&sts).security_context.as_ref().unwrap();
    assert_eq!(pod.run_as_non_root, Some(true));
    for c in &pod_spec(&sts).containers {
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
    }
}
