//! `$mq9.AI.MSG.SEND.{addr}` and `$mq9.AI.INBOX.{addr}.{priority}`.

use bytes::Bytes;
use serde_json::json;

use super::{ends_at, view};
use crate::config::Limits;
use crate::engine::mailbox::PendingDelayed;
use crate::engine::pending::MessageAt;
use crate::engine::Engine;
use crate::protocol::headers::SendOptions;
use crate::protocol::reply::{self, single_item_reply_len, MessageView};
use crate::protocol::{ErrorCode, MailboxType, Priority, ProtoError};
use crate::store::{DelayedRecord, MessageRecord, Slot};
use crate::time::{now_ms, secs_to_ms};

/// Whether a message becoming visible still needs room in its mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// A new message: it needs room, and takes it.
    Needed,
    /// A delayed message, whose room was taken when it was sent ([`crate::engine::delayed`]).
    Taken,
}

impl Engine {
    pub(in crate::engine) fn send(
        &mut self,
        address: &str,
        subject_priority: Option<Priority>,
        options: SendOptions,
        payload: Bytes,
    ) -> Result<Bytes, ProtoError> {
        let now = now_ms();
        let priority = subject_priority
            .or(options.priority)
            .unwrap_or(Priority::Normal);
        let message = MessageRecord {
            create_time_ms: now,
            expires_at_ms: ends_at(now, options.ttl_secs.unwrap_or(0)),
            payload: payload.to_vec(),
            headers: options.headers,
            key: options.key,
            tags: options.tags,
        };
        let on_wire = reply_len(&view(u64::MAX, priority, &message, u32::MAX));
        if on_wire > self.config.max_payload {
            return Err(ProtoError::new(
                ErrorCode::TooLarge,
                format!(
                    "message needs {on_wire} bytes in a FETCH reply, more than the server's max_payload of {} bytes",
                    self.config.max_payload
                ),
            ));
        }
        let mailbox_id = self.live(address, now)?.record.id;
        let dedup_id = options.dedup_id;
        if let Some(original) = self.original_send(mailbox_id, dedup_id.as_deref(), now)? {
            return Ok(reply::ok(json!({"msg_id": original})));
        }
        match options.delay_secs {
            Some(delay) if delay > 0 => {
                let max_delay = self.config.limits.max_delay;
                if max_delay > 0 && delay > max_delay {
                    return Err(ProtoError::bad_request(format!(
                        "header mq9-delay asks for {delay} seconds, more than the maximum of {max_delay} seconds"
                    )));
                }
                let delay_id = self.send_delayed(
                    address,
                    priority,
                    message,
                    now.saturating_add(secs_to_ms(delay)),
                )?;
                self.remember_send(mailbox_id, dedup_id, -1, now);
                Ok(reply::ok(json!({"msg_id": -1, "delay_id": delay_id})))
            }
            _ => {
                let msg_id = self.store_visible(address, priority, message, Room::Needed)?;
                self.remember_send(mailbox_id, dedup_id, msg_id as i64, now);
                Ok(reply::ok(json!({"msg_id": msg_id})))
            }
        }
    }

    /// Stores a delayed message until `visible_at` and answers its delay_id. It counts against
    /// the mailbox's limits from now on, so that becoming visible can never fail for lack of
    /// room ([`crate::engine::delayed`]).
    fn send_delayed(
        &mut self,
        address: &str,
        priority: Priority,
        message: MessageRecord,
        visible_at: u64,
    ) -> Result<u64, ProtoError> {
        let size = message.size();
        let max_delayed = self.config.limits.max_delayed_per_mailbox;
        let mailbox = self
            .mailboxes
            .get_mut(address)
            .expect("checked live by the caller");
        if !Limits::allows_one_more(max_delayed, mailbox.record.delayed) {
            return Err(ProtoError::new(
                ErrorCode::Full,
                format!("mailbox {address} holds its maximum of {max_delayed} delayed messages"),
            ));
        }
        self.check_room(address, 1, size)?;
        let mailbox = self
            .mailboxes
            .get_mut(address)
            .expect("checked live by the caller");
        mailbox.record.delayed += 1;
        self.held.add(&mut mailbox.record, size);
        let pending = PendingDelayed {
            visible_at_ms: visible_at,
            expires_at_ms: message.expires_at_ms,
            size,
        };
        let delayed = DelayedRecord {
            address: address.to_owned(),
            mailbox_id: mailbox.record.id,
            priority: priority.index(),
            message,
        };
        let seq = self.next_delay_seq;
        self.next_delay_seq += 1;
        self.pending
            .put_delayed(&self.store, seq, visible_at, &delayed);
        self.hold_delayed(address, seq, pending);
        Ok(seq)
    }

