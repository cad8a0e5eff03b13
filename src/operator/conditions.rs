//! Status conditions with stable transition times: a condition's `lastTransitionTime` moves
//! only when its status changes, so rewriting the same state changes nothing (and a status that
//! did not change is never written).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Sets the condition of `type_` in `conditions`. Keeps the previous transition time when the
/// status is unchanged; reason, message and observedGeneration always follow the new values.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    let previous = conditions.iter().position(|c| c.type_ == type_);
    let last_transition_time = match previous.map(|i| &conditions[i]) {
        Some(old) if old.status == status => old.last_transition_time.clone(),
        _ => Time(now),
    };
    let condition = Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    };
    match previous {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of `type_` is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_with_the_status() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let mut conditions = Vec::new();
        set(
            &mut conditions,
            "Ready",
            false,
            "BrokerNotReady",
            "waiting",
            Some(1),
            t0,
        );
        set(
            &mut conditions,
            "Ready",
            false,
            "BrokerNotFound",
            "gone",
            Some(2),
            t1,
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, Time(t0));
        assert_eq!(
            (
                conditions[0].reason.as_str(),
                conditions[0].observed_generation
            ),
            ("BrokerNotFound", Some(2))
        );
        set(&mut conditions, "Ready", true, "Created", "ok", Some(2), t1);
        assert_eq!(conditions[0].last_transition_time, Time(t1));
        assert!(is_true(&conditions, "Ready"));
    }
}
