//! Kubernetes resource quantities (`10Gi`, `500M`, `1.5Ti`), just enough to compare volume
//! sizes *by value*: the API server stores a quantity in its canonical form (`1.5Gi` comes back
//! as `1536Mi`), so two spellings of one size must compare equal, or every pass would see a
//! change that is none.

use std::cmp::Ordering;

/// A quantity as an exact fraction of bytes, `numerator / denominator` (no floating point:
/// `1.5Gi` and `1536Mi` are equal, not merely close).
#[derive(Debug, Clone, Copy)]
struct Bytes {
    numerator: u128,
    denominator: u128,
}

impl Bytes {
    /// A decimal number with an optional binary (`Ki`…`Ei`) or decimal (`k`, `M`…`E`) suffix.
    /// `None` for anything else (exponent forms such as `1e9` and milli-units included: a
    /// volume is never sized that way, and the CRD's pattern refuses them).
    fn parse(quantity: &str) -> Option<Bytes> {
        let quantity = quantity.trim();
        let split = quantity
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(quantity.len());
        let (number, suffix) = quantity.split_at(split);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let digits = format!("{whole}{fraction}");
        let multiplier: u128 = match suffix {
            "" => 1,
            "Ki" => 1 << 10,
            "Mi" => 1 << 20,
            "Gi" => 1 << 30,
            "Ti" => 1 << 40,
            "Pi" => 1 << 50,
            "Ei" => 1 << 60,
            "k" => 10u128.pow(3),
            "M" => 10u128.pow(6),
            "G" => 10u128.pow(9),
            "T" => 10u128.pow(12),
            "P" => 10u128.pow(15),
            "E" => 10u128.pow(18),
            _ => return None,
        };
        let numerator = digits.parse::<u128>().ok()?.checked_mul(multiplier)?;
        let denominator = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
        Some(Bytes {
            numerator,
            denominator,
        })
    }

    fn compare(self, other: Bytes) -> Option<Ordering> {
        let left = self.numerator.checked_mul(other.denominator)?;
        let right = other.numerator.checked_mul(self.denominator)?;
        Some(left.cmp(&right))
    }
}

/// The whole bytes of `quantity` (`1.5Ki` is 1536), or `None` when it does not parse or
/// exceeds `u64`.
pub fn bytes(quantity: &str) -> Option<u64> {
    let Bytes {
        numerator,
        denominator,
    } = Bytes::parse(quantity)?;
    u64::try_from(numerator / denominator).ok()
}

/// How the `desired` size compares with the `current` one, by value; `None` when either does
/// not parse (the API server validated both, so that is a spelling this module does not know).
pub fn compare_sizes(current: &str, desired: &str) -> Option<Ordering> {
    Bytes::parse(desired)?.compare(Bytes::parse(current)?)
}

/// Whether going from the `current` volume size to `desired` would shrink it. Sizes that do
/// not parse are not called a shrink (the API server validated both).
pub fn storage_shrink(current: &str, desired: &str) -> bool {
    compare_sizes(current, desired) == Some(Ordering::Less)
}

/// Whether `current` and `desired` are one size, however spelled (`1.5Gi` = `1536Mi`). Sizes
/// that do not parse are the same only when spelled the same.
pub fn same_size(current: &str, desired: &str) -> bool {
    current == desired || compare_sizes(current, desired) == Some(Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_across_suffixes() {
        assert!(storage_shrink("10Gi", "5Gi"));
        assert!(storage_shrink("10Gi", "10G"), "10G is less than 10Gi");
        assert!(storage_shrink("1Ti", "1000Gi"));
        assert!(!storage_shrink("10Gi", "10Gi"));
        assert!(!storage_shrink("10Gi", "20Gi"));
        assert!(!storage_shrink("1.5Gi", "1536Mi"));
        assert!(!storage_shrink("10Gi", "lots"));
        assert!(
            storage_shrink("1536Mi", "1.4Gi"),
            "a shrink is seen by value"
        );
    }

    #[test]
    fn one_size_however_spelled() {
        assert!(same_size("1536Mi", "1.5Gi"));
        assert!(same_size("1Gi", "1024Mi"));
        assert!(same_size("1500M", "1.5G"));
        assert!(same_size("1000", "1k"));
        assert!(!same_size("1Gi", "1G"));
        assert!(!same_size("1536Mi", "1.6Gi"));
        assert!(same_size("odd", "odd") && !same_size("odd", "1Gi"));
        assert_eq!(compare_sizes("1Ei", "1024Pi"), Some(Ordering::Equal));
        assert_eq!(compare_sizes(".", "1Gi"), None);
    }
}
