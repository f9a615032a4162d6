//! Delivery limits (`x-delivery-limit`, which RabbitMQ applies to quorum queues and Warren to
//! every queue): a message returned to its queue (requeued by nack or reject, or by its
//! channel closing) counts a return; past the limit it is dead-lettered with reason
//! `delivery_limit`, or dropped. Where counting applies (a delivery limit, or a queue declared
//! `x-queue-type: quorum`) a redelivered message carries `x-delivery-count`, the number of
//! returns so far, as RabbitMQ's quorum queues do.

use bytes::BytesMut;

use crate::message::Message;
use crate::protocol::{BasicProperties, FieldTable, FieldValue};

/// Whether a queue counts returns, and its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Redelivery {
    /// Returns are counted and shown in `x-delivery-count`.
    pub counted: bool,
    /// More returns than this and the message goes.
    pub limit: Option<u32>,
}

impl Redelivery {
    pub fn from_arguments(arguments: &FieldTable) -> Redelivery {
        let limit = arguments
            .get("x-delivery-limit")
            .and_then(FieldValue::as_i64)
            .and_then(|n| u32::try_from(n).ok());
        let quorum =
            arguments.get("x-queue-type").and_then(FieldValue::as_bytes) == Some(b"quorum");
        Redelivery {
            counted: quorum || limit.is_some(),
            limit,
        }
    }

    /// True when a message returned `returns` times must leave the queue.
    pub fn exceeded(&self, returns: u32) -> bool {
        self.limit.is_some_and(|limit| returns > limit)
    }

    /// The message as delivered after `returns` returns: with `x-delivery-count` where
    /// returns are counted (the message is re-encoded only then).
    pub fn stamp(&self, msg: Message, returns: u32) -> Message {
        if !self.counted || returns == 0 {
            return msg;
        }
        let Ok(mut props) = BasicProperties::decode_bytes(msg.properties.clone()) else {
            return msg;
        };
        props
            .headers
            .get_or_insert_with(FieldTable::default)
            .insert("x-delivery-count", FieldValue::I64(i64::from(returns)));
        let mut encoded = BytesMut::new();
        props.encode(&mut encoded);
        Message {
            properties: encoded.freeze(),
            ..msg
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn a_limit_counts_returns_and_stamps_redeliveries() {
        let mut args = FieldTable::default();
        args.insert("x-delivery-limit", FieldValue::I32(2));
        let r = Redelivery::from_arguments(&args);
        assert!(!r.exceeded(2) && r.exceeded(3));
        let msg = Message::new(
            Bytes::new(),
            Bytes::new(),
            Bytes::from_static(b"\0\0"),
            Bytes::from_static(b"x"),
            false,
        );
        assert_eq!(r.stamp(msg.clone(), 0).properties, msg.properties);
        let stamped = r.stamp(msg, 2);
        let headers = BasicProperties::decode_bytes(stamped.properties)
            .ok()
            .and_then(|p| p.headers)
            .expect("headers");
        assert_eq!(headers.get("x-delivery-count"), Some(&FieldValue::I64(2)));
        assert_eq!(
            Redelivery::from_arguments(&FieldTable::default()),
            Redelivery::default()
        );
    }
}
