//! The Mailbox controller's decisions, as pure functions of what it observed: what a pass
//! does ([`without_broker`], then [`desired`] once the Broker side is observed), the next
//! status, and the finalizer's fate. The reconcile loop (`super`) only gathers facts, calls
//! these, and carries the result out.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::ResourceExt;

use super::membership::{desired_topics, is_publisher};
use super::outcome::{BrokerState, Outcome, Reason, Settle};
use crate::crd::{duration, Broadcast, Broker, DeletionPolicy, Mailbox, MailboxStatus};
use crate::operator::admin_client::Admin;
use crate::operator::builders::secret;
use crate::operator::credentials::{self, BrokerAuth, Grant};
use crate::operator::names::USER_KEY_ANNOTATION;
use crate::protocol::{address, subject};

/// How soon a Mailbox whose address is taken by another owner is checked again.
pub const RECHECK_CONFLICT: Duration = Duration::from_secs(300);

/// How long a finalizer keeps trying an unreachable broker before it lets the object go.
pub const RELEASE_AFTER: Duration = Duration::from_secs(300);

/// The user key recorded by [`USER_KEY_ANNOTATION`], if any.
pub fn issued_user_key(mailbox: &Mailbox) -> Option<&str> {
    mailbox
        .annotations()
        .get(USER_KEY_ANNOTATION)
        .map(String::as_str)
        .filter(|key| key.starts_with('U'))
}

/// Checks what the schema cannot: broadcast topics and sendTo patterns.
pub fn validate(mailbox: &Mailbox) -> Result<(), String> {
    for topic in &mailbox.spec.subscriptions {
        subject::validate_topic(topic).map_err(|e| format!("subscriptions: {}", e.message))?;
    }
    for pattern in &mailbox.spec.send_to {
        let literal = pattern.replace(['*', '>'], "x");
        let tokens_ok = pattern
            .split('.')
            .enumerate()
            .all(|(i, t)| t != ">" || i + 1 == pattern.split('.').count());
        if address::validate(&literal).is_err() || !tokens_ok {
            return Err(format!(
                "sendTo: {pattern:?} is not an address pattern (a-z, 0-9, dots, * and a final >)"
            ));
        }
    }
    if let Some(ttl) = &mailbox.spec.ttl {
        duration::parse(ttl).map_err(|e| format!("ttl: {e}"))?;
    }
    Ok(())
}

/// Whether the Mailbox may bind to `broker`; `Err` holds the condition message when the
/// Broker does not admit the Mailbox's namespace (`spec.allowedNamespaces`).
///
/// A Mailbox that was Ready and whose namespace the Broker stops admitting is frozen, not
/// destroyed: Ready=False, nothing more is done for it on the broker and no credentials are
/// minted, but its mailbox, messages and Secret stay, so a mistaken edit of the Broker is undone
/// by reverting it (same address, same messages). What cuts the namespace off at once is the
/// Broker's NetworkPolicy; credentials already handed out end at their expiry. Deleting the
/// Mailbox still deletes its mailbox on the broker (the finalizer ignores admission: cleaning up
/// what the object owns is always allowed).
pub fn admission(mailbox: &Mailbox, broker: &Broker) -> Result<(), String> {
    let namespace = mailbox.namespace().unwrap_or_default();
    match broker.admits(&namespace) {
        true => Ok(()),
        false => Err(broker.refusal(&namespace)),
    }
}

/// The mailbox's lifetime in seconds (0 = never), from `spec.ttl`.
pub fn ttl_secs(mailbox: &Mailbox) -> u64 {
    mailbox
        .spec
        .ttl
        .as_deref()
        .and_then(|ttl| duration::parse(ttl).ok().flatten())
        .map_or(0, |d| d.as_secs())
}

/// When a mailbox created at `created_at` expires.
pub fn expiry(created_at: Timestamp, ttl_secs: u64) -> Option<Timestamp> {
    (ttl_secs > 0).then(|| {
        Timestamp::from_second(created_at.as_second().saturating_add(ttl_secs as i64))
            .unwrap_or(Timestamp::MAX)
    })
}

