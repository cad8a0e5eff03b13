//! Kubernetes resource quantities (`10Gi`, `500M`, `1.5Ti`), just enough to compare volume sizes.

/// Bytes in `quantity`: a decimal number with an optional binary (`Ki`…`Ei`) or decimal
/// (`k`, `M`…`E`) suffix. `None` for anything else (exponent forms such as `1e9` included).
fn bytes(quantity: &str) -> Option<f64> {
    let quantity = quantity.trim();
    let split = quantity
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        _ => return None,
    };
    Some(number * multiplier)
}

/// Whether going from the `current` volume size to `desired` would shrink it. Sizes that do
/// not parse are not called a shrink (the API server validated both).
pub fn storage_shrink(current: &str, desired: &str) -> bool {
    matches!((bytes(current), bytes(desired)), (Some(current), Some(desired)) if desired < current)
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
    }
}
