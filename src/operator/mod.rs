//! `mq9 operator`: Kubernetes controllers for the `mq9.io` kinds (see `crd`).
//!
//! Every controller (Broker, Mailbox, Broadcast) has one shape: observe (read what exists) →
//! `plan::desired` (a pure function of what was observed: the objects to apply, the broker
//! calls to make, the status and Events that follow) → apply → write the status once per pass.
//! Plans make no API calls, hold no clock reading or randomness of their own, and are
//! unit-tested directly.
//!
//! Layout:
//! - [`builders`]: the Kubernetes objects (a Broker's workload, a Mailbox's Secret) as pure
//!   values;
//! - [`broker`], [`mailbox`], [`broadcast`]: one controller per kind, each with its `plan`;
//! - [`names`]: every label, annotation, finalizer, Secret key and mount path the operator
//!   writes;
//! - [`credentials`]: a Broker's signing keys and the NATS credentials minted from them;
//! - [`routes`]: the password of a Broker's cluster routes;
//! - [`tenants`]: the tenant account of each namespace (revocations, pushes to nats-server);
//! - [`admin_client`]: the operator's NATS connection to a broker's `$mq9.ADMIN.>` API;
//! - [`apply`], [`conditions`], [`context`], [`error`], [`metrics`]: what the controllers share
//!   (server-side apply, conditions, the client, Events, typed errors, `/metrics`);
//! - [`triggers`]: the watch caches every controller reads, and which changes wake whom;
//! - [`webhook`], [`pods`]: pod injection (a mutating admission webhook) and the ownership of
//!   the Mailboxes it creates for pods;
//! - [`leader`], [`run`]: leader election and the process around the controllers.
//!
//! A mail address never appears in a status, an Event or a log line: knowing one is enough
//! to read the mailbox on a broker without auth. It lives only in the Mailbox's Secret.

pub mod admin_client;
pub mod apply;
pub mod broadcast;
pub mod broker;
pub mod builders;
pub mod conditions;
pub mod context;
pub mod credentials;
pub mod error;
pub mod known;
pub mod leader;
pub mod mailbox;
pub mod metrics;
pub mod names;
pub mod pods;
pub mod routes;
pub mod run;
pub mod tenants;
pub mod triggers;
pub mod webhook;

pub use run::{run, OperatorArgs};
