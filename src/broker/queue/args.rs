//! A queue's arguments: what redeclaring must match, and what they make of each message
//! (priority level, expiry).

use super::{dead_letter, redelivery, Queue};
use crate::broker::ops::AmqpError;
use crate::broker::overflow::Overflow;
use crate::broker::policy::Policies;
use crate::broker::ready::now_ms;
use crate::message::Message;
use crate::protocol::{BasicProperties, FieldTable, FieldValue};
use crate::routing::headers::type_name;

impl Queue {
    /// Takes the limits, TTLs, dead-letter target, delivery limit and expiry from the
    /// queue's arguments with what its policies add. Messages already queued keep the expiry
    /// they were given; a lower length limit applies at the next `drop_over_limit`.
    /// (x-max-priority and x-single-active-consumer are fixed at declare.)
    pub fn apply_policies(&mut self, policies: &Policies) {
        let s = Settings::read(&policies.queue_arguments(&self.vhost, &self.name, &self.arguments));
        self.message_ttl_ms = s.message_ttl_ms;
        if s.expires_ms != self.expires_ms {
            // A new expiry period counts from now, as RabbitMQ re-arms its timer.
            self.touch();
        }
        self.expires_ms = s.expires_ms;
        self.limits = s.limits;
        self.dead_letter = s.dead_letter;
        self.redelivery = s.redelivery;
    }

    pub fn check_equivalent(
        &self,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        arguments: &FieldTable,
    ) -> Result<(), AmqpError> {
        let mismatch = |field: &str, received: bool, current: bool| {
            AmqpError::precondition(format!(
                "inequivalent arg '{field}' for queue '{}' in vhost '{}': received '{received}' but current is '{current}'",
                self.display_name(),
                self.display_vhost()
            ))
        };
        // Like RabbitMQ, the exclusive flag is checked first, as exclusive access (405).
        if exclusive != self.exclusive_owner.is_some() {
            return Err(self.locked());
        }
        if durable != self.durable {
            return Err(mismatch("durable", durable, self.durable));
        }
        if auto_delete != self.auto_delete {
            return Err(mismatch("auto_delete", auto_delete, self.auto_delete));
        }
        for key in [
            "x-queue-type",
            "x-max-priority",
            "x-max-length",
            "x-max-length-bytes",
            "x-overflow",
            "x-message-ttl",
            "x-dead-letter-exchange",
            "x-dead-letter-routing-key",
            "x-delivery-limit",
            "x-single-active-consumer",
            "x-expires",
        ] {
            let (received, current) = (arguments.get(key), self.arguments.get(key));
            // RabbitMQ treats a missing x-queue-type as equivalent to the queue's type.
            if key == "x-queue-type" && received.is_none() {
                continue;
            }
            if !equivalent(received, current) {
                return Err(AmqpError::precondition(format!(
                    "inequivalent arg '{key}' for queue '{}' in vhost '{}': received {} but current is {}",
                    self.display_name(),
                    self.display_vhost(),
                    describe(received, current.is_some()),
                    describe(current, received.is_some()),
                )));
            }
        }
        Ok(())
    }

    /// The message's priority (capped at x-max-priority) and expiry: the earlier of the
    /// queue's x-message-ttl and the message's `expiration`. Properties are decoded only when
    /// a flag says they matter.
    pub(super) fn priority_and_expiry(&self, msg: &Message) -> (u8, u64) {
        const PRIORITY_FLAG: u16 = 1 << 11;
        const EXPIRATION_FLAG: u16 = 1 << 8;
        let flags = match msg.properties.get(..2) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]),
            None => 0,
        };
        let wanted =
            (self.max_priority > 0 && flags & PRIORITY_FLAG != 0) || flags & EXPIRATION_FLAG != 0;
        let props = if wanted {
            BasicProperties::decode_bytes(msg.properties.clone()).ok()
        } else {
            None
        };
        let priority = props
            .as_ref()
            .and_then(|p| p.priority)
            .unwrap_or(0)
            .min(self.max_priority);
        let per_message_ttl = props
            .as_ref()
            .and_then(|p| p.expiration.as_ref())
            .and_then(|e| std::str::from_utf8(e).ok()?.trim().parse::<u64>().ok());
        let ttl = match (self.message_ttl_ms, per_message_ttl) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // A client may claim any expiration: one too far to reach never expires.
        (priority, ttl.map_or(0, |ttl| now_ms().saturating_add(ttl)))
    }
}

