//! The nats-server side: trusting the Broker's operator and knowing its accounts.

use super::{account_jwt, operator_jwt, Account, SigningKeys};

/// The block to append to `nats-server.conf` to put the server in operator mode:
///
/// ```text
/// operator: "<operator JWT>"
/// system_account: "<system account public key>"
/// resolver: MEMORY
/// resolver_preload: {
///   "<system account public key>": "<system account JWT>"
///   "<application account public key>": "<application account JWT>"
/// }
/// ```
///
/// - `operator` accepts the JWT inline (or a file path); the server trusts accounts signed
///   by this operator and no other.
/// - `resolver: MEMORY` with `resolver_preload` is the static resolver: the account JWTs are
///   in the file and never change while the server runs. That suffices because the set of
///   accounts is fixed (system + `mq9`); users are not listed at all (any user JWT signed by
///   the `mq9` account is accepted, see [`super`]).
/// - With operator mode on, nats-server refuses every client that has no valid user JWT, and
///   the config may not also contain `accounts` or `authorization` blocks.
///
/// The block contains public claims only (no seed), so it can live in a ConfigMap. It is a
/// pure function of `keys` (same keys, same text), so a checksum of the config changes only
/// when the keys do.
pub fn nats_auth_config(keys: &SigningKeys) -> String {
    let system = keys.system_account_public_key();
    let application = keys.account_public_key();
    format!(
        "operator: \"{operator}\"\n\
         system_account: \"{system}\"\n\
         resolver: MEMORY\n\
         resolver_preload: {{\n  \
           \"{system}\": \"{system_jwt}\"\n  \
           \"{application}\": \"{application_jwt}\"\n\
         }}\n",
        operator = operator_jwt(keys),
        system_jwt = account_jwt(keys, Account::System),
        application_jwt = account_jwt(keys, Account::Application),
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
        let config = nats_auth_config(&keys);
        let lines: Vec<&str> = config.lines().collect();
        assert_eq!(lines.len(), 7, "{lines:?}");
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
        assert_eq!(lines[2], "resolver: MEMORY");
        assert_eq!(lines[3], "resolver_preload: {");
        for (line, subject) in [
            (lines[4], keys.system_account_public_key()),
            (lines[5], keys.account_public_key()),
        ] {
            let (key, jwt) = line.trim().split_once(": ").unwrap();
            assert_eq!(key.trim_matches('"'), subject);
            let (_, claims) = decode_verified(jwt.trim_matches('"'));
            assert_eq!(claims["sub"], subject);
            assert_eq!(claims["iss"], keys.operator_public_key());
        }
        assert_eq!(lines[6], "}");
        for pair in [keys.operator(), keys.system_account(), keys.account()] {
            assert!(!config.contains(&seed_of(pair)), "no seed in the config");
        }
        assert_eq!(nats_auth_config(&keys), config, "same keys, same config");
    }
}
