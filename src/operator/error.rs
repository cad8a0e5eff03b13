//! Errors of a reconcile pass, typed so that each keeps its source and maps to one stable
//! reason (the `reason` label of `/metrics`, the log line of the error policy).
//!
//! No message carries a mail address or a credential: the `Display` of each variant names
//! Kubernetes objects and keys only. Where a source could hold an address (the permissions of a
//! grant), it is kept as the `source()` for a debugger, never printed in the message.

use crate::auth::AuthError;
use crate::operator::admin_client::AdminError;

/// Why a reconcile pass failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// A broker's NATS, its admin API or its account resolver did not do what was asked.
    #[error(transparent)]
    Broker(#[from] AdminError),
    /// The finalizer could not reach the Broker and has not waited long enough to give up.
    #[error("the Broker is unreachable; the finalizer retries")]
    BrokerUnreachable,
    /// What the operator keeps in the cluster (key Secrets, the tenants' ConfigMap) cannot be
    /// read back (yet).
    #[error(transparent)]
    Stored(#[from] StoredError),
    /// A Mailbox's grant cannot be expressed as NATS permissions (the source may name the
    /// address, so only it says which part).
    #[error("the Mailbox's sendTo, subscriptions or publish topics are not NATS permissions")]
    Permissions(#[source] AuthError),
}

/// State the operator stored in Secrets and ConfigMaps that it cannot use.
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    /// The Broker controller has not written the object yet.
    #[error("{0} is not written yet")]
    NotYetWritten(String),
    /// A Secret of the Broker's name that an earlier Broker of the same name owns; it is being
    /// deleted, and its keys are never taken over.
    #[error("{0} belongs to an earlier Broker of the same name; waiting for it to be deleted")]
    Leftover(String),
    #[error("{object} has no {key}")]
    MissingKey { object: String, key: String },
    #[error("{object}: {key} is not UTF-8")]
    NotUtf8 { object: String, key: String },
    #[error("{object}: {key} does not parse: {source}")]
    Unparsable {
        object: String,
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Optimistic concurrency lost too many times in a row; the next pass retries.
    #[error("{object}: {attempts} concurrent writes in a row; retrying later")]
    Contended { object: String, attempts: usize },
}

impl Error {
    /// The `reason` label of `mq9_operator_reconcile_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesApi",
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.reason(),
                _ => "Finalizer",
            },
            Error::Broker(_) | Error::BrokerUnreachable => "BrokerUnreachable",
            Error::Stored(_) => "Credentials",
            Error::Permissions(_) => "Invalid",
        }
    }
}

impl StoredError {
    /// A key of a stored object that does not parse.
    pub fn unparsable(
        object: &str,
        key: &str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> StoredError {
        StoredError::Unparsable {
            object: object.to_owned(),
            key: key.to_owned(),
            source: Box::new(source),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