/// What a queue's effective arguments make of it.
struct Settings {
    message_ttl_ms: Option<u64>,
    expires_ms: Option<u64>,
    limits: Limits,
    dead_letter: Option<dead_letter::Target>,
    redelivery: redelivery::Redelivery,
}

impl Settings {
    fn read(effective: &FieldTable) -> Settings {
        let non_negative = |key: &str| {
            effective
                .get(key)
                .and_then(FieldValue::as_i64)
                .and_then(|n| u64::try_from(n).ok())
        };
        Settings {
            message_ttl_ms: non_negative("x-message-ttl"),
            expires_ms: non_negative("x-expires").filter(|ms| *ms > 0),
            limits: Limits::from_arguments(effective),
            dead_letter: dead_letter::Target::from_arguments(effective),
            redelivery: redelivery::Redelivery::from_arguments(effective),
        }
    }
}

/// Equal values, where integers of any width and strings of either kind compare by value,
/// as RabbitMQ's type-compatible comparison does.
fn equivalent(a: Option<&FieldValue>, b: Option<&FieldValue>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => match (a.as_i64(), b.as_i64(), a.as_bytes(), b.as_bytes()) {
            (Some(x), Some(y), ..) => x == y,
            (_, _, Some(x), Some(y)) => x == y,
            _ => a == b,
        },
        (a, b) => a == b,
    }
}

/// A value in RabbitMQ's refusal text: quoted when both sides have one, else with its type.
fn describe(value: Option<&FieldValue>, other_present: bool) -> String {
    let Some(v) = value else {
        return "none".to_string();
    };
    let shown = match (v.as_i64(), v.as_bytes()) {
        (Some(n), _) => n.to_string(),
        (_, Some(s)) => String::from_utf8_lossy(s).into_owned(),
        _ => format!("{v:?}"),
    };
    if other_present {
        format!("'{shown}'")
    } else {
        format!("the value '{shown}' of type '{}'", type_name(v))
    }
}

/// A queue's length limits (x-max-length, x-max-length-bytes) and x-overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_length: Option<u64>,
    pub max_bytes: Option<u64>,
    pub overflow: Overflow,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_length: None,
            max_bytes: None,
            overflow: Overflow::DropHead,
        }
    }
}

impl Limits {
    /// From validated arguments (a negative limit was refused at declare).
    pub fn from_arguments(arguments: &FieldTable) -> Limits {
        let limit = |key: &str| {
            arguments
                .get(key)
                .and_then(|v| v.as_i64())
                .and_then(|n| u64::try_from(n).ok())
        };
        let overflow = match arguments.get("x-overflow") {
            Some(FieldValue::LongStr(s)) => Overflow::parse(s),
            _ => None,
        };
        Limits {
            max_length: limit("x-max-length"),
            max_bytes: limit("x-max-length-bytes"),
            overflow: overflow.unwrap_or(Overflow::DropHead),
        }
    }

    /// True when a queue of `len` messages and `bytes` body bytes is at or past a limit.
    pub fn full(&self, len: usize, bytes: u64) -> bool {
        self.max_length.is_some_and(|max| len as u64 >= max)
            || self.max_bytes.is_some_and(|max| bytes >= max)
    }

    /// True when a queue of `len` messages and `bytes` body bytes is past a limit.
    pub fn over(&self, len: usize, bytes: u64) -> bool {
        self.max_length.is_some_and(|max| len as u64 > max)
            || self.max_bytes.is_some_and(|max| bytes > max)
    }
}
