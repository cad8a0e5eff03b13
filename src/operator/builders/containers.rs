//! The two containers of a Broker's pods: nats-server and `mq9 broker`, side by side, the
//! broker a NATS client of its own pod's server over `127.0.0.1`.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, ExecAction, HTTPGetAction,
    Lifecycle, LifecycleHandler, ObjectFieldSelector, Probe, SecretKeySelector, SecurityContext,
    TCPSocketAction, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::layout::Layout;
use super::nats_config::{route_urls, CONFIG_KEY, ROUTES_ENV, ROUTE_PASSWORD_ENV};
use super::{routes_secret_name, BROKER_HTTP_PORT, CLIENT_PORT, CLUSTER_PORT};
use super::{BROKER_CREDS_KEY, ROUTE_PASSWORD_KEY};
use crate::crd::{duration, Broker};
use crate::operator::names::{
    AUTH_DIR, CONFIG_DIR, DATA_DIR, PID_FILE, REPLICATED_DATA_DIR, RUN_DIR,
};

/// The broker container's name (the nats container is `nats`).
pub(super) const BROKER_CONTAINER: &str = "broker";

/// The images of a Broker's containers when its spec names none: the operator's, not defaults
/// frozen into the CRD, so that upgrading the operator upgrades every Broker that does not pin
/// an image (on its next roll). `mq9 operator --broker-image` / `--nats-image` override them,
/// e.g. for a registry mirror; the chart sets `--broker-image` from its own image values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    /// The mq9 image.
    pub broker: String,
    /// The nats-server image.
    pub nats: String,
}

/// The mq9 image of this very build: `ghcr.io/mq9/mq9:<Cargo version>`.
pub fn default_broker_image() -> String {
    format!("ghcr.io/mq9/mq9:{}", env!("CARGO_PKG_VERSION"))
}

/// The nats-server image mq9 is tested with (the official image's Alpine variant; `nats:2.15.1`
/// is the scratch one).
pub const DEFAULT_NATS_IMAGE: &str = "nats:2.15.1-alpine";

impl Default for Images {
    fn default() -> Images {
        Images {
            broker: default_broker_image(),
            nats: DEFAULT_NATS_IMAGE.to_owned(),
        }
    }
}

/// The nats container's resources without `spec.natsResources`: a request, so the scheduler
/// accounts for it and a ResourceQuota that requires requests admits the pod, and a memory limit
/// well above what a nats-server without JetStream uses, so a leak cannot take the node down.
fn default_nats_resources() -> ResourceRequirements {
    let quantities = |pairs: &[(&str, &str)]| {
        let pairs = pairs.iter();
        Some(
            pairs
                .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                .collect(),
        )
    };
    ResourceRequirements {
        requests: quantities(&[("cpu", "50m"), ("memory", "64Mi")]),
        limits: quantities(&[("memory", "512Mi")]),
        ..ResourceRequirements::default()
    }
}

