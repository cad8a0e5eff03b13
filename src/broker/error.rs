//! Why the broker could not start, or stopped uncleanly.
//!
//! Each variant says what the broker was doing in words an operator can act on and keeps its
//! cause as the error's `source`, so `mq9: {error:#}` prints the whole chain once. Paths and
//! NATS subject patterns may appear; a mail address never does (none of these steps touches
//! one).

use std::path::PathBuf;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot create data directory {}", dir.display())]
    DataDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the mailbox store in {}", dir.display())]
    OpenStore { dir: PathBuf, source: StoreError },
    #[error("cannot load the mailbox store")]
    LoadStore(#[source] StoreError),
    #[error("cannot read NATS credentials {}", path.display())]
    Credentials {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Only logged: the broker retries until it connects.
    #[error(transparent)]
    Connect(#[from] async_nats::ConnectError),
    #[error("cannot subscribe to {subject}")]
    Subscribe {
        subject: &'static str,
        source: async_nats::SubscribeError,
    },
    #[error("cannot start the mailbox engine thread")]
    EngineThread(#[source] std::io::Error),
    #[error("the engine thread panicked")]
    EnginePanicked,
    /// A task the broker waits for (opening the store, publishing replies) panicked.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    /// The HTTP endpoints (`crate::http`), whose errors already say what failed.
    #[error(transparent)]
    Http(#[from] anyhow::Error),
}
