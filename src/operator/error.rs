//! Errors of a reconcile pass, each with a stable reason for `/metrics` and conditions.

/// Why a reconcile pass failed. Messages never carry a mail address.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("{0}")]
    BrokerUnreachable(String),
    #[error("credentials: {0}")]
    Credentials(String),
    #[error("{0}")]
    Invalid(String),
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
            Error::BrokerUnreachable(_) => "BrokerUnreachable",
            Error::Credentials(_) => "Credentials",
            Error::Invalid(_) => "Invalid",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
