//! Durations as written in manifests: `30s`, `15m`, `1h30m`, `7d`; `0` means none.

use std::time::Duration;

/// The schema pattern of a duration field.
pub const PATTERN: &str = r"^(0|([0-9]+(s|m|h|d))+)$";

/// Parses a duration; `Ok(None)` for `0` (no expiry).
pub fn parse(text: &str) -> Result<Option<Duration>, String> {
    if text == "0" {
        return Ok(None);
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {c:?} (use s, m, h, d)"
                ))
            }
        };
        let value: u64 = number
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: a number must precede {c:?}"))?;
        total = value
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| format!("invalid duration {text:?}: too long"))?;
        number.clear();
    }
    if !number.is_empty() || text.is_empty() {
        return Err(format!(
            "invalid duration {text:?}: expected e.g. 30s, 15m, 1h30m, 7d or 0"
        ));
    }
    Ok((total > 0).then(|| Duration::from_secs(total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_manifest_durations() {
        assert_eq!(parse("0").unwrap(), None);
        assert_eq!(parse("90s").unwrap(), Some(Duration::from_secs(90)));
        assert_eq!(parse("1h30m").unwrap(), Some(Duration::from_secs(5400)));
        assert_eq!(parse("7d").unwrap(), Some(Duration::from_secs(604_800)));
        for bad in ["", "1", "h", "1x", "1.5h", "-1h"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
