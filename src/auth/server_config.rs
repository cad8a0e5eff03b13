//! The nats-server side: trusting the Broker's operator and knowing its accounts.

use super::{account_jwt, operator_jwt, Account, SigningKeys};

/// How often the account resolvers of a cluster's servers compare their JWTs and pull what
/// they miss (a push reaches every server at once; this repairs a server that was down).
const RESOLVER_SYNC_INTERVAL: &str = "2m";

/// The block to append to `nats-server.conf` to put the server in operator mode:
///
/// ```text
/// operator: "<operator JWT>"
/// system_account: "<system account public key>"
/// resolver: {
///   type: full
///   dir: "<resolver_dir>"
///   allow_delete: false
///   interval: "2m"
/// }
/// resolver_preload: {
///   "<system account public key>": "<system account JWT>"
///   "<broker account public key>": "<broker account JWT>"
/// }
/// ```
///
/// - `operator` accepts the JWT inline (or a file path); the server trusts accounts signed
///   by this operator and no other.
/// - The *full* resolver keeps account JWTs as files in `resolver_dir` (on the Broker's
///   volume: they survive restarts) and takes new and updated ones at run time from a
///   system-account user on `$SYS.REQ.CLAIMS.UPDATE`: that is how the operator adds a tenant
///   account for each namespace with Mailboxes and pushes its revocations, without a restart.
///   `allow_delete: false`: accounts are never removed (a namespace that comes back finds its
///   account). The memory resolver could neither add accounts nor be updated at run time.
/// - `resolver_preload` writes the two fixed accounts into the resolver's directory at start
///   (nats-server 2.15 accepts preloads for this writable resolver type).
/// - Users are not listed at all: any user JWT signed by a known account is accepted (see
///   [`super`]), unless that account's JWT revokes its key. `broker_users_revoked_at` revokes
///   every user of the broker account issued at or before that second (see [`Account`]);
///   `broker_jetstream` enables JetStream for the broker account (replicated brokers).
/// - With operator mode on, nats-server refuses every client that has no valid user JWT, and
///   the config may not also contain `accounts` or `authorization` blocks.
///
/// The block contains public claims only (no seed), so it can live in a ConfigMap. It is a
/// pure function of `keys` and the directory (same keys, same text), so a checksum of the
/// config changes only when they do.
pub fn nats_auth_config(
    keys: &SigningKeys,
    resolver_dir: &str,
    broker_users_revoked_at: Option<u64>,
    broker_jetstream: bool,
) -> String {
    let broker_account = Account::Broker {
        users_revoked_at: broker_users_revoked_at,
        jetstream: broker_jetstream,
    };
    let system = keys.system_account_public_key();
    let broker = keys.account_public_key();
    format!(
        "operator: \"{operator}\"\n\
         system_account: \"{system}\"\n\
         resolver: {{\n  \
           type: full\n  \
           dir: {resolver_dir:?}\n  \
           allow_delete: false\n  \
           interval: \"{RESOLVER_SYNC_INTERVAL}\"\n\
         }}\n\
         resolver_preload: {{\n  \
           \"{system}\": \"{system_jwt}\"\n  \
           \"{broker}\": \"{broker_jwt}\"\n\
         }}\n",
        operator = operator_jwt(keys),
        system_jwt = account_jwt(keys, Account::System),
        broker_jwt = account_jwt(keys, broker_account),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::tests::decode_verified;
    use crate::auth::keys::seed_of;

    #[test]
    fn the_block_names_the_operator_and_preloads_both_accounts() {
        let keys = SigningKeys::generate();
        let config = nats_auth_config(&keys, "/data/accounts", None, false);
        let lines: Vec<&str> = config.lines().collect();
        assert_eq!(lines.len(), 12, "{lines:?}");
        let value = |line: &str| {
            line.split_once(": ")
                .unwrap()
                .1
                .trim_matches('"')
                .to_owned()
        };
        let (_, operator) = decode_verified(&value(lines[0]));
        assert_eq!(operator["sub"], keys.operator_public_key());
        assert_eq!(
            lines[1],
            format!("system_account: \"{}\"", keys.system_account_public_key())
        );
        assert_eq!(
            lines[2..9],
            [
                "resolver: {",
                "  type: full",
                "  dir: \"/data/accounts\"",
                "  allow_delete: false",
                "  interval: \"2m\"",
                "}",
                "resolver_preload: {",
            ]
        );
        for (line, subject) in [
            (lines[9], keys.system_account_public_key()),
            (lines[10], keys.account_public_key()),
        ] {
            let (key, jwt) = line.trim().split_once(": ").unwrap();
            assert_eq!(key.trim_matches('"'), subject);
            let (_, claims) = decode_verified(jwt.trim_matches('"'));
            assert_eq!(claims["sub"], subject);
            assert_eq!(claims["iss"], keys.operator_public_key());
        }
        assert_eq!(lines[11], "}");
        let cut_off = nats_auth_config(&keys, "/data/accounts", Some(5), false);
        let broker_line = cut_off.lines().nth(10).unwrap();
        let (_, jwt) = broker_line.trim().split_once(": ").unwrap();
        let (_, claims) = decode_verified(jwt.trim_matches('"'));
        assert_eq!(claims["nats"]["revocations"]["*"], 5);
        for pair in [keys.operator(), keys.system_account(), keys.account()] {
            assert!(!config.contains(&seed_of(pair)), "no seed in the config");
        }
        assert_eq!(
            nats_auth_config(&keys, "/data/accounts", None, false),
            config,
            "same keys, same config"
        );
    }
}
