//! NATS decentralized authentication for mq9: signing keys, JWTs, `.creds` files and the
//! permissions each kind of client gets.
//!
//! # The model in one page
//!
//! nats-server's "operator mode" trusts a chain of signatures instead of a user list:
//!
//! ```text
//! operator  (self-signed JWT, named in nats-server.conf)
//!   ├── system account "SYS"   (account JWT signed by the operator; nats-server's own traffic)
//!   └── application account "mq9" (account JWT signed by the operator)
//!         ├── user: the broker     (user JWT signed by the account: everything)
//!         ├── user: the operator   (only `$mq9.ADMIN.>` and broadcast membership)
//!         └── user: one per Mailbox (its own mailbox, its sendTo patterns, its topics)
//! ```
//!
//! Every identity is an [nkey](https://docs.nats.io/running-a-nats-service/configuration/securing_nats/auth_intro/nkey_auth):
//! an ed25519 key pair whose public half is printed with a type prefix (`O…` operator,
//! `A…` account, `U…` user) and whose private half is the *seed* (`SO…`, `SA…`, `SU…`).
//! A JWT is a claim set signed by its issuer's seed; nats-server checks each link of the
//! chain when a client connects, plus the user's `exp`, and then enforces the user's
//! publish/subscribe permissions on every message.
//!
//! nats-server learns the account JWTs from its configuration (`resolver: MEMORY` with
//! `resolver_preload`, see [`nats_auth_config`]); users are never listed anywhere: a user is
//! whoever holds a user JWT signed by an account the server trusts, together with the seed
//! matching the JWT's subject (it signs the server's connect nonce). That is why the operator
//! can mint credentials for a new Mailbox without touching nats-server at all, and why a
//! user JWT's expiry is the only way to end a user: there is no revocation list here.
//!
//! # Who holds what
//!
//! - [`SigningKeys`] (operator, system-account and application-account seeds) are generated
//!   once per Broker and kept in a Secret; regenerating them would invalidate every
//!   credential ever minted for that Broker.
//! - The operator and account JWTs are *public* claims (no seed in them); they go into
//!   nats-server's configuration, a ConfigMap.
//! - A [`Credentials`] (user JWT + user seed, as a `.creds` file) is secret: it goes into
//!   the Mailbox's Secret as `user.creds` and must never be logged. `Debug` on the types of
//!   this module prints public keys only.
//!
//! Everything here is pure computation (plus the clock for `iat` and the OS RNG for new
//! keys): no file, network or Kubernetes access.

mod creds;
mod jwt;
mod keys;
mod permissions;
mod server_config;

pub use creds::{creds_file, mint_user, Credentials};
pub use jwt::{account_jwt, operator_jwt, user_jwt, Account};
pub use keys::SigningKeys;
pub use permissions::{broker_permissions, mailbox_permissions, operator_permissions, Permissions};
pub use server_config::nats_auth_config;

/// Why a key, JWT or permission set could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A stored seed does not decode, or is of the wrong kind (e.g. a user seed where the
    /// operator's is expected). Carries which key, never the seed.
    #[error("invalid {which} seed: {reason}")]
    InvalidSeed { which: &'static str, reason: String },
    /// A public key or key pair of the wrong kind was given (e.g. a JWT subject that is not
    /// a user key, or an issuer that is not an account).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A mail address, address pattern or topic that cannot become a NATS permission.
    #[error("invalid permission subject: {0}")]
    InvalidSubject(String),
}
