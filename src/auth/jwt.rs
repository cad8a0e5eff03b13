//! NATS JWTs (version 2), as `nats-io/jwt` encodes them.
//!
//! A NATS JWT is an ordinary three-part JWT, `header.claims.signature`, each part base64url
//! without padding, with one twist: the signature algorithm is `ed25519-nkey`, an ed25519
//! signature by the issuer's nkey over the ASCII text `header.claims`. The issuer is named in
//! the claims (`iss`, a public nkey), so anyone can check the signature without a key store;
//! nats-server additionally checks that the issuer is who it trusts for that kind of JWT
//! (operator → account → user).
//!
//! Claims common to all kinds (JSON field names are the protocol):
//!
//! | field | meaning |
//! |---|---|
//! | `jti` | an ID: base32 (no padding) of a SHA-512/256 hash of the other claims |
//! | `iat` | issued at, Unix seconds (user JWTs only, see below) |
//! | `iss` | issuer's public nkey (`O…` for operator and accounts, `A…` for users) |
//! | `sub` | subject's public nkey: the identity the JWT describes |
//! | `name` | a human-readable name |
//! | `exp` | optional expiry, Unix seconds: the last second nats-server accepts the JWT |
//! | `nats` | the kind-specific part, always with `type` (`operator`, `account`, `user`) and `version: 2` |
//!
//! `nats-io/jwt` hashes only the generic claims for `jti`; hashing all of them (as here) gives
//! two users of different permissions different IDs. nats-server never recomputes `jti`.
//!
//! The operator, system and broker account JWTs carry no `iat` (it is optional): ed25519
//! signatures are deterministic, so these JWTs are then a pure function of the
//! [`SigningKeys`], and so is the nats-server configuration that embeds them. A config checksum
//! that decides when pods restart stays the same from one reconcile to the next.
//! (nats-server's startup log then prints the operator as `Issued : 1970-01-01`, which is only
//! cosmetic.)
//!
//! Tenant account JWTs change at run time (revocations) and *do* carry `iat`, which must grow
//! with every change: nats-server's account resolvers keep whichever of two versions has the
//! larger `iat` when they reconcile (`DirJWTStore.saveIfNewer` silently ignores an older one).
//! The caller supplies it ([`Tenant::issued_at`]) from a stored record, so that pushing the
//! same record again yields byte for byte the same JWT and changes nothing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use nkeys::{KeyPair, KeyPairType};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512_256};

use super::{AuthError, Permissions, SigningKeys};

/// The operator's `name` claim, and the broker account's.
const OPERATOR_NAME: &str = "mq9";
const BROKER_ACCOUNT_NAME: &str = "mq9";
/// The name of the service the broker account exports and every tenant account imports.
const SERVICE_NAME: &str = "mq9";
/// The subjects of that service: the whole agent protocol.
const SERVICE_SUBJECT: &str = crate::protocol::subject::AI_WILDCARD;
/// The revocation key that stands for every user of the account (`jwt.All` in nats-io/jwt).
const ALL_USERS: &str = "*";
/// The user JWT tag naming a Mailbox user's own address (NATS lowercases tags; mail addresses
/// are lowercase already). The broker reads it from `Nats-Request-Info` to know the caller.
pub const ADDRESS_TAG_PREFIX: &str = "mq9-address:";
/// The system account's `name`, as `nsc` calls it.
const SYSTEM_ACCOUNT_NAME: &str = "SYS";

/// "No limit" in every numeric limit of NATS claims. An absent limit decodes as 0, which for
/// connections, subscriptions and payload means *nothing allowed*, so limits are always
/// written out.
const NO_LIMIT: i64 = -1;

/// Which of the Broker's two fixed accounts an account JWT describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Account {
    /// `SYS`: nats-server's own account (server events, `$SYS.>`); only the operator's
    /// resolver pushes use it.
    System,
    /// `mq9`, the broker account: the broker and the operator; exports the mq9 service.
    /// `users_revoked_at`: every user of the account issued at or before that Unix second is
    /// refused (`revocations: {"*": …}`), which ends the users of an older design at once.
    /// `jetstream`: JetStream enabled (replicated brokers keep their shards' logs and leases
    /// there), without limits of its own: the server's `max_file_store` bounds it.
    Broker {
        users_revoked_at: Option<u64>,
        jetstream: bool,
    },
}

/// What a tenant account JWT says besides its fixed import: see [`tenant_account_jwt`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tenant {
    /// The `iat` claim: must grow whenever `revocations` change (see the module docs).
    pub issued_at: u64,
    /// User public key → Unix seconds: nats-server refuses (and disconnects) that user's
    /// JWTs issued at or before that second.
    pub revocations: std::collections::BTreeMap<String, u64>,
}

/// The claims of a user JWT besides its subject and issuer.
#[derive(Debug, Clone, Copy)]
pub struct UserClaims<'a> {
    /// The `name` claim: visible in nats-server's monitoring and logs, so never an address.
    pub name: &'a str,
    pub permissions: &'a Permissions,
    /// The `tags` claim (nats-server passes them to services in `Nats-Request-Info`).
    pub tags: &'a [String],
    /// `exp`, Unix seconds; `None` (or `Some(0)`) = never.
    pub expires_at: Option<u64>,
}

