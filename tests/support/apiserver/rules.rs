//! Per-kind rules of a real API server that the operator once broke on, so its tests meet them
//! here too: resource quantities are stored in their canonical form (`1.5Gi` is stored, and
//! read back, as `1536Mi`), and a StatefulSet's spec may change only in the fields the real
//! validation allows (anything else is the real server's 422).

use serde_json::Value;

use super::store::{ApiError, Key};

/// The StatefulSet spec fields an update may change (apps/v1 validation, Kubernetes 1.33).
const STATEFULSET_MUTABLE: [&str; 6] = [
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

/// Applies the rules to an object about to be stored under `key`: quantities made canonical
/// (in place), then an update (`old` is the stored object) refused when it changes what its
/// kind keeps immutable.
pub fn admit(key: &Key, old: Option<&Value>, new: &mut Value) -> Result<(), ApiError> {
    canonical_quantities(new);
    match old {
        Some(old) if key.resource == "apps/v1/statefulsets" => statefulset_update(key, old, new),
        _ => Ok(()),
    }
}

fn statefulset_update(key: &Key, old: &Value, new: &Value) -> Result<(), ApiError> {
    let fixed = |object: &Value| {
        let mut spec = object["spec"].as_object().cloned().unwrap_or_default();
        for field in STATEFULSET_MUTABLE {
            spec.remove(field);
        }
        spec
    };
    if fixed(old) == fixed(new) {
        return Ok(());
    }
    Err(ApiError::new(
        422,
        "Invalid",
        format!(
            "StatefulSet.apps \"{}\" is invalid: spec: Forbidden: updates to statefulset spec for \
             fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', \
             'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            key.name
        ),
    ))
}

/// Rewrites every quantity in `value` in canonical form. The fake knows no schemas, so a
/// quantity is a string in a map under `requests` or `limits` (ResourceRequirements and
/// VolumeResourceRequirements: containers, claim templates, claims), which covers what the
/// operator writes.
fn canonical_quantities(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                match (key.as_str(), item) {
                    ("requests" | "limits", Value::Object(quantities)) => {
                        for quantity in quantities.values_mut() {
                            if let Some(canonical) = quantity.as_str().and_then(canonical) {
                                *quantity = Value::String(canonical);
                            }
                        }
                    }
                    (_, item) => canonical_quantities(item),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(canonical_quantities),
        _ => {}
    }
}

/// The canonical form of a quantity, as Kubernetes writes it: binary suffixes stay binary with
/// the largest suffix that keeps the number whole (`1.5Gi` → `1536Mi`, `2048Mi` → `2Gi`);
/// decimal ones (and none) use the largest power of 1000 that does (`1.5G` → `1500M`,
/// `0.5` → `500m`). `None` for what this fake does not model (signs, exponents, precision below
/// a milli-unit): such a quantity is stored as sent. Written apart from the operator's own
/// quantity parsing on purpose: the fake models the API server, and sharing the code under test
/// would hide that code's mistakes from the tests.
pub fn canonical(quantity: &str) -> Option<String> {
    let split = quantity
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(split);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let mantissa: u128 = format!("{whole}{fraction}").parse().ok()?;
    let scale = 10u128.checked_pow(fraction.len() as u32)?;
    const BINARY: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    const DECIMAL: [&str; 8] = ["m", "", "k", "M", "G", "T", "P", "E"];
    if let Some(power) = BINARY.iter().position(|s| *s == suffix && !s.is_empty()) {
        let bytes = mantissa.checked_mul(1u128 << (10 * power))?;
        if bytes.is_multiple_of(scale) {
            let bytes = bytes / scale;
            let largest = (0..BINARY.len())
                .rev()
                .find(|p| bytes.is_multiple_of(1u128 << (10 * p)))
                .unwrap_or(0);
            return Some(format!("{}{}", bytes >> (10 * largest), BINARY[largest]));
        }
        return decimal(
            bytes.checked_mul(1000)? / scale,
            (bytes * 1000).is_multiple_of(scale),
            &DECIMAL,
        );
    }
    let power = DECIMAL.iter().position(|s| *s == suffix)?;
    // In thousandths of the unit ("m" is power 0).
    let millis = mantissa.checked_mul(1000u128.pow(power as u32))?;
    decimal(millis / scale, millis.is_multiple_of(scale), &DECIMAL)
}

/// `millis` thousandths with the largest decimal suffix that keeps it whole; `None` unless
/// `exact`.
fn decimal(millis: u128, exact: bool, suffixes: &[&str; 8]) -> Option<String> {
    if !exact {
        return None;
    }
    if millis == 0 {
        return Some("0".to_owned());
    }
    let largest = (0..suffixes.len())
        .rev()
        .find(|p| millis.is_multiple_of(1000u128.pow(*p as u32)))
        .unwrap_or(0);
    Some(format!(
        "{}{}",
        millis / 1000u128.pow(largest as u32),
        suffixes[largest]
    ))
}