/// The recorded expiry, if the mailbox was created with a TTL.
pub fn recorded_expiry(status: Option<&MailboxStatus>) -> Option<Timestamp> {
    status?.expires_at.as_deref()?.parse().ok()
}

/// Whether the recorded expiry has passed.
pub fn is_expired(status: Option<&MailboxStatus>, now: Timestamp) -> bool {
    recorded_expiry(status).is_some_and(|at| at <= now)
}

/// What the finalizer does with an object being deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finalize {
    /// Delete the mailbox on the broker, then release.
    DeleteOnBroker,
    /// Release without touching the broker; the string says why (for the Event).
    Release(String),
    /// The broker is unreachable but may come back: try again later.
    RetryLater,
}

/// Decides the finalizer's step. It must never wedge: a missing or deleting Broker, a
/// `Retain` policy, an expired mailbox, or a broker unreachable for longer than
/// [`RELEASE_AFTER`] all release at once.
pub fn finalize(mailbox: &Mailbox, broker: &BrokerState, now: Timestamp) -> Finalize {
    if mailbox.spec.deletion_policy == DeletionPolicy::Retain {
        return Finalize::Release(
            "deletionPolicy is Retain: the mailbox stays on the broker".into(),
        );
    }
    if is_expired(mailbox.status.as_ref(), now) {
        return Finalize::Release("the mailbox already expired on the broker".into());
    }
    match broker {
        BrokerState::Ready => Finalize::DeleteOnBroker,
        BrokerState::Missing => Finalize::Release("the Broker no longer exists".into()),
        BrokerState::Deleting => Finalize::Release("the Broker is being deleted".into()),
        BrokerState::NotReady(why) => {
            if release_due(mailbox, now) {
                Finalize::Release(format!(
                    "the Broker was unreachable for {}s ({why}); the mailbox may remain on it until its TTL",
                    RELEASE_AFTER.as_secs()
                ))
            } else {
                Finalize::RetryLater
            }
        }
    }
}

/// Whether a Mailbox being deleted has waited [`RELEASE_AFTER`] since its deletion began: a
/// finalizer step that still fails then gives up instead of wedging the object.
pub fn release_due(mailbox: &Mailbox, now: Timestamp) -> bool {
    let since = mailbox
        .metadata
        .deletion_timestamp
        .as_ref()
        .map_or(now, |t| t.0);
    let waited = now.as_second().saturating_sub(since.as_second());
    waited >= RELEASE_AFTER.as_secs() as i64
}

/// What one pass does.
pub enum Plan<'a, A = Admin> {
    /// Nothing to do on the broker or in the Secret: write the status and wait.
    Settle(Settle),
    /// The TTL passed: delete the Secret, say Expired, apply `expirationPolicy`.
    Expire,
    /// Bring the mailbox, its Secret and its subscriptions to what the spec says, with the
    /// Broker found connected.
    Provision(Box<Provision>, &'a Facts<A>),
}

/// A change of `spec.secretName` after the Secret was written (the CRD's CEL rule refuses it;
/// this is the same refusal where the API server runs no CEL): a new name would be a Secret
/// without the address, so the pass would mint a new mailbox and orphan the old one. Seen
/// against `status.secretName`; the message names both Secrets, never the address.
pub fn renamed_secret(mailbox: &Mailbox) -> Option<String> {
    let recorded = mailbox.status.as_ref()?.secret_name.as_deref()?;
    let asked = secret::secret_name(mailbox);
    (recorded != asked).then(|| {
        format!(
            "spec.secretName is immutable: the Secret {recorded} holds the mailbox's address and \
             keeps it; {asked} is not written (set secretName back to {recorded})"
        )
    })
}

