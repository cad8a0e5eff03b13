//! The StatefulSet of a Broker: each pod runs nats-server and `mq9 broker` side by side, the
//! broker a NATS client of its own pod's server over `127.0.0.1`, its mailboxes in RocksDB on
//! the pod's volume.
//!
//! Why a StatefulSet: each pod keeps its volume (`data-<b>-<i>`) and its DNS name
//! (`<b>-<i>.<b>-nats`) across restarts, which the cluster routes and the mailboxes rely on.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, EmptyDirVolumeSource, KeyToPath, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, SeccompProfile,
    SecretVolumeSource, Volume, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::ResourceExt;

use super::containers::{broker_container, nats_container, Images};
use super::layout::Layout;
use super::{broker_labels, config_map_name, headless_service_name, metadata, statefulset_name};
use crate::crd::Broker;
use crate::operator::names::CONFIG_CHECKSUM_ANNOTATION;

/// The key of the auth Secret projected into the broker container: its NATS credentials. Only
/// this key is mounted, so the signing keys in the same Secret never reach a pod.
pub const BROKER_CREDS_KEY: &str = "broker.creds";

/// The key of the routes Secret (`<b>-routes`) holding the cluster route password.
pub const ROUTE_PASSWORD_KEY: &str = "password";

/// The unprivileged user (and group) of both containers; `fsGroup` makes the volumes theirs.
const USER: i64 = 1000;
/// Lame duck (10s grace + 30s, see [`nats_server_config`](super::nats_server_config)) plus room
/// for the broker to finish its last batch.
const TERMINATION_GRACE_SECONDS: i64 = 60;

/// The StatefulSet `<b>` of `broker`.
///
/// - `layout`: where the mailboxes live ([`Layout`]: decided when the StatefulSet is made).
/// - `images`: the containers' images where the spec names none.
/// - `config_checksum` goes on the pod template ([`CONFIG_CHECKSUM_ANNOTATION`]).
/// - `auth_secret`: with JWT auth, the Secret whose [`BROKER_CREDS_KEY`] the broker connects
///   with (`--nats-creds`, mounted read-only at `/etc/mq9/auth`); `None` without auth.
/// - Pods start in parallel (`podManagementPolicy: Parallel`): a NATS cluster needs its peers
///   up to form, and ordered start-up would only slow that down.
/// - Updates roll one pod at a time (`RollingUpdate`, no `maxUnavailable`: the StatefulSet
///   controller replaces a pod only once every other pod is Running and Ready, whatever the
///   pod management policy). With replicated brokers that keeps every shard's quorum: a log
///   has 3 copies on 3 pods and needs 2, only one pod is ever down for the update, and a pod
///   counts as ready only once its broker's `/readyz` says its shard logs are current, so the
///   next pod is not taken while the last one still catches up. The PodDisruptionBudget
///   (`maxUnavailable: 1`) holds evictions to the same rule.
/// - Volumes are retained, both when the Broker (hence the StatefulSet) is deleted and when it
///   is scaled down: the volumes hold the mailboxes, and losing them must be a deliberate
///   `kubectl delete pvc`, never a side effect. Re-creating the Broker reattaches them.
pub fn statefulset(
    broker: &Broker,
    layout: Layout,
    images: &Images,
    config_checksum: &str,
    auth_secret: Option<&str>,
) -> StatefulSet {
    let labels = broker_labels(&broker.name_any());
    let mut volumes = vec![
        Volume {
            name: "config".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map_name(broker),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "run".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    if let Some(secret) = auth_secret {
        volumes.push(Volume {
            name: "auth".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.to_owned()),
                items: Some(vec![KeyToPath {
                    key: BROKER_CREDS_KEY.to_owned(),
                    path: BROKER_CREDS_KEY.to_owned(),
                    mode: None,
                }]),
                // Group-readable: the files belong to root and to `fsGroup`.
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    StatefulSet {
        metadata: metadata(broker, statefulset_name(broker)),
        spec: Some(StatefulSetSpec {
            replicas: Some(broker.spec.replicas),
            service_name: Some(headless_service_name(broker)),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            pod_management_policy: Some("Parallel".to_owned()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: None,
            }),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".to_owned()),
                    when_scaled: Some("Retain".to_owned()),
                },
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_CHECKSUM_ANNOTATION.to_owned(),
                        config_checksum.to_owned(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![
                        nats_container(broker, layout, images, auth_secret.is_some()),
                        broker_container(broker, layout, images, auth_secret.is_some()),
                    ],
                    volumes: Some(volumes),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(USER),
                        run_as_group: Some(USER),
                        fs_group: Some(USER),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            localhost_profile: None,
                        }),
                        ..PodSecurityContext::default()
                    }),
                    termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
                    // Neither container talks to the Kubernetes API or needs Service env vars.
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".to_owned()),
                    labels: Some(labels),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                    storage_class_name: broker.spec.storage.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_owned(),
                            Quantity(broker.spec.storage.size.clone()),
                        )])),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                status: None,
            }]),
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
#[path = "statefulset_tests.rs"]
pub(crate) mod tests;
