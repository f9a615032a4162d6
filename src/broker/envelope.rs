//! What shards send each other: every message that crosses a ring (or the local inbox) is a
//! [`ShardMsg`]. Broker operations produce them into an [`Outbox`]; the shard layer carries
//! them to the target shard and applies them there.

use bytes::Bytes;
use smallvec::SmallVec;

use super::ops::{AmqpError, OpOk, QueueOp, SettleKind};
use super::topology::TopologyChange;
use crate::ids::{name_hash, ConnRef, QueueRef};
use crate::message::Message;

/// Messages for other shards (or this one), in the order they were produced.
pub type Outbox = Vec<(usize, ShardMsg)>;

/// What waits in the store for a sync: a message for a shard.
pub type Waiter = (usize, ShardMsg);

/// A message handed to a queue or connection on another (or the same) shard.
#[derive(Debug)]
pub struct Delivery {
    pub conn: ConnRef,
    pub channel: u16,
    pub consumer_tag: Bytes,
    pub consumer_id: u64,
    pub queue: QueueRef,
    pub seq: u64,
    pub redelivered: bool,
    pub no_ack: bool,
    pub msg: Message,
}

#[derive(Debug)]
pub enum ShardMsg {
    /// A publish routed to a queue on the target shard.
    Enqueue {
        queue: QueueTarget,
        msg: Message,
        origin: Origin,
    },
    /// Publisher confirm for one message from one of its target queues.
    Confirm {
        conn: ConnRef,
        channel: u16,
        seq: u64,
        ok: bool,
    },
    /// A reply published to `amq.rabbitmq.reply-to.…`, for the requester's channel.
    DirectReply {
        conn: ConnRef,
        channel: u16,
        /// The secret of the reply address: the requester's channel delivers only a match.
        secret: u128,
        msg: Message,
    },
    /// A message for a consumer whose connection lives on the target shard.
    Deliver(Delivery),
    /// Acks or requeues from a channel, for a queue on the target shard.
    Settle {
        queue: QueueRef,
        kind: SettleKind,
        seqs: SmallVec<[u64; 4]>,
    },
    /// A queue delivered `n` messages the connection published to it (or took them with no
    /// consumer to wait for): the connection may publish that many more there.
    PublishCredit {
        conn: ConnRef,
        key: CreditKey,
        n: u32,
    },
    /// A connection wrote `n` deliveries of the consumer to its socket: more may come.
    Credit {
        queue: QueueRef,
        consumer_id: u64,
        n: u32,
    },
    /// The queue went away: the consumer is cancelled by the server.
    ConsumerCancelled {
        conn: ConnRef,
        channel: u16,
        tag: Bytes,
    },
    /// A mandatory message that no queue took (basic.return 312 NO_ROUTE).
    Return {
        conn: ConnRef,
        channel: u16,
        msg: Message,
    },
    Request {
        from: u16,
        id: u64,
        op: QueueOp,
    },
    /// An operation whose answer nobody waits for (cleanup after a channel or connection).
    Oneway(QueueOp),
    Reply {
        id: u64,
        result: Result<OpOk, AmqpError>,
    },
    /// To shard 0, the topology owner: validate, apply everywhere, then answer `id` on `from`
    /// (id 0: nobody waits).
    TopologyRequest {
        from: u16,
        id: u64,
        change: TopologyChange,
    },
    /// From shard 0: apply to the local replica and acknowledge `token`.
    TopologyApply {
        change: TopologyChange,
        token: u64,
    },
    TopologyApplied {
        token: u64,
    },
    /// From shard 0 for `warren ctl`: answer `id` on `from` with what this shard holds
    /// (or did). Boxed: a rare message must not make every ring slot bigger.
    Inspect {
        from: u16,
        id: u64,
        what: Box<super::inspect::Inspect>,
    },
    /// Answer `id` on `from` once everything this shard's store holds so far is durable
    /// (tx.commit waits for it).
    SyncBarrier {
        from: u16,
        id: u64,
    },
}

/// Who published a message, and what they asked for.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub conn: ConnRef,
    pub channel: u16,
    /// basic.return when no queue takes it.
    pub mandatory: bool,
    /// Publisher-confirm sequence number, in confirm mode.
    pub confirm: Option<u64>,
    /// A queue dead-lettered it (`conn` is then no connection): the target drops it when it
    /// closes a dead-letter cycle.
    pub dead_letter: bool,
}

impl Origin {
    /// The origin of a message a queue of `shard` dead-lettered: no connection, no confirm.
    pub fn dead_letter(shard: u16) -> Origin {
        Origin {
            conn: ConnRef {
                shard,
                key: u32::MAX,
                serial: 0,
            },
            channel: 0,
            mandatory: false,
            confirm: None,
            dead_letter: true,
        }
    }
}

/// How a publish names its queue: the default exchange routes by name (the owner shard looks
/// it up), exchanges route to queue references from the replica.
#[derive(Debug)]
pub enum QueueTarget {
    /// A queue by (vhost, name): a publish to the default exchange.
    Name {
        vhost: Bytes,
        name: Bytes,
    },
    Ref(QueueRef),
}

impl QueueTarget {
    /// The credit a publisher spends on this target (see [`CreditKey`]), as seen from
    /// `shard`, the shard that owns the queue.
    pub fn credit_key(&self, shard: u16) -> CreditKey {
        match self {
            QueueTarget::Name { name, .. } => CreditKey::Named {
                shard,
                name_hash: name_hash(name),
            },
            QueueTarget::Ref(queue) => CreditKey::Queue(*queue),
        }
    }
}

/// Messages a connection may have outstanding in one destination queue whose consumers are
/// active: the most a publisher can run ahead of them.
pub const INITIAL_CREDIT: u32 = 2000;
/// A queue's shard sends a publisher its credit back once this much has gathered (and all of
/// it every [`GRANT_FLUSH_EVERY`]): one message per publisher for many messages delivered.
pub const GRANT_BATCH: u32 = 200;
/// How often a shard sends back whatever credit has gathered, however little.
pub const GRANT_FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(50);
// A publisher out of credit has more held back than one batch, so it is always sent some.
const _: () = assert!(GRANT_BATCH < INITIAL_CREDIT);

/// What a publishing connection holds credit for: a queue it routed to through an
/// exchange, or (default exchange) a queue name on the shard that owns it, which the
/// publisher routes to without knowing the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CreditKey {
    Queue(QueueRef),
    Named { shard: u16, name_hash: u64 },
}
