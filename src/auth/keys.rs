//! The three signing identities of one Broker (operator, system account, broker account), and
//! the tenant accounts derived from them.

use nkeys::{KeyPair, KeyPairType};
use serde::{Deserialize, Serialize};

use super::AuthError;

/// The seeds a Broker's whole trust chain hangs from.
///
/// - the **operator** key signs the operator JWT (self-signed) and both account JWTs;
/// - the **system account** key identifies nats-server's own account (`$SYS` traffic,
///   server events); nats-server in operator mode requires one, nobody connects to it here;
/// - the **broker account** key (account `mq9`) signs the broker's and the operator's user
///   JWTs;
/// - each Kubernetes namespace with Mailboxes has a **tenant account**
///   ([`SigningKeys::tenant_account`]) whose key signs the users of its Mailboxes. That key is
///   *derived* from the operator seed and the namespace, so nothing new is ever stored.
///
/// Generate them once ([`SigningKeys::generate`]) and store them ([`Serialize`]: a JSON
/// object `{"operator_seed", "system_account_seed", "account_seed"}`) in the Broker's Secret.
/// Never regenerate: a new account key makes nats-server refuse every `.creds` file minted
/// with the old one. Deserializing checks that each seed decodes and is of the right kind,
/// so a value of this type always signs successfully.
///
/// `Debug` prints the public keys only.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "StoredSeeds", into = "StoredSeeds")]
pub struct SigningKeys {
    operator: KeyPair,
    system_account: KeyPair,
    account: KeyPair,
}

/// The stored form: seeds as text, as `nsc` and the nats tools print them.
#[derive(Serialize, Deserialize)]
struct StoredSeeds {
    operator_seed: String,
    system_account_seed: String,
    account_seed: String,
}

impl SigningKeys {
    /// Fresh random keys (ed25519 from the OS RNG).
    pub fn generate() -> SigningKeys {
        SigningKeys {
            operator: KeyPair::new_operator(),
            system_account: KeyPair::new_account(),
            account: KeyPair::new_account(),
        }
    }

    /// Keys from their seeds (`SO…`, `SA…`, `SA…`), e.g. read back from separate Secret keys.
    pub fn from_seeds(
        operator_seed: &str,
        system_account_seed: &str,
        account_seed: &str,
    ) -> Result<SigningKeys, AuthError> {
        Ok(SigningKeys {
            operator: from_seed("operator", operator_seed, KeyPairType::Operator)?,
            system_account: from_seed("system account", system_account_seed, KeyPairType::Account)?,
            account: from_seed("account", account_seed, KeyPairType::Account)?,
        })
    }

    /// The operator's public key (`O…`): the operator JWT's issuer and subject.
    pub fn operator_public_key(&self) -> String {
        self.operator.public_key()
    }

    /// The system account's public key (`A…`): nats-server's `system_account`.
    pub fn system_account_public_key(&self) -> String {
        self.system_account.public_key()
    }

    /// The broker account's public key (`A…`): the issuer of the broker's and the operator's
    /// user JWTs, and the exporter of the mq9 service.
    pub fn account_public_key(&self) -> String {
        self.account.public_key()
    }

    /// The broker account's key pair, the signer of the broker's and the operator's users.
    pub fn account(&self) -> &KeyPair {
        &self.account
    }

    /// The tenant account of `namespace`: an account key derived as
    /// HMAC-SHA256(operator seed, "mq9 tenant account\0" ‖ namespace), the 32 bytes used as the
    /// ed25519 seed. Deterministic (the same Broker and namespace give the same account after
    /// any restart, without storing it), distinct per namespace and per Broker, and not
    /// computable without the operator seed.
    pub fn tenant_account(&self, namespace: &str) -> KeyPair {
        let (_, operator_seed) = nkeys::decode_seed(&seed_of(&self.operator))
            .expect("the operator seed of SigningKeys decodes");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &operator_seed);
        let message = [TENANT_LABEL, namespace.as_bytes()].concat();
        let tag = ring::hmac::sign(&key, &message);
        let raw: [u8; 32] = tag
            .as_ref()
            .try_into()
            .expect("an HMAC-SHA256 tag is 32 bytes");
        KeyPair::new_from_raw(KeyPairType::Account, raw).expect("any 32 bytes are an ed25519 seed")
    }

    /// The system account's key pair, the signer of the operator's resolver-push user.
    pub fn system_account(&self) -> &KeyPair {
        &self.system_account
    }

    pub(super) fn operator(&self) -> &KeyPair {
        &self.operator
    }
}

/// Domain separation for [`SigningKeys::tenant_account`]: the HMAC input can never collide with
/// another use of the operator seed.
const TENANT_LABEL: &[u8] = b"mq9 tenant account\0";

