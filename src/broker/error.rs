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
    /// The replicated data plane (JetStream: a shard's log, the leases), in words that name no
    /// mailbox.
    #[error("replication: {0}")]
    Replication(String),
    /// The data directory holds another cluster's data or another shard layout.
    #[error("the data directory {} holds {found}, not {wanted}: refusing to start", dir.display())]
    Layout {
        dir: PathBuf,
        found: String,
        wanted: String,
    },
    /// The HTTP endpoints (`crate::http`), whose errors already say what failed.
    #[error(transparent)]
    Http(#[from] anyhow::Error),
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::path::Path;

    use super::*;
    use crate::config::BrokerConfig;
    use crate::store::Store;

    /// Runs a real broker on `data_dir` until it fails (it fails before it needs NATS).
    async fn fail_to_start(data_dir: &Path) -> BrokerError {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            config: BrokerConfig,
        }
        let data_dir = data_dir.to_str().unwrap();
        let cli = <Cli as clap::Parser>::try_parse_from([
            "mq9-broker",
            "--data-dir",
            data_dir,
            "--http-addr",
            "127.0.0.1:0",
        ])
        .unwrap();
        let never = std::future::pending::<()>();
        super::super::run(cli.config, never).await.unwrap_err()
    }

    /// The chain as `main` prints it: each cause once, in order.
    fn printed(error: BrokerError) -> String {
        format!("{:#}", anyhow::Error::from(error))
    }

    #[tokio::test]
    async fn a_data_directory_that_cannot_be_made_names_the_path_and_keeps_the_cause() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let dir = file.path().join("data");
        let error = fail_to_start(&dir).await;
        assert!(matches!(error, BrokerError::DataDir { .. }), "{error:?}");
        let cause = error.source().expect("the io error is kept");
        assert!(cause.downcast_ref::<std::io::Error>().is_some());
        let expected = format!("cannot create data directory {}: {cause}", dir.display());
        assert_eq!(printed(error), expected);
    }

    #[tokio::test]
    async fn a_store_held_by_another_process_is_refused_with_rocksdbs_reason() {
        let dir = tempfile::tempdir().unwrap();
        let _held = Store::open(dir.path()).unwrap();
        let error = fail_to_start(dir.path()).await;
        assert!(matches!(error, BrokerError::OpenStore { .. }), "{error:?}");
        let cause = error.source().expect("the store error is kept");
        assert!(cause.downcast_ref::<StoreError>().is_some());
        assert!(cause.to_string().contains("lock"), "{cause}");
        let what = format!("cannot open the mailbox store in {}", dir.path().display());
        assert_eq!(error.to_string(), what, "the cause is printed by the chain");
        assert!(printed(error).starts_with(&format!("{what}: rocksdb: ")));
    }
}
