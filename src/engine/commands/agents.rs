//! `$mq9.AI.AGENT.REGISTER | UNREGISTER | REPORT | DISCOVER`: the registry's commands. The
//! [`Registry`](crate::engine::registry::Registry) decides; these persist and answer.

use bytes::Bytes;
use serde_json::json;

use crate::engine::Engine;
use crate::protocol::agents::{AgentLookup, DiscoverRequest, RegisterRequest};
use crate::protocol::{reply, ProtoError};
use crate::store;
use crate::time::now_ms;

impl Engine {
    pub(in crate::engine) fn register(
        &mut self,
        request: RegisterRequest,
    ) -> Result<Bytes, ProtoError> {
        let (identity, record) = self.registry.register(request, now_ms());
        self.store.put(
            &mut self.pending.batch,
            store::CF_AGENTS,
            identity.as_bytes(),
            record,
        );
        self.pending.sync = true;
        Ok(reply::ok(json!({})))
    }

    pub(in crate::engine) fn unregister(
        &mut self,
        lookup: &AgentLookup,
    ) -> Result<Bytes, ProtoError> {
        let identity = self.find_agent(lookup)?;
        self.registry.remove(&identity);
        self.store.delete(
            &mut self.pending.batch,
            store::CF_AGENTS,
            identity.as_bytes(),
        );
        self.pending.sync = true;
        Ok(reply::ok(json!({})))
    }

    pub(in crate::engine) fn report(
        &mut self,
        lookup: &AgentLookup,
        status: String,
    ) -> Result<Bytes, ProtoError> {
        let identity = self.find_agent(lookup)?;
        if let Some(record) = self.registry.report(&identity, status, now_ms()) {
            self.store.put(
                &mut self.pending.batch,
                store::CF_AGENTS,
                identity.as_bytes(),
                record,
            );
        }
        Ok(reply::ok(json!({})))
    }

    /// `{"error":"","agents":[...]}` with each card exactly as registered, within
    /// `max_payload` (at least one card when any matches).
    pub(in crate::engine) fn discover(
        &mut self,
        request: &DiscoverRequest,
    ) -> Result<Bytes, ProtoError> {
        let budget = self.config.max_payload.saturating_sub(64);
        let mut out = String::from("{\"error\":\"\",\"agents\":[");
        let cards = self
            .registry
            .discover(request, self.config.limits.scan_budget());
        for (i, card) in cards.into_iter().enumerate() {
            if i > 0 && out.len() + card.len() + 3 > budget {
                break;
            }
            if i > 0 {
                out.push(',');
            }
            out.push_str(card);
        }
        out.push_str("]}");
        Ok(Bytes::from(out))
    }

    /// Drops registry entries whose heartbeat (`ttl`) ran out.
    pub(in crate::engine) fn expire_agents(&mut self, now: u64) {
        if self.registry.next_expiry().is_some_and(|at| at <= now) {
            for identity in self.registry.expire(now) {
                self.store.delete(
                    &mut self.pending.batch,
                    store::CF_AGENTS,
                    identity.as_bytes(),
                );
            }
        }
    }

    fn find_agent(&self, lookup: &AgentLookup) -> Result<String, ProtoError> {
        self.registry
            .find(lookup)
            .ok_or_else(|| ProtoError::not_found("agent not found"))
    }
}
