//! The agent registry (`$mq9.AI.AGENT.*`) in memory: entries by identity, lookups by mailbox,
//! registration order, heartbeat expiry and the search index. The engine persists each change
//! in the `agents` column family; this module decides what changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::search::SearchIndex;
use crate::protocol::agents::{AgentLookup, DiscoverRequest, RegisterRequest};
use crate::store::{self, AgentRecord, Store, StoreError};

#[derive(Debug, Default)]
pub struct Registry {
    agents: HashMap<String, AgentRecord>,
    by_mailbox: HashMap<String, String>,
    order: BTreeMap<u64, String>,
    expiry: BTreeSet<(u64, String)>,
    index: SearchIndex,
    next_seq: u64,
}

impl Registry {
    pub fn load(store: &Store) -> Result<Registry, StoreError> {
        let mut registry = Registry::default();
        let mut records = Vec::new();
        store.scan_prefix(store::CF_AGENTS, &[], |key, record: AgentRecord| {
            records.push((String::from_utf8_lossy(key).into_owned(), record));
            true
        })?;
        for (identity, record) in records {
            registry.next_seq = registry.next_seq.max(record.seq + 1);
            registry.insert(identity, record);
        }
        Ok(registry)
    }

    /// Number of registered agents.
    pub fn count(&self) -> usize {
        self.agents.len()
    }

    /// Registers or replaces an entry (a replaced entry keeps its place in registration order).
    pub fn register(&mut self, request: RegisterRequest, now_ms: u64) -> (&str, &AgentRecord) {
        let seq = match self.remove(&request.identity) {
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
        let mut record = self.remove(identity)?;
        record.status = Some(status);
        record.last_seen_ms = now_ms;
        self.insert(identity.to_owned(), record);
        self.agents.get(identity)
    }

    pub fn remove(&mut self, identity: &str) -> Option<AgentRecord> {
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
