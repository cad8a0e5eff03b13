//! Unit tests of JWT encoding: structure, signatures, claims.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use nkeys::KeyPair;
use serde_json::{json, Value};
use sha2::{Digest, Sha512_256};

use super::*;
use crate::auth::{
    broker_permissions, mailbox_permissions, AuthError, Permissions, Responses, SigningKeys,
};
use crate::protocol::subject::AI_WILDCARD;

fn user<'a>(permissions: &'a Permissions, expires_at: Option<u64>) -> UserClaims<'a> {
    UserClaims {
        name: "box",
        permissions,
        tags: &[],
        expires_at,
    }
}

/// Test helper: the header and claims of a JWT after checking its signature against its
/// own `iss` (which the tests then compare with the expected issuer).
pub(in crate::auth) fn decode_verified(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts");
    let part = |i: usize| -> Value {
        let bytes = URL_SAFE_NO_PAD
            .decode(parts[i])
            .expect("base64url without padding");
        serde_json::from_slice(&bytes).expect("a JSON object")
    };
    let (header, claims) = (part(0), part(1));
    let issuer = KeyPair::from_public_key(claims["iss"].as_str().unwrap()).unwrap();
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    let signed = format!("{}.{}", parts[0], parts[1]);
    issuer
        .verify(signed.as_bytes(), &signature)
        .expect("the issuer's signature verifies");
    (header, claims)
}

#[test]
fn operator_jwt_is_self_signed_and_names_the_system_account() {
    let keys = SigningKeys::generate();
    let (header, claims) = decode_verified(&operator_jwt(&keys));
    assert_eq!(header, json!({"typ": "JWT", "alg": "ed25519-nkey"}));
    assert_eq!(claims["iss"], keys.operator_public_key());
    assert_eq!(claims["sub"], keys.operator_public_key());
    assert_eq!(claims["nats"]["type"], "operator");
    assert_eq!(claims["nats"]["version"], 2);
    assert_eq!(
        claims["nats"]["system_account"],
        keys.system_account_public_key()
    );
    assert!(claims.get("exp").is_none());
    assert!(claims.get("iat").is_none());
    assert_eq!(operator_jwt(&keys), operator_jwt(&keys), "deterministic");
}

#[test]
fn account_jwts_are_signed_by_the_operator_with_explicit_limits() {
    let keys = SigningKeys::generate();
    for (account, subject, name) in [
        (Account::System, keys.system_account_public_key(), "SYS"),
        (
            Account::Broker {
                users_revoked_at: None,
                jetstream: false,
            },
            keys.account_public_key(),
            "mq9",
        ),
    ] {
        let (_, claims) = decode_verified(&account_jwt(&keys, account));
        assert_eq!(claims["iss"], keys.operator_public_key());
        assert_eq!(claims["sub"], subject);
        assert_eq!(claims["name"], name);
        assert_eq!(claims["nats"]["type"], "account");
        assert_eq!(claims["nats"]["version"], 2);
        for limit in [
            "subs", "data", "payload", "conn", "imports", "exports", "leaf",
        ] {
            assert_eq!(claims["nats"]["limits"][limit], -1, "{limit}");
        }
        assert_eq!(
            claims["nats"]["limits"].get("disk_storage"),
            None,
            "no JetStream"
        );
        assert_eq!(account_jwt(&keys, account), account_jwt(&keys, account));
    }
    let (_, system) = decode_verified(&account_jwt(&keys, Account::System));
    assert!(system["nats"].get("exports").is_none());
    let (_, broker) = decode_verified(&account_jwt(
        &keys,
        Account::Broker {
            users_revoked_at: None,
            jetstream: false,
        },
    ));
    assert!(broker["nats"].get("revocations").is_none());
    assert_eq!(
        broker["nats"]["exports"],
        json!([{"name": "mq9", "subject": AI_WILDCARD, "type": "service",
                "response_type": "Singleton"}])
    );
}

