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
//! The operator and account JWTs carry no `iat` (it is optional): ed25519 signatures are
//! deterministic, so these JWTs are then a pure function of the [`SigningKeys`], and so is
//! the nats-server configuration that embeds them. A config checksum that decides when pods
//! restart stays the same from one reconcile to the next. (nats-server's startup log then
//! prints the operator as `Issued : 1970-01-01`, which is only cosmetic.)

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use nkeys::{KeyPair, KeyPairType};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512_256};

use super::{AuthError, Permissions, SigningKeys};

/// The operator's `name` claim, and the application account's.
const OPERATOR_NAME: &str = "mq9";
const APPLICATION_ACCOUNT_NAME: &str = "mq9";
/// The system account's `name`, as `nsc` calls it.
const SYSTEM_ACCOUNT_NAME: &str = "SYS";

/// "No limit" in every numeric limit of NATS claims. An absent limit decodes as 0, which for
/// connections, subscriptions and payload means *nothing allowed*, so limits are always
/// written out.
const NO_LIMIT: i64 = -1;

/// Which of the Broker's two accounts an account JWT describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Account {
    /// `SYS`: nats-server's own account (server events, `$SYS.>`); no mq9 client uses it.
    System,
    /// `mq9`: the account of the broker, the operator and every agent.
    Application,
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

/// An account JWT, signed by the operator. Both accounts are unlimited (connections,
/// subscriptions, data, payload, imports, exports) and have JetStream disabled: mq9 stores
/// mail in its own RocksDB, not in JetStream. Limits that matter (mailboxes, bytes) are the
/// broker's.
pub fn account_jwt(keys: &SigningKeys, account: Account) -> String {
    let (pair, name) = match account {
        Account::System => (keys.system_account(), SYSTEM_ACCOUNT_NAME),
        Account::Application => (keys.account(), APPLICATION_ACCOUNT_NAME),
    };
    let nats = json!({
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
    });
    let claims = claims(keys.operator(), &pair.public_key(), name, None, None, nats);
    encode(keys.operator(), claims).expect("the operator key of SigningKeys has a seed")
}

/// A user JWT for `user_public_key` (`U…`), signed by `account` (the application account's
/// key pair, [`SigningKeys::account`]).
///
/// `permissions` become `nats.pub` / `nats.sub` (`allow` and `deny` lists of subject
/// patterns; an empty `allow` list means *everything*, so restricted permission sets always
/// allow something). `expires_at` (Unix seconds) becomes `exp`, which nats-server reads as
/// the last valid second (a JWT is expired when `now > exp`): a connected user is cut off
/// during that second (`-ERR 'User Authentication Expired'`), and connects are refused with
/// `Authorization Violation` from the next second on. `None` — and `Some(0)`, as on the mq9
/// wire and in `nats-io/jwt` — means never.
pub fn user_jwt(
    account: &KeyPair,
    user_public_key: &str,
    name: &str,
    permissions: &Permissions,
    expires_at: Option<u64>,
) -> Result<String, AuthError> {
    if account.key_pair_type() != KeyPairType::Account {
        return Err(AuthError::InvalidKey(format!(
            "user JWTs are signed by an account key, not a {:?} key",
            account.key_pair_type()
        )));
    }
    let user = KeyPair::from_public_key(user_public_key)
        .map_err(|e| AuthError::InvalidKey(format!("user public key: {e}")))?;
    if user.key_pair_type() != KeyPairType::User {
        return Err(AuthError::InvalidKey(format!(
            "the subject of a user JWT must be a user key, not a {:?} key",
            user.key_pair_type()
        )));
    }
    let nats = json!({
        "pub": permission(&permissions.publish_allow, &permissions.publish_deny),
        "sub": permission(&permissions.subscribe_allow, &permissions.subscribe_deny),
        "subs": NO_LIMIT,
        "data": NO_LIMIT,
        "payload": NO_LIMIT,
        "type": "user",
        "version": 2,
    });
    let expires_at = expires_at.filter(|&at| at > 0);
    let now = crate::time::ms_to_secs(crate::time::now_ms());
    let claims = claims(account, user_public_key, name, Some(now), expires_at, nats);
    encode(account, claims)
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
