//! Queue operations as values, so that a connection on any shard can ask the queue's owner
//! shard to apply them (directly when local, over the ring otherwise).

use bytes::Bytes;

use super::{ConnRef, QueueRef};
use crate::protocol::constants::{ACCESS_REFUSED, NOT_FOUND, PRECONDITION_FAILED, RESOURCE_LOCKED};
use crate::protocol::FieldTable;

/// An AMQP error to report to the peer: `code` decides channel (soft) or connection (hard) close.
#[derive(Debug, Clone, PartialEq)]
pub struct AmqpError {
    pub code: u16,
    pub text: String,
}

impl AmqpError {
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        AmqpError {
            code,
            text: text.into(),
        }
    }
    pub fn not_found(text: String) -> Self {
        AmqpError::new(NOT_FOUND, text)
    }
    pub fn precondition(text: String) -> Self {
        AmqpError::new(PRECONDITION_FAILED, text)
    }
    pub fn access_refused(text: String) -> Self {
        AmqpError::new(ACCESS_REFUSED, text)
    }
    pub fn resource_locked(text: String) -> Self {
        AmqpError::new(RESOURCE_LOCKED, text)
    }
}

/// Everything the queue needs to know about a new consumer.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Unique per connection shard; lets acks find the consumer to credit.
    pub id: u64,
    pub conn: ConnRef,
    pub channel: u16,
    pub tag: Bytes,
    pub no_ack: bool,
    pub exclusive: bool,
    /// basic.qos global=false in force when the consumer was created (0 = unlimited).
    pub prefetch_count: u16,
    /// basic.qos global=true of the channel (0 = unlimited).
    pub channel_prefetch_count: u16,
    /// The `x-priority` argument of basic.consume: higher goes first (default 0).
    pub priority: i32,
}

#[derive(Debug)]
pub enum QueueOp {
    Declare {
        vhost: Bytes,
        name: Bytes,
        passive: bool,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        arguments: FieldTable,
        owner: ConnRef,
    },
    Delete {
        vhost: Bytes,
        name: Bytes,
        if_unused: bool,
        if_empty: bool,
        owner: ConnRef,
    },
    Purge {
        vhost: Bytes,
        name: Bytes,
        owner: ConnRef,
    },
    Consume {
        vhost: Bytes,
        name: Bytes,
        spec: ConsumerSpec,
    },
    Cancel {
        queue: QueueRef,
        consumer_id: u64,
        /// The consumer's channel is closing: its unacked messages come back (with single
        /// active consumer, before the next consumer takes over).
        channel_closed: bool,
    },
    Get {
        vhost: Bytes,
        name: Bytes,
        no_ack: bool,
        conn: ConnRef,
        channel: u16,
    },
    /// Deletes the exclusive queues the connection owned on this shard.
    ConnectionClosed { conn: ConnRef },
    /// The vhost was deleted: every queue of it on this shard goes.
    DeleteVhost { vhost: Bytes },
}

#[derive(Debug)]
pub enum OpOk {
    Declared {
        queue: QueueRef,
        name: Bytes,
        durable: bool,
        message_count: u32,
        consumer_count: u32,
    },
    Count(u32),
    Consuming(QueueRef),
    /// basic.get: None when the queue is empty.
    Got(Option<Box<Got>>),
    /// basic.get: the head's body is being read back from disk; ask again.
    PagingIn,
    /// A shard's answer to `warren ctl` (see [`super::inspect`]).
    Inspected(Box<super::inspect::Inspected>),
    Done,
}

/// What an ack, nack, reject or channel close does to unacked messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleKind {
    /// Done with: basic.ack.
    Ack,
    /// basic.nack or basic.reject without requeue: dead-lettered where the queue says so,
    /// dropped otherwise.
    Reject,
    /// Back to the queue in its original position, marked redelivered.
    Requeue,
}

/// A message taken by basic.get.
#[derive(Debug)]
pub struct Got {
    pub queue: QueueRef,
    pub seq: u64,
    pub redelivered: bool,
    pub msg: super::Message,
    /// Ready messages left in the queue.
    pub message_count: u32,
}