/// The tag that names a Mailbox user's address: `mq9-address:<address>`.
pub fn address_tag(address: &str) -> String {
    format!("{ADDRESS_TAG_PREFIX}{address}")
}

/// The operator JWT: self-signed (`iss` = `sub` = the operator key), naming the system
/// account in `nats.system_account`. nats-server's `operator:` setting takes it; it is the
/// root of trust, so it has no expiry.
pub fn operator_jwt(keys: &SigningKeys) -> String {
    let operator = keys.operator();
    let nats = json!({
        "system_account": keys.system_account_public_key(),
        "type": "operator",
        "version": 2,
    });
    let claims = claims(
        operator,
        &operator.public_key(),
        OPERATOR_NAME,
        None,
        None,
        nats,
    );
    encode(operator, claims).expect("the operator key of SigningKeys has a seed")
}

/// The JWT of the system or the broker account, signed by the operator. Every account is
/// unlimited (connections, subscriptions, data, payload, imports, exports) and has JetStream
/// disabled (no storage limits: mq9 stores mail in its own RocksDB), except the broker
/// account of replicated brokers (see [`Account::Broker`]). Limits that matter (mailboxes,
/// bytes) are the broker's.
///
/// The broker account exports the service `$mq9.AI.>` with one answer per request
/// (`Singleton`); nats-server keeps the way back to the requester for two minutes (the
/// default response threshold). The export is public: only accounts signed by this Broker's
/// operator exist on its nats-server, and each is a tenant meant to import it.
pub fn account_jwt(keys: &SigningKeys, account: Account) -> String {
    let mut nats = account_nats();
    let (pair, name) = match account {
        Account::System => (keys.system_account(), SYSTEM_ACCOUNT_NAME),
        Account::Broker {
            users_revoked_at,
            jetstream,
        } => {
            if jetstream {
                let limits = nats["limits"].as_object_mut().expect("limits is an object");
                for unlimited in ["mem_storage", "disk_storage", "streams", "consumer"] {
                    limits.insert(unlimited.into(), json!(NO_LIMIT));
                }
                limits.insert("max_ack_pending".into(), json!(NO_LIMIT));
            }
            nats["exports"] = json!([{
                "name": SERVICE_NAME,
                "subject": SERVICE_SUBJECT,
                "type": "service",
                "response_type": "Singleton",
            }]);
            if let Some(at) = users_revoked_at {
                nats["revocations"] = json!({ ALL_USERS: at });
            }
            (keys.account(), BROKER_ACCOUNT_NAME)
        }
    };
    let claims = claims(keys.operator(), &pair.public_key(), name, None, None, nats);
    encode(keys.operator(), claims).expect("the operator key of SigningKeys has a seed")
}

/// The JWT of `namespace`'s tenant account ([`SigningKeys::tenant_account`]), signed by the
/// operator and named after the namespace. It imports the broker account's `$mq9.AI.>`
/// service with `share: true`, so that every request carries a `Nats-Request-Info` header
/// naming the calling user and its tags (written by nats-server, unforgeable). Its agents'
/// `_INBOX.>` is this account's own: answers come back through the import, invisible to any
/// other account. `revocations` cut off the users of deleted or re-minted credentials.
pub fn tenant_account_jwt(keys: &SigningKeys, namespace: &str, tenant: &Tenant) -> String {
    let mut nats = account_nats();
    nats["imports"] = json!([{
        "name": SERVICE_NAME,
        "subject": SERVICE_SUBJECT,
        "account": keys.account_public_key(),
        "type": "service",
        "share": true,
    }]);
    if !tenant.revocations.is_empty() {
        nats["revocations"] = json!(tenant.revocations);
    }
    let subject = keys.tenant_account(namespace).public_key();
    let issued_at = Some(tenant.issued_at).filter(|&at| at > 0);
    let claims = claims(keys.operator(), &subject, namespace, issued_at, None, nats);
    encode(keys.operator(), claims).expect("the operator key of SigningKeys has a seed")
}

/// The `nats` section every account shares: unlimited, no JetStream.
fn account_nats() -> Value {
    json!({
        "limits": {
            "subs": NO_LIMIT,
            "data": NO_LIMIT,
            "payload": NO_LIMIT,
            "imports": NO_LIMIT,
            "exports": NO_LIMIT,
            "wildcards": true,
            "conn": NO_LIMIT,
            "leaf": NO_LIMIT,
        },
        "type": "account",
        "version": 2,
    })
}