#[test]
fn only_a_replicated_brokers_account_has_jetstream() {
    let keys = SigningKeys::generate();
    let account = |jetstream| Account::Broker {
        users_revoked_at: None,
        jetstream,
    };
    let (_, claims) = decode_verified(&account_jwt(&keys, account(true)));
    for limit in ["mem_storage", "disk_storage", "streams", "consumer"] {
        assert_eq!(claims["nats"]["limits"][limit], -1, "{limit}");
    }
    let (_, plain) = decode_verified(&account_jwt(&keys, account(false)));
    assert_eq!(plain["nats"]["limits"].get("disk_storage"), None);
    let tenant = tenant_account_jwt(&keys, "team-a", &Tenant::default());
    let (_, tenant) = decode_verified(&tenant);
    assert_eq!(
        tenant["nats"]["limits"].get("disk_storage"),
        None,
        "tenants never get JetStream"
    );
}

#[test]
fn the_broker_account_can_revoke_all_its_earlier_users() {
    let keys = SigningKeys::generate();
    let account = Account::Broker {
        users_revoked_at: Some(1_700_000_000),
        jetstream: false,
    };
    let (_, claims) = decode_verified(&account_jwt(&keys, account));
    assert_eq!(
        claims["nats"]["revocations"],
        json!({"*": 1_700_000_000u64})
    );
    assert_eq!(account_jwt(&keys, account), account_jwt(&keys, account));
}

#[test]
fn a_tenant_account_imports_the_service_and_carries_its_revocations() {
    let keys = SigningKeys::generate();
    let revoked = KeyPair::new_user().public_key();
    let tenant = Tenant {
        issued_at: 1_700_000_123,
        revocations: [(revoked.clone(), 1_700_000_100)].into(),
    };
    let token = tenant_account_jwt(&keys, "team-a", &tenant);
    let (_, claims) = decode_verified(&token);
    assert_eq!(claims["iss"], keys.operator_public_key());
    assert_eq!(claims["sub"], keys.tenant_account("team-a").public_key());
    assert_eq!(claims["name"], "team-a");
    assert_eq!(claims["iat"], 1_700_000_123u64);
    assert_eq!(claims["nats"]["type"], "account");
    assert_eq!(
        claims["nats"]["imports"],
        json!([{"name": "mq9", "subject": AI_WILDCARD, "account": keys.account_public_key(),
                "type": "service", "share": true}])
    );
    assert_eq!(
        claims["nats"]["revocations"],
        json!({revoked: 1_700_000_100u64})
    );
    assert_eq!(claims["nats"]["limits"]["conn"], -1);
    assert_eq!(
        claims["nats"]["limits"].get("mem_storage"),
        None,
        "no JetStream"
    );
    assert_eq!(
        tenant_account_jwt(&keys, "team-a", &tenant),
        token,
        "the same record pushes the same JWT (idempotent)"
    );
    let other = tenant_account_jwt(&keys, "team-b", &tenant);
    assert_ne!(decode_verified(&other).1["sub"], claims["sub"]);
    let (_, empty) = decode_verified(&tenant_account_jwt(&keys, "team-a", &Tenant::default()));
    assert!(empty["nats"].get("revocations").is_none() && empty.get("iat").is_none());
}

