//! Every name the operator writes onto Kubernetes objects or into pods, in one place: labels,
//! annotations, the finalizer, the field manager, Secret keys and mount paths. They are part of
//! the operator's contract with the cluster (selectors, `kubectl` queries, GitOps diffs, agents
//! reading their Secret), so a change here is a change of that contract, and it is seen here.
//!
//! The names of the objects a Broker owns (`<b>-config`, `<b>-auth`, …) are derived from the
//! Broker and live with their builders (`builders`).

/// The field manager of every server-side apply: one name, so the operator owns (and may
/// remove) exactly the fields it wrote.
pub const FIELD_MANAGER: &str = "mq9-operator";

// --- Recommended labels on every object of a Broker -------------------------------------

/// Recommended label: the application.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Recommended label: which Broker the object belongs to.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Recommended label: the part of the application.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// Recommended label: who writes the object. The controllers watch owned objects through it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "mq9-operator";
/// The label every namespace carries with its own name (set by Kubernetes since 1.21).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

// --- Mailbox ------------------------------------------------------------------------------

/// The finalizer that deletes the mailbox on the broker when the Mailbox goes.
pub const MAILBOX_FINALIZER: &str = "mq9.io/mailbox";
/// Annotation on the Mailbox naming the NATS user (public key) of the credentials last written
/// to its Secret: what must be revoked when the credentials are re-minted or the Mailbox is
/// deleted. On the Mailbox rather than the Secret, because a foreground deletion may remove
/// the Secret before the finalizer runs. A public key: nothing secret, no address.
pub const USER_KEY_ANNOTATION: &str = "mq9.io/user-key";

// --- The Mailbox's Secret -----------------------------------------------------------------

/// Label on every Secret the operator manages; the Mailbox controller watches only those.
pub const MANAGED_LABEL: &str = "mq9.io/managed";
/// Annotation recording which permissions the credentials in the Secret carry, so that a
/// membership change re-mints them (the address is never rewritten).
pub const PERMISSIONS_ANNOTATION: &str = "mq9.io/permissions-hash";
/// Annotation recording the type the mailbox was created with (`standard`, `latest`): the
/// broker keeps that type, so a changed `spec.type` is refused, not silently ignored.
pub const MAILBOX_TYPE_ANNOTATION: &str = "mq9.io/mailbox-type";
/// Where the Secret is mounted in agent pods (by the webhook, or by hand as documented).
pub const MOUNT_PATH: &str = "/var/run/secrets/mq9";
/// The Secret's key holding the NATS credentials file (`user.creds`).
pub const CREDS_KEY: &str = "user.creds";
/// The Secret's environment-ready keys. Only these become environment variables of an agent's
/// containers; [`CREDS_KEY`] (the NATS seed) is mounted as a file, never put into the
/// environment, where it would show in `kubectl describe`, crash dumps and child processes.
pub const ENV_URL: &str = "MQ9_URL";
pub const ENV_MAIL_ADDRESS: &str = "MQ9_MAIL_ADDRESS";
/// The path of the mounted [`CREDS_KEY`]; absent without auth.
pub const ENV_CREDS: &str = "MQ9_CREDS";
pub const ENV_KEYS: [&str; 3] = [ENV_URL, ENV_MAIL_ADDRESS, ENV_CREDS];

// --- Pod injection ------------------------------------------------------------------------

/// `mq9.io/inject: "true"`: the opt-in, as a label so that the webhook's `objectSelector`
/// keeps every other pod creation from calling the webhook at all.
pub const INJECT_LABEL: &str = "mq9.io/inject";
/// `mq9.io/mailbox: <Mailbox name>` or `auto`: what an opted-in pod gets.
pub const MAILBOX_ANNOTATION: &str = "mq9.io/mailbox";
/// With `auto`: the Broker of the new mailbox (default: the namespace's only Broker).
pub const BROKER_ANNOTATION: &str = "mq9.io/broker";
/// With `auto`: the new mailbox's TTL (default `webhook::inject::DEFAULT_AUTO_TTL`).
pub const TTL_ANNOTATION: &str = "mq9.io/ttl";
/// Set on an injected pod: the name of the Mailbox whose Secret it received.
pub const INJECTED_ANNOTATION: &str = "mq9.io/injected";
/// On pods given an `auto` mailbox and on those Mailboxes: the operator watches such pods to
/// make each one the owner of its Mailbox, so the Mailbox goes when the pod goes.
pub const POD_MAILBOX_LABEL: &str = "mq9.io/pod-mailbox";
/// On the webhook's certificate Secret: when the serving certificate ends, when its CA ends,
/// and for which names.
pub const NOT_AFTER_ANNOTATION: &str = "mq9.io/not-after";
pub const CA_NOT_AFTER_ANNOTATION: &str = "mq9.io/ca-not-after";
pub const DNS_NAMES_ANNOTATION: &str = "mq9.io/dns-names";

// --- Broker pods ----------------------------------------------------------------------------

/// Pod template annotation holding the configuration checksum: a new configuration is a new
/// template, so the StatefulSet rolls the pods one at a time.
pub const CONFIG_CHECKSUM_ANNOTATION: &str = "mq9.io/config-checksum";
/// nats-server's configuration, from the Broker's ConfigMap.
pub const CONFIG_DIR: &str = "/etc/nats";
/// A writable emptyDir shared by both containers (the root filesystem is read-only).
pub const RUN_DIR: &str = "/var/run/nats";
/// Where nats-server writes its pid: the preStop hook reads it to signal lame-duck mode.
pub const PID_FILE: &str = "/var/run/nats/nats.pid";
/// The pod's volume: the broker's RocksDB.
pub const DATA_DIR: &str = "/data";
/// With JWT auth, nats-server's account resolver keeps the accounts the operator pushes here:
/// on the pod's volume (mounted in both containers), so they survive a restart.
pub const RESOLVER_DIR: &str = "/data/nats-accounts";
/// Where a replicated broker keeps its shards' stores, on the data volume: a directory of its
/// own, since a replicated broker refuses a data directory holding anything it did not write
/// (nats-server's directories, a volume's `lost+found`).
pub const REPLICATED_DATA_DIR: &str = "/data/broker";
/// Where nats-server keeps JetStream (the shards' logs and the leader leases) with replicated
/// brokers, on the data volume.
pub const JETSTREAM_DIR: &str = "/data/jetstream";
/// The broker container's credentials, projected from the Broker's auth Secret.
pub const AUTH_DIR: &str = "/etc/mq9/auth";
