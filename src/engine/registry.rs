//! The agent registry (`$mq9.AI.AGENT.*`) in memory: entries by identity, lookups by mailbox,
//! registration order, heartbeat expiry, the search index, and who owns each entry. The engine
//! persists each change in the `agents` and `agent_owners` column families; this module decides
//! what changes.
//!
//! # Ownership (security.md §4)
//! An entry registered by a known caller (see [`crate::protocol::identity::Caller`]) belongs to
//! that caller's [owner key](crate::protocol::identity::Caller::owner): only the same owner may
//! register it again, report on it or unregister it (`forbidden` otherwise). An entry registered
//! anonymously (no auth, or a trusted client of the broker's own account) has no owner and may
//! be changed only by anonymous callers: an authenticated agent can never take over an entry it
//! did not register, including entries written before identities existed. Each owner holds at
//! most `max_agents_per_identity` entries.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::search::SearchIndex;
use crate::protocol::agents::{AgentLookup, DiscoverRequest, RegisterRequest};
use crate::protocol::{ErrorCode, ProtoError};
use crate::store::{self, AgentRecord, Store, StoreError};

#[derive(Debug, Default)]
pub struct Registry {
    agents: HashMap<String, AgentRecord>,
    /// identity → owner, for entries registered by a known caller.
    owners: HashMap<String, String>,
    /// owner → how many entries it holds.
    owned: HashMap<String, u64>,
    by_mailbox: HashMap<String, String>,
    order: BTreeMap<u64, String>,
    expiry: BTreeSet<(u64, String)>,
    index: SearchIndex,
    next_seq: u64,
}

impl Registry {
    pub fn load(store: &Store) -> Result<Registry, StoreError> {
        let mut registry = Registry::default();
        for (identity, record) in by_identity::<AgentRecord>(store, store::CF_AGENTS)? {
            registry.next_seq = registry.next_seq.max(record.seq + 1);
            registry.insert(identity, record);
        }
        for (identity, owner) in by_identity::<String>(store, store::CF_AGENT_OWNERS)? {
            if registry.agents.contains_key(&identity) {
                registry.set_owner(&identity, Some(owner));
            }
        }
        Ok(registry)
    }

    /// Whether `owner` (`None`: an anonymous caller) may change the entry `identity`: an
    /// existing entry only by its own owner.
    pub fn authorize(&self, identity: &str, owner: Option<&str>) -> Result<(), ProtoError> {
        if !self.agents.contains_key(identity)
            || self.owners.get(identity).map(String::as_str) == owner
        {
            return Ok(());
        }
        Err(ProtoError::new(
            ErrorCode::Forbidden,
            "this agent entry was registered by another identity",
        ))
    }

    /// Whether a new entry fits: `max_total` entries overall, `max_per_owner` per owner (0 =
    /// unlimited). Re-registering an existing entry always fits.
    pub fn check_room(
        &self,
        identity: &str,
        owner: Option<&str>,
        max_total: u64,
        max_per_owner: u64,
    ) -> Result<(), ProtoError> {
        if self.agents.contains_key(identity) {
            return Ok(());
        }
        if max_total > 0 && self.agents.len() as u64 >= max_total {
            return Err(ProtoError::new(
                ErrorCode::Full,
                format!("the agent registry is full ({max_total} entries)"),
            ));
        }
        let held = owner.and_then(|o| self.owned.get(o)).copied().unwrap_or(0);
        if owner.is_some() && max_per_owner > 0 && held >= max_per_owner {
            return Err(ProtoError::new(
                ErrorCode::Full,
                format!(
                    "this identity already holds {max_per_owner} agent entries, the most allowed"
                ),
            ));
        }
        Ok(())
    }

    /// Records who owns `identity` (`None`: nobody), keeping the per-owner counts.
    pub fn set_owner(&mut self, identity: &str, owner: Option<String>) {
        if let Some(old) = self.owners.remove(identity) {
            if let Some(count) = self.owned.get_mut(&old) {
                *count -= 1;
                if *count == 0 {
                    self.owned.remove(&old);
                }
            }
        }
        if let Some(owner) = owner {
            *self.owned.entry(owner.clone()).or_default() += 1;
            self.owners.insert(identity.to_owned(), owner);
        }
    }

    /// Number of registered agents.
    pub fn count(&self) -> usize {
        self.agents.len()
    }

    /// Registers or replaces an entry (a replaced entry keeps its place in registration order).
    pub fn register(&mut self, request: RegisterRequest, now_ms: u64) -> (&str, &AgentRecord) {
        let seq = match self.detach(&request.identity) {
            Some(old) => old.seq,
            None => {
                self.next_seq += 1;
                self.next_seq - 1
            }
        };
        let record = AgentRecord {
            seq,
            card: request.card,
            text: request.text,
            name: request.name,
            mailbox: request.mailbox,
            status: None,
            last_seen_ms: now_ms,
            ttl_secs: request.ttl.unwrap_or(0),
        };
        self.insert(request.identity.clone(), record);
        let (identity, record) = self
            .agents
            .get_key_value(&request.identity)
            .expect("just inserted");
        (identity.as_str(), record)
    }

    /// The identity of the agent a lookup names: by `name` first, else by `mailbox`.
    pub fn find(&self, lookup: &AgentLookup) -> Option<String> {
        let by_name = lookup
            .name
            .as_ref()
            .filter(|n| self.agents.contains_key(*n))
            .cloned();
        by_name.or_else(|| {
            lookup
                .mailbox
                .as_ref()
                .and_then(|m| self.by_mailbox.get(m))
                .cloned()
        })
    }