fn from_seed(which: &'static str, seed: &str, kind: KeyPairType) -> Result<KeyPair, AuthError> {
    let invalid = |reason: String| AuthError::InvalidSeed { which, reason };
    let pair = KeyPair::from_seed(seed.trim()).map_err(|e| invalid(e.to_string()))?;
    if pair.key_pair_type() != kind {
        return Err(invalid(format!(
            "expected a {kind:?} seed, got a {:?} seed",
            pair.key_pair_type()
        )));
    }
    Ok(pair)
}

impl TryFrom<StoredSeeds> for SigningKeys {
    type Error = AuthError;

    fn try_from(stored: StoredSeeds) -> Result<Self, AuthError> {
        SigningKeys::from_seeds(
            &stored.operator_seed,
            &stored.system_account_seed,
            &stored.account_seed,
        )
    }
}

impl From<SigningKeys> for StoredSeeds {
    fn from(keys: SigningKeys) -> StoredSeeds {
        StoredSeeds {
            operator_seed: seed_of(&keys.operator),
            system_account_seed: seed_of(&keys.system_account),
            account_seed: seed_of(&keys.account),
        }
    }
}

/// The seed of a pair built by this module: always present (built from a seed or generated).
pub(super) fn seed_of(pair: &KeyPair) -> String {
    pair.seed()
        .expect("key pairs of this module are built from seeds, so they have one")
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("operator", &self.operator_public_key())
            .field("system_account", &self.system_account_public_key())
            .field("account", &self.account_public_key())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_right_kinds_and_are_distinct() {
        let keys = SigningKeys::generate();
        assert!(keys.operator_public_key().starts_with('O'));
        assert!(keys.system_account_public_key().starts_with('A'));
        assert!(keys.account_public_key().starts_with('A'));
        assert_ne!(keys.system_account_public_key(), keys.account_public_key());
    }

    #[test]
    fn serde_round_trip_keeps_the_same_identities() {
        let keys = SigningKeys::generate();
        let stored = serde_json::to_value(&keys).unwrap();
        let fields: Vec<&str> = stored
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            fields,
            ["operator_seed", "system_account_seed", "account_seed"]
        );
        assert!(stored["operator_seed"].as_str().unwrap().starts_with("SO"));
        assert!(stored["account_seed"].as_str().unwrap().starts_with("SA"));
        let back: SigningKeys = serde_json::from_value(stored).unwrap();
        assert_eq!(back.operator_public_key(), keys.operator_public_key());
        assert_eq!(
            back.system_account_public_key(),
            keys.system_account_public_key()
        );
        assert_eq!(back.account_public_key(), keys.account_public_key());
    }

    #[test]
    fn seeds_of_the_wrong_kind_or_garbage_are_refused() {
        let keys = SigningKeys::generate();
        let account = seed_of(keys.account());
        let operator = seed_of(keys.operator());
        let swapped = SigningKeys::from_seeds(&account, &account, &account).unwrap_err();
        assert!(matches!(
            swapped,
            AuthError::InvalidSeed {
                which: "operator",
                ..
            }
        ));
        let user = KeyPair::new_user().seed().unwrap();
        let err = SigningKeys::from_seeds(&operator, &account, &user).unwrap_err();
        assert!(matches!(
            err,
            AuthError::InvalidSeed {
                which: "account",
                ..
            }
        ));
        let json = serde_json::json!({
            "operator_seed": "SOnotaseed", "system_account_seed": account, "account_seed": account,
        });
        assert!(serde_json::from_value::<SigningKeys>(json).is_err());
    }

    #[test]
    fn tenant_accounts_are_stable_distinct_and_per_broker() {
        let keys = SigningKeys::generate();
        let a = keys.tenant_account("team-a");
        assert_eq!(a.key_pair_type(), KeyPairType::Account);
        assert!(a.public_key().starts_with('A'));
        let reloaded: SigningKeys =
            serde_json::from_value(serde_json::to_value(&keys).unwrap()).unwrap();
        assert_eq!(
            reloaded.tenant_account("team-a").public_key(),
            a.public_key(),
            "derived again after a restart"
        );
        let b = keys.tenant_account("team-b");
        assert_ne!(a.public_key(), b.public_key());
        for other in [keys.account_public_key(), keys.system_account_public_key()] {
            assert_ne!(a.public_key(), other);
        }
        let elsewhere = SigningKeys::generate().tenant_account("team-a");
        assert_ne!(a.public_key(), elsewhere.public_key(), "another Broker");
        // It signs (it has a seed), so it can mint its namespace's users.
        assert!(a.sign(b"x").is_ok());
    }

    #[test]
    fn debug_shows_public_keys_only() {
        let keys = SigningKeys::generate();
        let printed = format!("{keys:?}");
        assert!(printed.contains(&keys.account_public_key()));
        assert!(!printed.contains(&seed_of(keys.account())));
        assert!(!printed.contains(&seed_of(keys.operator())));
    }
}
