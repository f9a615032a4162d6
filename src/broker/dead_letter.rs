//! Dead lettering, with RabbitMQ's semantics for classic queues: a message that leaves a queue
//! with `x-dead-letter-exchange` because it was rejected (requeue=false), expired, or pushed
//! out by a length limit is published again to that exchange, with the routing key
//! `x-dead-letter-routing-key` or its own, and an `x-death` header that says what happened.
//!
//! The queue's shard routes the new message with its routing replica like any publish
//! (`Shard::route_dead_letters`); the queue it reaches drops it when it closes a cycle of
//! automatic dead lettering ([`is_cycle`]). Like RabbitMQ's classic queues this is at most
//! once: the message leaves its queue before the target takes it.

use bytes::{Bytes, BytesMut};

use crate::message::Message;
use crate::protocol::{BasicProperties, FieldTable, FieldValue};

/// Why a message was dead-lettered (the `reason` of its `x-death` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Rejected,
    Expired,
    MaxLen,
    DeliveryLimit,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::Expired => "expired",
            Reason::MaxLen => "maxlen",
            Reason::DeliveryLimit => "delivery_limit",
        }
    }
}

/// Where a queue dead-letters to: its `x-dead-letter-exchange` and, when set,
/// `x-dead-letter-routing-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub exchange: Bytes,
    pub routing_key: Option<Bytes>,
}

impl Target {
    pub fn from_arguments(arguments: &FieldTable) -> Option<Target> {
        let text = |key: &str| match arguments.get(key) {
            Some(FieldValue::LongStr(s) | FieldValue::ShortStr(s)) => Some(s.clone()),
            _ => None,
        };
        Some(Target {
            exchange: text("x-dead-letter-exchange")?,
            routing_key: text("x-dead-letter-routing-key"),
        })
    }
}

/// A message that left `queue` for `reason`, on its way to `target`.
#[derive(Debug)]
pub struct DeadLetter {
    pub msg: Message,
    pub reason: Reason,
    /// The queue's vhost, where its dead-letter exchange is.
    pub vhost: Bytes,
    pub queue: Bytes,
    pub target: Target,
}

impl DeadLetter {
    /// The message to publish to the dead-letter exchange: `expiration` moves into the
    /// `x-death` entry, which is added (or counted again) first in the header, and
    /// `x-first-death-*` (when absent) and `x-last-death-*` are set. `now_secs` is the time.
    pub fn republish(self, now_secs: u64) -> Message {
        let DeadLetter {
            msg,
            reason,
            queue,
            target,
            ..
        } = self;
        let mut props = BasicProperties::decode_bytes(msg.properties.clone()).unwrap_or_default();
        let mut headers = props.headers.take().unwrap_or_default();
        let mut entry = vec![
            field("count", FieldValue::I64(1)),
            field("reason", text(reason.as_str())),
            field("queue", FieldValue::LongStr(queue.clone())),
            field("time", FieldValue::Timestamp(now_secs)),
            field("exchange", FieldValue::LongStr(msg.exchange.clone())),
            field(
                "routing-keys",
                FieldValue::Array(vec![FieldValue::LongStr(msg.routing_key.clone())]),
            ),
        ];
        if let Some(expiration) = props.expiration.take() {
            entry.push(field(
                "original-expiration",
                FieldValue::LongStr(expiration),
            ));
        }
        let deaths = match headers.get("x-death") {
            Some(FieldValue::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        let same = |t: &FieldTable| {
            t.get("queue").and_then(FieldValue::as_bytes) == Some(&queue[..])
                && t.get("reason").and_then(FieldValue::as_bytes)
                    == Some(reason.as_str().as_bytes())
                && t.get("exchange").and_then(FieldValue::as_bytes) == Some(&msg.exchange[..])
        };
        let (mut matched, others): (Vec<FieldValue>, Vec<FieldValue>) = deaths
            .into_iter()
            .partition(|d| d.as_table().is_some_and(same));
        let first = match matched.pop() {
            Some(FieldValue::Table(mut old)) => {
                let count = old.get("count").and_then(FieldValue::as_i64).unwrap_or(0);
                old.insert("count", FieldValue::I64(count.saturating_add(1)));
                old
            }
            _ => FieldTable(entry),
        };
        let mut deaths = Vec::with_capacity(others.len() + 1);
        deaths.push(FieldValue::Table(first));
        deaths.extend(others);
        headers.insert("x-death", FieldValue::Array(deaths));
        for (key, value) in [
            ("reason", text(reason.as_str())),
            ("queue", FieldValue::LongStr(queue.clone())),
            ("exchange", FieldValue::LongStr(msg.exchange.clone())),
        ] {
            let first = format!("x-first-death-{key}");
            if headers.get(&first).is_none() {
                headers.insert(&first, value.clone());
            }
            headers.insert(&format!("x-last-death-{key}"), value);
        }
        props.headers = Some(headers);
        let mut encoded = BytesMut::new();
        props.encode(&mut encoded);
        let routing_key = target.routing_key.unwrap_or(msg.routing_key);
        Message::new(
            target.exchange,
            routing_key,
            encoded.freeze(),
            msg.body,
            msg.persistent,
        )
    }
}

fn field(key: &str, value: FieldValue) -> (Bytes, FieldValue) {
    (Bytes::copy_from_slice(key.as_bytes()), value)
}

fn text(s: &'static str) -> FieldValue {
    FieldValue::LongStr(Bytes::from_static(s.as_bytes()))
}

/// True when a dead-lettered `msg` reaching `queue` closes a cycle that no client took part
/// in: `queue` dead-lettered it before, and no `rejected` death happened since (RabbitMQ then
/// drops the message rather than let it circle forever).
pub fn is_cycle(queue: &[u8], msg: &Message) -> bool {
    let Ok(props) = BasicProperties::decode_bytes(msg.properties.clone()) else {
        return false;
    };
    let Some(FieldValue::Array(deaths)) = props.headers.as_ref().and_then(|h| h.get("x-death"))
    else {
        return false;
    };
    for death in deaths {
        let Some(table) = death.as_table() else {
            return false;
        };
        if table.get("reason").and_then(FieldValue::as_bytes) == Some(b"rejected") {
            return false;
        }
        if table.get("queue").and_then(FieldValue::as_bytes) == Some(queue) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests;