/// nats-server, configured by the mounted ConfigMap. Its preStop hook puts it in lame-duck
/// mode; the SIGTERM that follows is ignored while lame duck runs its course. It mounts the
/// data volume with JWT auth, for its account resolver (`names::RESOLVER_DIR`), and with
/// replicated brokers, for JetStream's store (`names::JETSTREAM_DIR`).
///
/// Probes: the monitoring port (and its `/healthz`) is bound to the pod's loopback, which the
/// kubelet cannot reach, so both probes open a TCP connection to the client port. That is what
/// `/healthz` reports without JetStream: the server accepts clients. Readiness fails as soon as
/// lame duck closes the client listener (no new clients are sent to a stopping pod); liveness
/// tolerates a minute (6 × 10s), longer than lame duck's 40s, so it restarts only a server
/// that stopped accepting connections for good.
///
/// With more than one replica, the route password comes from the Secret `<b>-routes` into
/// `ROUTE_PASSWORD`, and `ROUTES` holds the route URLs that reference it (see
/// [`route_urls`]).
pub(super) fn nats_container(
    broker: &Broker,
    layout: Layout,
    images: &Images,
    auth: bool,
) -> Container {
    let image = broker.spec.nats_image.as_deref().unwrap_or(&images.nats);
    let base = container("nats", image);
    let mut env = base.env.clone().unwrap_or_default();
    if broker.spec.replicas > 1 {
        env.push(EnvVar {
            name: ROUTE_PASSWORD_ENV.to_owned(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: routes_secret_name(broker),
                    key: ROUTE_PASSWORD_KEY.to_owned(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            value: None,
        });
        // Kubernetes expands `$(ROUTE_PASSWORD)` here, since it is defined above.
        env.push(EnvVar {
            name: ROUTES_ENV.to_owned(),
            value: Some(route_urls(broker)),
            value_from: None,
        });
    }
    let mut mounts = vec![
        mount("config", CONFIG_DIR, true),
        mount("run", RUN_DIR, false),
    ];
    if auth || layout.is_replicated() {
        mounts.push(mount("data", DATA_DIR, false));
    }
    Container {
        args: Some(strings(&["-c", &format!("{CONFIG_DIR}/{CONFIG_KEY}")])),
        ports: Some(vec![
            port("client", CLIENT_PORT),
            port("cluster", CLUSTER_PORT),
        ]),
        env: Some(env),
        readiness_probe: Some(tcp_probe(CLIENT_PORT, 3)),
        liveness_probe: Some(tcp_probe(CLIENT_PORT, 6)),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(strings(&[
                        "nats-server",
                        "--signal",
                        &format!("ldm={PID_FILE}"),
                    ])),
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        resources: Some(
            broker
                .spec
                .nats_resources
                .clone()
                .unwrap_or_else(default_nats_resources),
        ),
        volume_mounts: Some(mounts),
        ..base
    }
}

/// `mq9 broker`, connected to the pod's own nats-server, configured by flags from the spec.
///
/// A replicated broker keeps its stores in [`REPLICATED_DATA_DIR`], a directory of the volume
/// that nothing else writes: it refuses a directory with anything it did not put there, and the
/// volume also holds nats-server's (and, on ext4, `lost+found`).
pub(super) fn broker_container(
    broker: &Broker,
    layout: Layout,
    images: &Images,
    auth: bool,
) -> Container {
    let spec = &broker.spec;
    let limits = &spec.limits;
    let data_dir = match layout {
        Layout::Replicated { .. } => REPLICATED_DATA_DIR,
        Layout::Single | Layout::ActivePod => DATA_DIR,
    };
    let settings = [
        ("--nats-url", format!("nats://127.0.0.1:{CLIENT_PORT}")),
        ("--data-dir", data_dir.to_owned()),
        ("--http-addr", format!("0.0.0.0:{BROKER_HTTP_PORT}")),
        (
            "--default-mailbox-ttl",
            duration_seconds(&spec.default_mailbox_ttl).to_string(),
        ),
        (
            "--dedup-window",
            duration_seconds(&spec.dedup_window).to_string(),
        ),
        ("--max-mailboxes", limits.max_mailboxes.to_string()),
        (
            "--max-messages-per-mailbox",
            limits.max_messages_per_mailbox.to_string(),
        ),
        (
            "--max-bytes-per-mailbox",
            limits.max_bytes_per_mailbox.to_string(),
        ),
        ("--max-agents", limits.max_agents.to_string()),
        (
            "--max-agents-per-identity",
            limits.max_agents_per_identity.to_string(),
        ),
        ("--max-card-bytes", limits.max_card_bytes.to_string()),
        (
            "--max-delayed-per-mailbox",
            limits.max_delayed_per_mailbox.to_string(),
        ),
        ("--max-delay", limits.max_delay.to_string()),
        (
            "--max-groups-per-mailbox",
            limits.max_groups_per_mailbox.to_string(),
        ),
        (
            "--max-waiters-per-mailbox",
            limits.max_waiters_per_mailbox.to_string(),
        ),
        ("--max-waiters", limits.max_waiters.to_string()),
        ("--max-scan", limits.max_scan.to_string()),
        ("--log-format", "json".to_owned()),
    ];
    let mut args = vec!["broker".to_owned()];
    for (flag, value) in settings {
        args.extend([flag.to_owned(), value]);
    }
    args.extend(layout.broker_args(broker));
    let mut mounts = vec![mount("data", DATA_DIR, false)];
    if auth {
        // Agents call from their tenant accounts: the caller's identity is in the
        // `Nats-Request-Info` header nats-server writes on the service import.
        args.extend(strings(&[
            "--nats-creds",
            &format!("{AUTH_DIR}/{BROKER_CREDS_KEY}"),
            "--trust-request-info",
        ]));
        mounts.push(mount("auth", AUTH_DIR, true));
    }
    Container {
        command: Some(strings(&["mq9"])),
        args: Some(args),
        ports: Some(vec![port("metrics", BROKER_HTTP_PORT)]),
        readiness_probe: Some(http_probe("/readyz", BROKER_HTTP_PORT, 3)),
        liveness_probe: Some(http_probe("/healthz", BROKER_HTTP_PORT, 6)),
        resources: spec.resources.clone(),
        volume_mounts: Some(mounts),
        ..container(
            BROKER_CONTAINER,
            spec.image.as_deref().unwrap_or(&images.broker),
        )
    }
}

/// A duration of the spec (`defaultMailboxTtl`, `dedupWindow`) in seconds, `0` for `0` (never
/// expire, no window). The schema admits only well-formed durations, so the one error left is a
/// sum beyond `u64` seconds: that is clamped, still a finite duration as asked.
fn duration_seconds(duration: &str) -> u64 {
    duration::parse(duration).map_or(u64::MAX, |d| d.map_or(0, |d| d.as_secs()))
}

/// What both containers share: name, image, `POD_NAME` and a locked-down security context
/// (no privilege escalation, no capabilities, read-only root filesystem: every write goes to a
/// volume).
fn container(name: &str, image: &str) -> Container {
    Container {
        name: name.to_owned(),
        image: Some(image.to_owned()),
        env: Some(vec![EnvVar {
            name: "POD_NAME".to_owned(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".to_owned(),
                    api_version: None,
                }),
                ..EnvVarSource::default()
            }),
            value: None,
        }]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(strings(&["ALL"])),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

/// An HTTP GET probe (see [`probe`]).
fn http_probe(path: &str, port: u16, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(i32::from(port)),
            ..HTTPGetAction::default()
        }),
        ..probe(failure_threshold)
    }
}

/// A TCP connect probe (see [`probe`]).
fn tcp_probe(port: u16, failure_threshold: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(i32::from(port)),
            host: None,
        }),
        ..probe(failure_threshold)
    }
}

/// A probe every 10s; `failure_threshold` failures in a row count. Readiness uses 3 (out of
/// the Service within 30s), liveness 6 (a restart only after a minute of silence).
fn probe(failure_threshold: i32) -> Probe {
    Probe {
        period_seconds: Some(10),
        timeout_seconds: Some(3),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

/// A named TCP container port. The protocol is explicit: it is part of the list's merge key,
/// which server-side apply wants present.
fn port(name: &str, number: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: i32::from(number),
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}