#[test]
fn user_jwt_carries_permissions_tags_expiry_and_a_content_hash_id() {
    let keys = SigningKeys::generate();
    let user_key = KeyPair::new_user();
    let permissions = mailbox_permissions("box1", &[], &[], &[]).unwrap();
    let tags = [address_tag("box1")];
    let claims = UserClaims {
        tags: &tags,
        ..user(&permissions, Some(2_000_000_000))
    };
    let token = user_jwt(keys.account(), &user_key.public_key(), &claims).unwrap();
    let (_, claims) = decode_verified(&token);
    assert_eq!(claims["iss"], keys.account_public_key());
    assert_eq!(claims["sub"], user_key.public_key());
    assert_eq!(claims["name"], "box");
    assert_eq!(claims["nats"]["tags"], json!(["mq9-address:box1"]));
    assert!(claims["nats"].get("resp").is_none());
    assert_eq!(claims["exp"], 2_000_000_000u64);
    let now = crate::time::ms_to_secs(crate::time::now_ms());
    assert!(claims["iat"].as_u64().unwrap().abs_diff(now) <= 1);
    let nats = &claims["nats"];
    assert_eq!(nats["type"], "user");
    assert_eq!(nats["version"], 2);
    assert_eq!(nats["pub"]["allow"], json!(permissions.publish_allow));
    assert_eq!(nats["pub"]["deny"], json!(permissions.publish_deny));
    assert_eq!(nats["sub"]["allow"], json!(permissions.subscribe_allow));
    assert_eq!(nats["sub"]["deny"], json!(permissions.subscribe_deny));
    assert_eq!(
        (nats["subs"].clone(), nats["payload"].clone()),
        (json!(-1), json!(-1))
    );
    // jti = base32(SHA-512/256(claims without jti)).
    let mut rest = claims.as_object().unwrap().clone();
    let jti = rest.shift_remove("jti").unwrap();
    let hash = Sha512_256::digest(Value::Object(rest).to_string().as_bytes());
    assert_eq!(jti, data_encoding::BASE32_NOPAD.encode(&hash));
}

#[test]
fn no_expiry_and_zero_expiry_leave_exp_out() {
    let keys = SigningKeys::generate();
    let user = KeyPair::new_user().public_key();
    for expires_at in [None, Some(0)] {
        let permissions = Permissions::default();
        let token = user_jwt(keys.account(), &user, &self::user(&permissions, expires_at));
        let (_, claims) = decode_verified(&token.unwrap());
        assert!(claims.get("exp").is_none());
        assert!(claims["nats"].get("tags").is_none());
        assert_eq!(claims["nats"]["pub"], json!({}), "empty lists are left out");
    }
}

#[test]
fn wrong_key_kinds_are_refused() {
    let keys = SigningKeys::generate();
    let user = KeyPair::new_user();
    let perms = Permissions::default();
    let claims = self::user(&perms, None);
    let by_user = user_jwt(&user, &user.public_key(), &claims);
    assert!(matches!(by_user, Err(AuthError::InvalidKey(_))));
    let for_account = user_jwt(keys.account(), &keys.account_public_key(), &claims);
    assert!(matches!(for_account, Err(AuthError::InvalidKey(_))));
    let garbage = user_jwt(keys.account(), "Unot-a-key", &claims);
    assert!(matches!(garbage, Err(AuthError::InvalidKey(_))));
    let public_only = KeyPair::from_public_key(&keys.account_public_key()).unwrap();
    let unsigned = user_jwt(&public_only, &user.public_key(), &claims);
    assert!(matches!(unsigned, Err(AuthError::InvalidKey(_))));
}

#[test]
fn the_response_permission_is_written_in_nanoseconds_and_read_back() {
    let keys = SigningKeys::generate();
    let broker = broker_permissions();
    let subject = KeyPair::new_user().public_key();
    let token = user_jwt(keys.account(), &subject, &user(&broker, None)).unwrap();
    let (_, claims) = decode_verified(&token);
    assert_eq!(
        claims["nats"]["resp"],
        json!({"max": 1, "ttl": 120_000_000_000u64})
    );
    assert_eq!(claims["nats"]["pub"], json!({"deny": [">"]}));
    assert!(carries_permissions(&token, &broker));
    let wider = Permissions {
        responses: Some(Responses {
            max: 1,
            ttl: std::time::Duration::from_secs(60),
        }),
        ..broker.clone()
    };
    assert!(!carries_permissions(&token, &wider));
    assert!(!carries_permissions(&token, &Permissions::default()));
    assert!(!carries_permissions("garbage", &broker));
}
