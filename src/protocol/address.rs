//! Mail addresses: `^[a-z0-9]+(\.[a-z0-9]+)*$`, 1 to 128 characters.

use rand::RngCore;

use super::ProtoError;

/// The longest address the protocol allows.
pub const MAX_ADDRESS_LEN: usize = 128;

/// Checks the address grammar of protocol.md §2.
pub fn validate(address: &str) -> Result<(), ProtoError> {
    if address.is_empty() || address.len() > MAX_ADDRESS_LEN {
        return Err(ProtoError::bad_request(format!(
            "invalid mail address: must be 1 to {MAX_ADDRESS_LEN} characters"
        )));
    }
    let tokens_ok = address.split('.').all(|token| {
        !token.is_empty()
            && token
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    if !tokens_ok {
        return Err(ProtoError::bad_request(
            "invalid mail address: only a-z and 0-9 in dot-separated tokens are allowed",
        ));
    }
    Ok(())
}

/// A fresh unguessable address: 128 bits from a cryptographic RNG (rand's ChaCha-based thread RNG,
/// seeded by the operating system),
/// lowercase base32 without padding (26 characters).
pub fn generate() -> String {
    let mut bits = [0u8; 16];
    rand::rng().fill_bytes(&mut bits);
    data_encoding::BASE32_NOPAD
        .encode(&bits)
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        for ok in ["a", "agent.42", "x1.y2.z3", &"a".repeat(128)] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "A",
            "a..b",
            ".a",
            "a.",
            "a-b",
            "a b",
            "a*",
            "a>",
            &"a".repeat(129),
        ] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_addresses_are_valid_distinct_and_128_bits() {
        let a = generate();
        let b = generate();
        assert_eq!(a.len(), 26);
        assert!(validate(&a).is_ok());
        assert_ne!(a, b);
    }
}
