//! `$mq9.AI.AGENT.REGISTER | UNREGISTER | REPORT | DISCOVER`: the registry's commands. The
//! [`Registry`](crate::engine::registry::Registry) decides; these persist and answer.

use bytes::Bytes;
use serde_json::json;

use crate::engine::Engine;
use crate::protocol::agents::{AgentLookup, DiscoverRequest, RegisterRequest};
use crate::protocol::identity::Caller;
use crate::protocol::{reply, ErrorCode, ProtoError};
use crate::time::now_ms;

impl Engine {
    /// REGISTER: a card within `max_card_bytes`, naming only the caller's own mailbox, for an
    /// entry the caller owns or a new one that fits the registry's bounds.
    pub(in crate::engine) fn register(
        &mut self,
        request: RegisterRequest,
        caller: Option<&Caller>,
    ) -> Result<Bytes, ProtoError> {
        let limits = self.config.limits;
        if limits.max_card_bytes > 0 && request.card.len() as u64 > limits.max_card_bytes {
            return Err(ProtoError::new(
                ErrorCode::TooLarge,
                format!(
                    "agent card is {} bytes, more than the broker's limit of {} bytes",
                    request.card.len(),
                    limits.max_card_bytes
                ),
            ));
        }
        let own_address = caller.and_then(Caller::address);
        if let (Some(own), Some(mailbox)) = (own_address, &request.mailbox) {
            if own != mailbox {
                return Err(ProtoError::new(
                    ErrorCode::Forbidden,
                    "field `mailbox` must be the caller's own mailbox",
                ));
            }
        }
        let owner = caller.map(Caller::owner);
        let owner = owner.as_deref();
        self.registry.authorize(&request.identity, owner)?;
        self.registry.check_room(
            &request.identity,
            owner,
            limits.max_agents,
            limits.max_agents_per_identity,
        )?;
        let (identity, record) = self.registry.register(request, now_ms());
        self.pending.put_agent(&self.store, identity, record);
        self.pending.save_owner(&self.store, identity, owner);
        self.pending.mark_durable();
        let identity = identity.to_owned();
        self.registry.set_owner(&identity, owner.map(str::to_owned));
        Ok(reply::ok(json!({})))
    }

    pub(in crate::engine) fn unregister(
        &mut self,
        lookup: &AgentLookup,
        caller: Option<&Caller>,
    ) -> Result<Bytes, ProtoError> {
        let identity = self.find_owned_agent(lookup, caller)?;
        self.registry.remove(&identity);
        self.pending.delete_agent(&self.store, &identity);
        self.pending.mark_durable();
        Ok(reply::ok(json!({})))
    }

    pub(in crate::engine) fn report(
        &mut self,
        lookup: &AgentLookup,
        status: String,
        caller: Option<&Caller>,
    ) -> Result<Bytes, ProtoError> {
        let identity = self.find_owned_agent(lookup, caller)?;
        if let Some(record) = self.registry.report(&identity, status, now_ms()) {
            self.pending.put_agent(&self.store, &identity, record);
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
                self.pending.delete_agent(&self.store, &identity);
            }
        }
    }

    /// The entry a lookup names, if the caller may change it.
    fn find_owned_agent(
        &self,
        lookup: &AgentLookup,
        caller: Option<&Caller>,
    ) -> Result<String, ProtoError> {
        let identity = self
            .registry
            .find(lookup)
            .ok_or_else(|| ProtoError::not_found("agent not found"))?;
        let owner = caller.map(Caller::owner);
        self.registry.authorize(&identity, owner.as_deref())?;
        Ok(identity)
    }
}
