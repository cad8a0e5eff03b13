//! mq9: mailboxes for AI agents, carried over NATS.
//!
//! The crate is one binary (`mq9`) with a library behind it so that the integration tests,
//! the benchmarks and the binary share one implementation:
//!
//! - [`protocol`]: the wire contract of `../shared/spec/protocol.md` — subjects, request
//!   fields, `mq9-*` headers, reply shapes and error codes. Pure parsing and encoding.
//! - [`store`]: the RocksDB layout (column families, keys, records).
//! - [`engine`]: the mailbox state machine. One thread owns all state and applies commands in
//!   batches, so every batch of SENDs shares one WAL sync (group commit).
//! - [`broker`]: the NATS service around the engine, with its HTTP endpoints and metrics.
//! - [`natsd`]: starting a real `nats-server` as a child process (`mq9 dev`, tests, benchmarks).
//! - [`dev`]: `mq9 dev`, nats-server plus broker in one command.
//! - [`bench`]: `mq9 bench`, mq9 measured against the NATS request/reply ceiling and JetStream.
//! - [`crd`], [`operator`], [`auth`]: the Kubernetes side: the `mq9.io` kinds, their
//!   controllers, and the NATS credentials the operator mints.
//! - [`cli`]: the client commands (`mq9 mailbox | send | fetch | query | agents | subscribe`).

pub mod auth;
pub mod bench;
pub mod broker;
pub mod cli;
pub mod config;
pub mod crd;
pub mod dev;
pub mod engine;
pub mod http;
pub mod natsd;
pub mod operator;
pub mod protocol;
pub mod replication;
pub mod store;
pub mod time;

/// Completes on Ctrl-C or SIGTERM: how every long-running command is asked to stop.
pub async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler succeeds in a tokio runtime");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
