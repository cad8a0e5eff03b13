//! Wall-clock helpers. The wire speaks Unix seconds; the engine keeps milliseconds so that
//! leases, delays and long-poll deadlines are precise.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Whole seconds for the wire, from milliseconds.
pub fn ms_to_secs(ms: u64) -> u64 {
    ms / 1000
}

/// Milliseconds from seconds given on the wire, saturating instead of overflowing.
pub fn secs_to_ms(secs: u64) -> u64 {
    secs.saturating_mul(1000)
}