/// The decisions that need no look at the Broker: an invalid spec (a renamed Secret included),
/// a passed expiry.
pub fn without_broker<A>(mailbox: &Mailbox, now: Timestamp) -> Option<Plan<'static, A>> {
    if let Some(message) = validate(mailbox).err().or_else(|| renamed_secret(mailbox)) {
        return Some(Plan::Settle(Settle::not_ready(Reason::Invalid, message)));
    }
    is_expired(mailbox.status.as_ref(), now).then_some(Plan::Expire)
}

/// What a pass observed on the Broker's side.
pub enum Observed<A = Admin> {
    /// The Broker is missing, going, not Available, or could not be connected to.
    Unusable(BrokerState),
    /// The Broker does not admit the Mailbox's namespace (the message says so).
    Refused(String),
    Connected(Box<Facts<A>>),
}

/// What a pass found once connected to the Broker. `A`: the admin connection, which the plan
/// never uses (its tests put `()` there).
pub struct Facts<A = Admin> {
    pub admin: A,
    pub broker: Broker,
    pub auth: Option<BrokerAuth>,
    /// The Mailbox's Secret (by name), whoever owns it.
    pub secret: Option<Secret>,
    /// The Broadcasts of the Mailbox's namespace.
    pub broadcasts: Vec<Broadcast>,
    /// The address of the mailbox this Mailbox owns on the broker (found by its uid), looked
    /// up only when neither the spec nor the Secret tells the address of a Mailbox created
    /// before (see [`needs_owned_address`]).
    pub owned_address: Option<String>,
    /// A newly generated address, used when neither the spec, the Secret nor the broker has
    /// one (made before the plan: plans hold no randomness).
    pub fresh_address: String,
}

/// Whether a pass must ask the broker which mailbox this Mailbox owns: no address in the spec
/// or in `secret`, although the mailbox was created before (`status.createdAt`), so the
/// Secret that recorded its address was deleted. A Mailbox never created skips the question
/// (a new Mailbox costs no scan of the broker); one deleted before its first status write
/// gets a fresh address, and the finalizer, which deletes by owner, still finds the first.
pub fn needs_owned_address(mailbox: &Mailbox, secret: Option<&Secret>) -> bool {
    let created_before = mailbox
        .status
        .as_ref()
        .is_some_and(|s| s.created_at.is_some());
    created_before
        && mailbox.spec.address.is_none()
        && secret.and_then(secret::recorded_address).is_none()
}

/// Everything a pass does for a Mailbox that can be Ready, in this order: publish the tenant
/// account (JWT auth), write the Secret (when its credentials do not match the grant), ensure
/// the mailbox on the broker, sync its subscriptions; then settle as [`Provision::ready`].
#[derive(Debug, Clone, PartialEq)]
pub struct Provision {
    pub address: String,
    /// `namespace/name`: the credentials' user name.
    pub user: String,
    pub send_to: Vec<String>,
    pub topics: BTreeSet<String>,
    pub publish: Vec<String>,
    pub expires_at: Option<Timestamp>,
    pub permissions_hash: String,
    /// Who signs the credentials (see [`Grant::signer`]).
    pub signer: Option<String>,
    /// Whether the Secret is to be (re)written, and why (`None`: it carries this grant).
    pub secret: Option<SecretWrite>,
    /// Whether the mailbox was created before (a creation now is a re-creation).
    pub created_before: bool,
    pub ready: Settle,
}

/// Why the Secret is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretWrite {
    /// There is none yet.
    New,
    /// It was deleted (by hand, or by a foreground deletion's garbage collector) while the
    /// mailbox lives on the broker: written again with the mailbox's address, found by owner.
    Restore,
    /// Its credentials carry other permissions than the grant.
    Reissue,
}

impl Provision {
    /// The credentials' grant.
    pub fn grant(&self) -> Grant<'_> {
        Grant {
            user: &self.user,
            address: &self.address,
            send_to: &self.send_to,
            subscribe: &self.topics,
            publish: &self.publish,
            expires_at: self.expires_at,
            signer: self.signer.as_deref(),
        }
    }
}

