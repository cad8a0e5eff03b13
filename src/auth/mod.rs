//! NATS decentralized authentication for mq9: signing keys, JWTs, `.creds` files and the
//! permissions each kind of client gets.
//!
//! # The model in one page
//!
//! nats-server's "operator mode" trusts a chain of signatures instead of a user list:
//!
//! ```text
//! operator  (self-signed JWT, named in nats-server.conf)
//!   ├── system account "SYS"   (nats-server's own traffic; the operator's resolver pushes)
//!   ├── broker account "mq9"   (exports the service `$mq9.AI.>`)
//!   │     ├── user: the broker     (subscribes the protocol; publishes only answers)
//!   │     └── user: the operator   (only `$mq9.ADMIN.>` and broadcast membership)
//!   └── tenant account "<namespace>", one per namespace with Mailboxes
//!         │                    (imports `$mq9.AI.>` from the broker account, `share: true`)
//!         └── user: one per Mailbox (its own mailbox, its sendTo patterns, its topics;
//!                                    tagged `mq9-address:<address>`)
//! ```
//!
//! Tenancy is nats-server's own isolation: subjects are per account, so an agent subscribed
//! to `_INBOX.>` or even `>` sees only its own account's traffic. A request from a tenant
//! crosses into the broker account through the service import, and its answer comes back the
//! same way to the requester's inbox alone (nats-server rewrites the reply subject into a
//! one-time `_R_.…` subject of the broker account).
//!
//! Every identity is an [nkey](https://docs.nats.io/running-a-nats-service/configuration/securing_nats/auth_intro/nkey_auth):
//! an ed25519 key pair whose public half is printed with a type prefix (`O…` operator,
//! `A…` account, `U…` user) and whose private half is the *seed* (`SO…`, `SA…`, `SU…`).
//! A JWT is a claim set signed by its issuer's seed; nats-server checks each link of the
//! chain when a client connects, plus the user's `exp`, and then enforces the user's
//! publish/subscribe permissions on every message.
//!
//! nats-server learns the system and broker account JWTs from its configuration
//! (`resolver_preload`, see [`nats_auth_config`]) and the tenant accounts at run time (the
//! full resolver, pushed by the operator: [`tenant_account_jwt`]). Users are never listed
//! anywhere: a user is whoever holds a user JWT signed by an account the server trusts,
//! together with the seed matching the JWT's subject (it signs the server's connect nonce).
//! A user ends at its JWT's expiry, or earlier when its account's JWT revokes its key.
//!
//! # Who holds what
//!
//! - [`SigningKeys`] (operator, system-account and broker-account seeds) are generated
//!   once per Broker and kept in a Secret; regenerating them would invalidate every
//!   credential ever minted for that Broker. Tenant account keys are derived from them.
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

pub use creds::{creds_file, creds_jwt, mint_user, Credentials};
pub use jwt::{
    account_jwt, address_tag, carries_permissions, operator_jwt, tenant_account_jwt, user_jwt,
    Account, Tenant, UserClaims, ADDRESS_TAG_PREFIX,
};
pub use keys::SigningKeys;
pub use permissions::{
    account_push_permissions, broker_permissions, mailbox_permissions, operator_permissions,
    replicated_broker_permissions, Permissions, Responses, CLAIMS_UPDATE, RESPONSE_WINDOW,
};
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