    /// Makes a message visible: gives it the next msg_id, replaces the message holding its
    /// compaction slot (its `mq9-key`, or the mailbox's one slot if `latest`), and wakes the
    /// mailbox's waiting FETCHes after the commit.
    pub(in crate::engine) fn store_visible(
        &mut self,
        address: &str,
        priority: Priority,
        message: MessageRecord,
        room: Room,
    ) -> Result<u64, ProtoError> {
        let mailbox = self
            .mailboxes
            .get(address)
            .expect("checked live by the caller");
        let mailbox_id = mailbox.record.id;
        let slot_key = match mailbox.record.kind {
            MailboxType::Latest => Some(String::new()),
            MailboxType::Standard => message.key.clone(),
        };
        let replaced = slot_key.as_ref().and_then(|k| mailbox.slot(k));
        let size = message.size();
        if room == Room::Needed {
            let (freed_count, freed_bytes) = replaced.map_or((0, 0), |s| (1, s.size));
            self.check_room(
                address,
                1 - freed_count.min(1),
                size.saturating_sub(freed_bytes),
            )?;
        }
        if let Some(slot) = replaced {
            let old = MessageAt {
                mailbox_id,
                priority: Priority::from_index(slot.priority).unwrap_or(Priority::Normal),
                msg_id: slot.msg_id,
            };
            self.remove_message(address, old, slot.size);
        }
        let mailbox = self.mailboxes.get_mut(address).expect("still present");
        let msg_id = mailbox.record.next_msg_id;
        mailbox.record.next_msg_id += 1;
        match room {
            Room::Taken => mailbox.record.delayed -= 1,
            Room::Needed => self.held.add(&mut mailbox.record, size),
        }
        if let Some(slot_key) = slot_key {
            let slot = Slot {
                priority: priority.index(),
                msg_id,
                size,
            };
            self.pending
                .save_slot(&self.store, mailbox_id, &slot_key, Some(&slot));
            mailbox.indexes_mut().slots.insert(slot_key, slot);
        }
        let at = MessageAt {
            mailbox_id,
            priority,
            msg_id,
        };
        self.pending.put_message(&self.store, address, at, &message);
        Ok(msg_id)
    }

    /// `full` unless the mailbox has room for `messages` more messages and `bytes` more bytes.
    fn check_room(&self, address: &str, messages: u64, bytes: u64) -> Result<(), ProtoError> {
        let limits = &self.config.limits;
        let record = &self
            .mailboxes
            .get(address)
            .expect("checked live by the caller")
            .record;
        if limits.max_messages_per_mailbox > 0
            && record.count + messages > limits.max_messages_per_mailbox
        {
            return Err(ProtoError::new(
                ErrorCode::Full,
                format!(
                    "mailbox {address} is full: it holds its maximum of {} messages",
                    limits.max_messages_per_mailbox
                ),
            ));
        }
        if limits.max_bytes_per_mailbox > 0 && record.bytes + bytes > limits.max_bytes_per_mailbox {
            return Err(ProtoError::new(
                ErrorCode::Full,
                format!(
                    "mailbox {address} is full: it would exceed its maximum of {} bytes",
                    limits.max_bytes_per_mailbox
                ),
            ));
        }
        Ok(())
    }
}

/// [`single_item_reply_len`] without encoding the payload: base64 never needs JSON escaping,
/// so the item is as long as the item without its payload plus the payload's base64 length.
/// Every SEND checks this size, and base64-encoding the payload just to count it was a good
/// part of a SEND's CPU.
fn reply_len(message: &MessageView<'_>) -> usize {
    let without_payload = MessageView {
        payload: &[],
        ..*message
    };
    let encoded = base64::encoded_len(message.payload.len(), true).unwrap_or(usize::MAX);
    single_item_reply_len(&without_payload).saturating_add(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_length_is_counted_without_encoding() {
        let headers = vec![("x-trace".to_owned(), "a\"b\u{1}".to_owned())];
        let tags = vec!["t1".to_owned()];
        for size in [0, 1, 2, 3, 4, 255, 256, 1000] {
            let payload: Vec<u8> = (0..size).map(|i| (i * 37 % 256) as u8).collect();
            let message = MessageView {
                msg_id: u64::MAX,
                payload: &payload,
                priority: Priority::Urgent,
                create_time: 1_700_000_000,
                delivery_count: u32::MAX,
                headers: &headers,
                key: Some("k\"ey"),
                tags: &tags,
                pending: None,
            };
            assert_eq!(
                reply_len(&message),
                single_item_reply_len(&message),
                "{size}"
            );
        }
    }
}