/// The pass for a valid, unexpired Mailbox, given what was observed of its Broker.
pub fn desired<'a, A>(
    mailbox: &Mailbox,
    observed: &'a Observed<A>,
    now: Timestamp,
    resync: Duration,
) -> Plan<'a, A> {
    let facts = match observed {
        Observed::Unusable(state) => return Plan::Settle(Settle::broker_not_ready(mailbox, state)),
        // Back when the Broker changes (watched), and every resync interval so that a frozen
        // mailbox's expiry is still noticed.
        Observed::Refused(message) => {
            let outcome = Outcome::NotReady {
                reason: Reason::NamespaceNotAllowed,
                message: message.clone(),
            };
            return Plan::Settle(Settle {
                outcome,
                next: Action::requeue(resync),
            });
        }
        Observed::Connected(facts) => facts,
    };
    let secret_name = secret::secret_name(mailbox);
    let existing = facts.secret.as_ref();
    if existing.is_some_and(|s| !secret::is_owned_by(s, mailbox)) {
        let message = format!("Secret {secret_name} exists and is not managed by this Mailbox");
        return Plan::Settle(Settle::not_ready(Reason::Invalid, message));
    }
    // `spec.type` is immutable (a CEL rule; this is the refusal without CEL): the broker keeps
    // the type the mailbox was created with, which the Secret records.
    let asked = mailbox.spec.kind.as_str();
    if let Some(created) = existing.and_then(secret::recorded_type) {
        if created != asked {
            let message = format!(
                "spec.type is immutable: the mailbox was created {created} and stays so on the \
                 broker; set type back to {created}"
            );
            return Plan::Settle(Settle::not_ready(Reason::Invalid, message));
        }
    }
    // The address: explicit, else the one already handed out (in the Secret, or, the Secret
    // gone, the mailbox this object owns on the broker), else a fresh one.
    let recorded = mailbox
        .spec
        .address
        .clone()
        .or_else(|| existing.and_then(secret::recorded_address));
    let restored = match recorded {
        None => facts.owned_address.clone(),
        Some(_) => None,
    };
    let address = recorded
        .or_else(|| restored.clone())
        .unwrap_or_else(|| facts.fresh_address.clone());
    let recorded_creation = mailbox
        .status
        .as_ref()
        .and_then(|s| s.created_at.as_deref());
    let created_at = recorded_creation
        .and_then(|at| at.parse().ok())
        .unwrap_or(now);
    let expires_at =
        recorded_expiry(mailbox.status.as_ref()).or_else(|| expiry(created_at, ttl_secs(mailbox)));
    let publish = facts.broadcasts.iter().filter(|b| is_publisher(b, mailbox));
    let namespace = mailbox.namespace().unwrap_or_default();
    let mut provision = Provision {
        address,
        user: format!("{namespace}/{}", mailbox.name_any()),
        send_to: mailbox.spec.send_to.clone(),
        topics: desired_topics(mailbox, &facts.broadcasts),
        publish: publish.map(|b| b.spec.topic.clone()).collect(),
        expires_at,
        permissions_hash: String::new(),
        signer: facts
            .auth
            .as_ref()
            .map(|auth| auth.tenant_account_public_key(&namespace)),
        secret: None,
        created_before: recorded_creation.is_some(),
        ready: Settle {
            outcome: Outcome::Ready {
                created_at,
                expires_at,
                secret_name,
            },
            // Back at expiry, and every resync interval to repair drift.
            next: Action::requeue(expires_at.map_or(resync, |at| {
                let secs = (at.as_second() - now.as_second()).max(0) as u64;
                Duration::from_secs(secs).min(resync)
            })),
        },
    };
    provision.permissions_hash = credentials::grant_hash(&provision.grant());
    provision.secret = match existing.map(secret::recorded_permissions) {
        None if restored.is_some() => Some(SecretWrite::Restore),
        None => Some(SecretWrite::New),
        Some(recorded) if recorded != Some(provision.permissions_hash.as_str()) => {
            Some(SecretWrite::Reissue)
        }
        Some(_) => None,
    };
    Plan::Provision(Box::new(provision), facts)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