/// A user JWT for `user_public_key` (`U…`), signed by `account` (the account the user belongs
/// to: [`SigningKeys::account`] for the broker and the operator, a tenant account for agents).
///
/// `permissions` become `nats.pub` / `nats.sub` (`allow` and `deny` lists of subject
/// patterns; an empty `allow` list means *everything*, so restricted permission sets always
/// allow something) and `nats.resp` (`{max, ttl}`, ttl in nanoseconds as Go's
/// `time.Duration`). `expires_at` (Unix seconds) becomes `exp`, which nats-server reads as
/// the last valid second (a JWT is expired when `now > exp`): a connected user is cut off
/// during that second (`-ERR 'User Authentication Expired'`), and connects are refused with
/// `Authorization Violation` from the next second on. `None` — and `Some(0)`, as on the mq9
/// wire and in `nats-io/jwt` — means never.
pub fn user_jwt(
    account: &KeyPair,
    user_public_key: &str,
    user: &UserClaims<'_>,
) -> Result<String, AuthError> {
    if account.key_pair_type() != KeyPairType::Account {
        return Err(AuthError::InvalidKey(format!(
            "user JWTs are signed by an account key, not a {:?} key",
            account.key_pair_type()
        )));
    }
    let subject = KeyPair::from_public_key(user_public_key)
        .map_err(|e| AuthError::InvalidKey(format!("user public key: {e}")))?;
    if subject.key_pair_type() != KeyPairType::User {
        return Err(AuthError::InvalidKey(format!(
            "the subject of a user JWT must be a user key, not a {:?} key",
            subject.key_pair_type()
        )));
    }
    let mut nats = permissions_json(user.permissions);
    nats["subs"] = json!(NO_LIMIT);
    nats["data"] = json!(NO_LIMIT);
    nats["payload"] = json!(NO_LIMIT);
    if !user.tags.is_empty() {
        nats["tags"] = json!(user.tags);
    }
    nats["type"] = json!("user");
    nats["version"] = json!(2);
    let expires_at = user.expires_at.filter(|&at| at > 0);
    let now = crate::time::ms_to_secs(crate::time::now_ms());
    let claims = claims(
        account,
        user_public_key,
        user.name,
        Some(now),
        expires_at,
        nats,
    );
    encode(account, claims)
}

/// Whether a user JWT (as found in a stored `.creds` file) carries exactly `permissions`:
/// lets a caller re-mint credentials whose permissions an upgrade narrowed. `false` for
/// anything that does not decode.
pub fn carries_permissions(jwt: &str, permissions: &Permissions) -> bool {
    let Some(claims) = decode_claims(jwt) else {
        return false;
    };
    let expected = permissions_json(permissions);
    ["pub", "sub", "resp"]
        .iter()
        .all(|field| claims["nats"].get(field) == expected.get(field))
}

fn decode_claims(jwt: &str) -> Option<Value> {
    let payload = jwt.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// `pub`, `sub` and (when set) `resp` of a user's `nats` section.
fn permissions_json(permissions: &Permissions) -> Value {
    let mut nats = json!({
        "pub": permission(&permissions.publish_allow, &permissions.publish_deny),
        "sub": permission(&permissions.subscribe_allow, &permissions.subscribe_deny),
    });
    if let Some(responses) = permissions.responses {
        let ttl_nanos = u64::try_from(responses.ttl.as_nanos()).unwrap_or(u64::MAX);
        nats["resp"] = json!({"max": responses.max, "ttl": ttl_nanos});
    }
    nats
}

/// `{"allow": [...], "deny": [...]}`, leaving out empty lists as `nats-io/jwt` does.
fn permission(allow: &[String], deny: &[String]) -> Value {
    let mut permission = Map::new();
    if !allow.is_empty() {
        permission.insert("allow".into(), json!(allow));
    }
    if !deny.is_empty() {
        permission.insert("deny".into(), json!(deny));
    }
    Value::Object(permission)
}

/// The generic claims around a kind-specific `nats` section; `jti` is added by [`encode`].
fn claims(
    issuer: &KeyPair,
    subject: &str,
    name: &str,
    issued_at: Option<u64>,
    expires_at: Option<u64>,
    nats: Value,
) -> Map<String, Value> {
    let mut claims = Map::new();
    if let Some(at) = issued_at {
        claims.insert("iat".into(), json!(at));
    }
    claims.insert("iss".into(), json!(issuer.public_key()));
    claims.insert("name".into(), json!(name));
    claims.insert("sub".into(), json!(subject));
    if let Some(at) = expires_at {
        claims.insert("exp".into(), json!(at));
    }
    claims.insert("nats".into(), nats);
    claims
}

/// Adds `jti`, then serializes and signs: `b64(header).b64(claims).b64(signature)`.
fn encode(issuer: &KeyPair, claims: Map<String, Value>) -> Result<String, AuthError> {
    let hash = Sha512_256::digest(Value::Object(claims.clone()).to_string().as_bytes());
    let mut with_id = Map::new();
    with_id.insert(
        "jti".into(),
        json!(data_encoding::BASE32_NOPAD.encode(&hash)),
    );
    with_id.extend(claims);
    let header = json!({"typ": "JWT", "alg": "ed25519-nkey"});
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(with_id).to_string()),
    );
    let signature = issuer
        .sign(signed.as_bytes())
        .map_err(|e| AuthError::InvalidKey(format!("cannot sign: {e}")))?;
    Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

#[cfg(test)]
pub(super) mod tests;
