//! Leader election on a `coordination.k8s.io/v1` Lease, so that two operator replicas never
//! both act. The leader renews the Lease every `renew`; a candidate takes it over only when the
//! holder has not renewed it for `duration`. A leader that cannot renew in time stops acting
//! (the process exits and restarts as a candidate).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::Api;

/// What a candidate does with the Lease it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// It holds the Lease: renew it.
    Renew,
    /// Nobody holds it, or the holder let it lapse: take it over.
    TakeOver,
    /// Someone else holds it.
    Wait,
}

/// Decides from the Lease's spec, at `now`.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp, duration: Duration) -> Decision {
    let Some(spec) = spec else {
        return Decision::TakeOver;
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == me => Decision::Renew,
        None | Some("") => Decision::TakeOver,
        Some(_) => {
            let renewed = spec
                .renew_time
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(Timestamp::UNIX_EPOCH);
            let lease = spec
                .lease_duration_seconds
                .map_or(duration.as_secs() as i64, i64::from);
            if renewed.as_second().saturating_add(lease) < now.as_second() {
                Decision::TakeOver
            } else {
                Decision::Wait
            }
        }
    }
}

pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    renew: Duration,
}

impl LeaderElection {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> LeaderElection {
        LeaderElection {
            api,
            name: name.into(),
            identity: identity.into(),
            duration,
            renew: duration / 3,
        }
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election: Lease not reachable"),
            }
            tokio::time::sleep(self.renew).await;
        }
    }

    /// Keeps renewing; completes when the Lease is lost (another replica took it, or it could
    /// not be renewed within its duration).
    pub async fn hold(&self) {
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.renew).await;
            match self.try_acquire().await {
                Ok(true) => renewed = tokio::time::Instant::now(),
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "leader election: renewal failed");
                    if renewed.elapsed() >= self.duration {
                        return;
                    }
                }
            }
        }
    }

    /// One attempt to take or renew the Lease.
    async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let existing = self.api.get_opt(&self.name).await?;
        let decision = decide(
            existing.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            now,
            self.duration,
        );
        if decision == Decision::Wait {
            return Ok(false);
        }
        let previous = existing
            .as_ref()
            .and_then(|l| l.spec.clone())
            .unwrap_or_default();
        let spec = LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs() as i32),
            renew_time: Some(MicroTime(now)),
            acquire_time: match decision {
                Decision::Renew => previous.acquire_time.clone(),
                _ => Some(MicroTime(now)),
            },
            lease_transitions: match decision {
                Decision::TakeOver if existing.is_some() => {
                    Some(previous.lease_transitions.unwrap_or(0) + 1)
                }
                _ => previous.lease_transitions.or(Some(0)),
            },
            ..previous
        };
        let result = match existing {
            Some(mut lease) => {
                lease.spec = Some(spec);
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
        };
        match result {
            Ok(_) => Ok(true),
            // Someone else wrote the Lease between our read and write: they won this round.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }
    }

    #[test]
    fn only_a_lapsed_lease_changes_hands() {
        let now = Timestamp::from_second(100).unwrap();
        let d = Duration::from_secs(15);
        assert_eq!(decide(None, "a", now, d), Decision::TakeOver);
        assert_eq!(decide(Some(&spec("a", 99)), "a", now, d), Decision::Renew);
        assert_eq!(decide(Some(&spec("b", 90)), "a", now, d), Decision::Wait);
        assert_eq!(
            decide(Some(&spec("b", 84)), "a", now, d),
            Decision::TakeOver
        );
        assert_eq!(decide(Some(&spec("", 99)), "a", now, d), Decision::TakeOver);
    }
}
