//! `.creds` files: what a NATS client needs to log in as a user.
//!
//! A credentials file holds the user JWT (what the user may do, signed by the account) and
//! the user's nkey seed (proof of being that user: the client signs the server's connect
//! nonce with it). The layout is the one `nsc` and `nats-io/jwt`'s `FormatUserConfig`
//! write, which every NATS client parses (async-nats:
//! `ConnectOptions::with_credentials_file` / `with_credentials`; nats.py: `user_credentials`;
//! nats.go: `nats.UserCredentials`): each value between a `-----BEGIN …-----` line and an
//! `------END …------` line.

use nkeys::KeyPair;

use super::keys::seed_of;
use super::{user_jwt, AuthError, UserClaims};

/// A freshly minted user: everything the operator writes into a Mailbox's Secret.
///
/// `jwt` and `seed` are also inside `creds_file_text`; they are kept apart for callers that
/// store them separately. `seed` is the secret half: `Debug` prints the public key only.
#[derive(Clone)]
pub struct Credentials {
    /// The signed user JWT.
    pub jwt: String,
    /// The user's nkey seed (`SU…`).
    pub seed: String,
    /// The `.creds` file (the `user.creds` Secret key).
    pub creds_file_text: String,
    /// The user's public nkey (`U…`), the JWT's subject: safe to log.
    pub public_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

/// A new user key pair and its JWT signed by `account` (an account key pair with its seed:
/// [`super::SigningKeys::account`] or a tenant account), as a `.creds` file.
///
/// `user.name` is the JWT's `name` claim, visible in nats-server's connection monitoring and
/// logs: use something like the Mailbox's `namespace/name`, never the mail address (knowing
/// an address is enough to read the mailbox on a broker without auth). `user.expires_at`
/// should be the mailbox's own expiry, so that the credentials die with it. Each call
/// generates a new identity: minting again for the same mailbox (e.g. after its permissions
/// change) yields new, independent credentials; ending the old ones before their expiry takes
/// a revocation of their public key in the account ([`super::Tenant::revocations`]).
///
/// # Panics
/// When `account` is not an account key pair with a seed (a programming error: every caller
/// passes a key from [`super::SigningKeys`]).
pub fn mint_user(account: &KeyPair, user: &UserClaims<'_>) -> Credentials {
    let pair = KeyPair::new_user();
    let public_key = pair.public_key();
    let jwt = user_jwt(account, &public_key, user)
        .expect("an account key with a seed signs a fresh user key");
    let user = pair;
    let seed = seed_of(&user);
    Credentials {
        creds_file_text: creds_file(&jwt, &seed)
            .expect("a freshly generated user seed is a user seed"),
        jwt,
        seed,
        public_key,
    }
}

/// The `.creds` text for a user JWT and its seed, byte for byte as `nsc` writes it.
/// Refuses a seed that is not a user seed (`SU…`), as `nats-io/jwt` does: an operator or
/// account seed in a file handed to an agent would give away far more than a login.
pub fn creds_file(jwt: &str, seed: &str) -> Result<String, AuthError> {
    if !seed.starts_with("SU") {
        return Err(AuthError::InvalidSeed {
            which: "user",
            reason: "a credentials file holds a user seed (SU…)".into(),
        });
    }
    Ok(format!(
        "-----BEGIN NATS USER JWT-----\n\
         {jwt}\n\
         ------END NATS USER JWT------\n\
         \n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\
         \n\
         -----BEGIN USER NKEY SEED-----\n\
         {seed}\n\
         ------END USER NKEY SEED------\n\
         \n\
         *************************************************************\n"
    ))
}

/// The user JWT inside a `.creds` text (the line after `-----BEGIN NATS USER JWT-----`).
pub fn creds_jwt(creds: &str) -> Option<&str> {
    let mut lines = creds.lines();
    lines.find(|line| line.trim() == "-----BEGIN NATS USER JWT-----")?;
    lines.next().map(str::trim).filter(|jwt| !jwt.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::tests::decode_verified;
    use crate::auth::{mailbox_permissions, Permissions, SigningKeys};

    fn user<'a>(permissions: &'a Permissions, expires_at: Option<u64>) -> UserClaims<'a> {
        UserClaims {
            name: "ns/box",
            permissions,
            tags: &[],
            expires_at,
        }
    }

    #[test]
    fn creds_file_has_the_nsc_layout() {
        let text = creds_file("eyJ.claims.sig", "SUSEED").unwrap();
        let expected =
            "-----BEGIN NATS USER JWT-----\neyJ.claims.sig\n------END NATS USER JWT------\n\n\
            ************************* IMPORTANT *************************\n\
            NKEY Seed printed below can be used to sign and prove identity.\n\
            NKEYs are sensitive and should be treated as secrets.\n\n\
            -----BEGIN USER NKEY SEED-----\nSUSEED\n------END USER NKEY SEED------\n\n\
            *************************************************************\n";
        assert_eq!(text, expected);
        assert!(creds_file("eyJ.claims.sig", "SAACCOUNTSEED").is_err());
    }

    #[test]
    fn minted_credentials_are_consistent_and_parse_as_nats_clients_parse_them() {
        let keys = SigningKeys::generate();
        let permissions = mailbox_permissions("box1", &[], &[], &[]).unwrap();
        let minted = mint_user(keys.account(), &user(&permissions, Some(4_000_000_000)));
        // The seed is the subject's.
        let pair = KeyPair::from_seed(&minted.seed).unwrap();
        assert_eq!(pair.public_key(), minted.public_key);
        let (_, claims) = decode_verified(&minted.jwt);
        assert_eq!(claims["sub"], minted.public_key);
        assert_eq!(claims["iss"], keys.account_public_key());
        assert_eq!(claims["exp"], 4_000_000_000u64);
        // async-nats reads it (it would fail on a missing JWT or an undecodable seed).
        async_nats::ConnectOptions::with_credentials(&minted.creds_file_text)
            .expect("async-nats parses the creds text");
        // The blocks hold exactly the JWT and the seed, in that order.
        let blocks: Vec<&str> = minted
            .creds_file_text
            .lines()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0].starts_with("-----BEGIN"))
            .map(|w| w[1])
            .collect();
        assert_eq!(blocks, [minted.jwt.as_str(), minted.seed.as_str()]);
        assert_eq!(
            creds_jwt(&minted.creds_file_text),
            Some(minted.jwt.as_str())
        );
        assert_eq!(creds_jwt("no creds here"), None);
        // Each mint is a new identity.
        let again = mint_user(keys.account(), &user(&permissions, Some(4_000_000_000)));
        assert_ne!(again.public_key, minted.public_key);
    }

    #[test]
    fn debug_hides_the_seed_and_jwt() {
        let keys = SigningKeys::generate();
        let minted = mint_user(keys.account(), &user(&Permissions::default(), None));
        let printed = format!("{minted:?}");
        assert!(printed.contains(&minted.public_key));
        assert!(!printed.contains(&minted.seed) && !printed.contains(&minted.jwt));
    }
}