    /// Stores the latest status and refreshes last-seen (and so the heartbeat expiry).
    pub fn report(&mut self, identity: &str, status: String, now_ms: u64) -> Option<&AgentRecord> {
        let mut record = self.detach(identity)?;
        record.status = Some(status);
        record.last_seen_ms = now_ms;
        self.insert(identity.to_owned(), record);
        self.agents.get(identity)
    }

    /// Removes an entry and its ownership.
    pub fn remove(&mut self, identity: &str) -> Option<AgentRecord> {
        let record = self.detach(identity)?;
        self.set_owner(identity, None);
        Some(record)
    }

    /// Takes an entry out of every index, leaving its ownership (register and report put it
    /// back at once).
    fn detach(&mut self, identity: &str) -> Option<AgentRecord> {
        let record = self.agents.remove(identity)?;
        if let Some(mailbox) = &record.mailbox {
            if self.by_mailbox.get(mailbox).is_some_and(|i| i == identity) {
                self.by_mailbox.remove(mailbox);
            }
        }
        self.order.remove(&record.seq);
        if let Some(at) = record.expires_at_ms() {
            self.expiry.remove(&(at, identity.to_owned()));
        }
        self.index.remove(record.seq, &record.text);
        Some(record)
    }

    /// The cards of one page of DISCOVER: ranked by relevance with a query (reading at most
    /// `max_scan` postings), else in registration order.
    pub fn discover(&self, request: &DiscoverRequest, max_scan: usize) -> Vec<&str> {
        let skip = request.limit.saturating_mul(request.page - 1);
        let card = |seq: &u64| {
            self.order
                .get(seq)
                .and_then(|id| self.agents.get(id))
                .map(|r| r.card.as_str())
        };
        match &request.query {
            Some(query) => self
                .index
                .search(query, max_scan)
                .iter()
                .filter_map(card)
                .skip(skip)
                .take(request.limit)
                .collect(),
            None => self
                .order
                .keys()
                .filter_map(card)
                .skip(skip)
                .take(request.limit)
                .collect(),
        }
    }

    /// When the next heartbeat expiry falls due.
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiry.first().map(|(at, _)| *at)
    }

    /// Removes the entries whose heartbeat expired by `now_ms`; returns their identities.
    pub fn expire(&mut self, now_ms: u64) -> Vec<String> {
        let due: Vec<String> = self
            .expiry
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .map(|(_, identity)| identity.clone())
            .collect();
        for identity in &due {
            self.remove(identity);
        }
        due
    }

    fn insert(&mut self, identity: String, record: AgentRecord) {
        if let Some(mailbox) = &record.mailbox {
            self.by_mailbox.insert(mailbox.clone(), identity.clone());
        }
        self.order.insert(record.seq, identity.clone());
        if let Some(at) = record.expires_at_ms() {
            self.expiry.insert((at, identity.clone()));
        }
        self.index.add(record.seq, &record.text);
        self.agents.insert(identity, record);
    }
}

/// Every record of a column family keyed by agent identity.
fn by_identity<V: serde::de::DeserializeOwned>(
    store: &Store,
    cf: &'static str,
) -> Result<Vec<(String, V)>, StoreError> {
    let mut records = Vec::new();
    store.scan_prefix(cf, &[], |key, record: V| {
        records.push((String::from_utf8_lossy(key).into_owned(), record));
        true
    })?;
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(registry: &mut Registry, raw: &str, now: u64) {
        registry.register(RegisterRequest::parse(raw.as_bytes()).unwrap(), now);
    }

    fn all(registry: &Registry) -> Vec<String> {
        let request = DiscoverRequest {
            query: None,
            limit: 100,
            page: 1,
        };
        registry
            .discover(&request, usize::MAX)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn reregistering_replaces_in_place_and_lookups_work_by_either_field() {
        let mut registry = Registry::default();
        register(&mut registry, r#"{"name":"a","mailbox":"ma"}"#, 0);
        register(&mut registry, r#"{"name":"b"}"#, 0);
        register(&mut registry, r#"{"name":"a","mailbox":"ma","v":2}"#, 0);
        assert_eq!(
            all(&registry),
            [r#"{"name":"a","mailbox":"ma","v":2}"#, r#"{"name":"b"}"#]
        );
        let by_mailbox = AgentLookup {
            name: None,
            mailbox: Some("ma".into()),
        };
        assert_eq!(registry.find(&by_mailbox).as_deref(), Some("a"));
        assert!(registry.remove("a").is_some());
        assert_eq!(registry.find(&by_mailbox), None);
    }

    #[test]
    fn heartbeats_extend_ttl_entries() {
        let mut registry = Registry::default();
        register(&mut registry, r#"{"name":"a","ttl":10}"#, 0);
        register(&mut registry, r#"{"name":"forever"}"#, 0);
        assert_eq!(registry.next_expiry(), Some(10_000));
        registry.report("a", "{}".into(), 5_000);
        assert!(registry.expire(10_000).is_empty());
        assert_eq!(registry.expire(15_000), ["a"]);
        assert_eq!(registry.count(), 1);
    }

    #[test]
    fn pages_split_results() {
        let mut registry = Registry::default();
        for i in 0..5 {
            register(
                &mut registry,
                &format!(r#"{{"name":"n{i}","desc":"worker"}}"#),
                0,
            );
        }
        let page = |page| DiscoverRequest {
            query: Some("worker".into()),
            limit: 2,
            page,
        };
        assert_eq!(registry.discover(&page(1), usize::MAX).len(), 2);
        assert_eq!(registry.discover(&page(3), usize::MAX).len(), 1);
        assert!(registry.discover(&page(4), usize::MAX).is_empty());
    }
}
