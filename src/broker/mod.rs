//! The broker state a shard owns: its queues, their messages and consumers.
//!
//! Everything here is single-threaded and synchronous. Operations never talk to a socket or a
//! ring directly: they push `(target shard, ShardMsg)` pairs into an outbox that the shard sends
//! once the operation returns, so no borrow of this state is ever held across a send.

pub mod message;
pub mod ops;
pub mod queue;
pub mod ready;
pub mod topology;

use std::collections::HashMap;

use bytes::Bytes;
use ready::Ready;
use rustc_hash::FxHashMap;
use slab::Slab;

pub use message::{Loc, Message};
pub use ops::{AmqpError, ConsumerSpec, Got, OpOk, QueueOp, SettleKind};
use queue::Queue;

use crate::shard::{QueueTarget, ShardMsg};
use crate::store::record::Record;
use crate::store::recover::RecoveredQueue;
use crate::store::Store;

/// A connection anywhere in the broker: its shard, its slab key there, and a serial that
/// tells a reused slab slot apart from the connection that had it before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnRef {
    pub shard: u16,
    pub key: u32,
    pub serial: u32,
}

/// A queue anywhere in the broker, checked the same way as [`ConnRef`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueRef {
    pub shard: u16,
    pub key: u32,
    pub serial: u32,
}

pub type Outbox = Vec<(usize, ShardMsg)>;

pub struct Broker {
    shard: u16,
    queues: Slab<Queue>,
    by_name: HashMap<Bytes, usize>,
    next_serial: u32,
    sh: Shared,
    /// The last operation wrote a definition that must be durable before its -ok goes out.
    sync_wanted: bool,
}

/// What every queue of a shard shares.
pub struct Shared {
    /// Unacked deliveries per (connection, channel), for basic.qos global=true.
    pub channel_in_flight: FxHashMap<(ConnRef, u16), u32>,
    /// The shard's store; None for an in-memory broker (benches).
    pub store: Option<Store>,
    /// Bytes of message bodies the shard's queues hold in memory, and how many they may hold
    /// before bodies of waiting messages are paged out to the store.
    pub resident: u64,
    pub budget: u64,
    /// Bodies to read back from the store, per queue: (seq, where).
    pub page_in: Vec<(QueueRef, Vec<(u64, Loc)>)>,
    /// Reused buffer for messages leaving a queue in bulk.
    pub scratch: Vec<Ready>,
}

impl Broker {
    /// A broker that keeps everything in memory.
    pub fn new(shard: usize) -> Self {
        Broker {
            shard: shard as u16,
            queues: Slab::new(),
            by_name: HashMap::new(),
            next_serial: 1,
            sh: Shared {
                channel_in_flight: FxHashMap::default(),
                store: None,
                resident: 0,
                budget: u64::MAX,
                page_in: Vec::new(),
                scratch: Vec::new(),
            },
            sync_wanted: false,
        }
    }

    /// Adds queues recovered from the store, in the given order (their references are
    /// deterministic: slab keys from 0, serials from 1).
    pub fn recovered(&mut self, queues: Vec<RecoveredQueue>, resident: u64) {
        for rq in queues {
            let key = self.insert_queue(
                rq.queue_id,
                rq.name,
                true,
                None,
                rq.auto_delete,
                rq.arguments,
            );
            let q = &mut self.queues[key];
            q.set_next_seq(rq.next_seq);
            for (seq, msg) in rq.messages {
                q.push_recovered(seq, msg);
            }
        }
        self.sh.resident = resident;
    }

    /// The reference a recovered queue gets: see [`Broker::recovered`].
    pub fn recovered_ref(shard: usize, index: usize) -> QueueRef {
        QueueRef {
            shard: shard as u16,
            key: index as u32,
            serial: index as u32 + 1,
        }
    }

    pub fn attach_store(&mut self, store: Store, budget: u64) {
        self.sh.store = Some(store);
        self.sh.budget = budget;
    }

    pub fn store(&self) -> Option<&Store> {
        self.sh.store.as_ref()
    }

    pub fn store_mut(&mut self) -> Option<&mut Store> {
        self.sh.store.as_mut()
    }

    pub fn resident_bytes(&self) -> u64 {
        self.sh.resident
    }

    /// True once after an operation that wrote a definition which must be durable before
    /// the operation's -ok goes out.
    pub fn take_sync_wanted(&mut self) -> bool {
        std::mem::take(&mut self.sync_wanted)
    }

    pub fn has_page_requests(&self) -> bool {
        !self.sh.page_in.is_empty()
    }

    pub fn take_page_requests(&mut self) -> Vec<(QueueRef, Vec<(u64, Loc)>)> {
        std::mem::take(&mut self.sh.page_in)
    }

    /// Bodies the pager read back for `queue`.
    pub fn paged_in(&mut self, queue: QueueRef, bodies: &mut Vec<(u64, Bytes)>, out: &mut Outbox) {
        let Some(key) = self.lookup(queue) else {
            return;
        };
        let q = &mut self.queues[key];
        q.paged_in(bodies, &mut self.sh);
        q.dispatch(&mut self.sh, out);
    }

    fn insert_queue(
        &mut self,
        queue_id: u64,
        name: Bytes,
        durable: bool,
        owner: Option<ConnRef>,
        auto_delete: bool,
        arguments: crate::protocol::FieldTable,
    ) -> usize {
        let serial = self.next_serial;
        self.next_serial = self.next_serial.wrapping_add(1);
        let entry = self.queues.vacant_entry();
        let key = entry.key();
        let id = QueueRef {
            shard: self.shard,
            key: key as u32,
            serial,
        };
        entry.insert(Queue::new(
            id,
            queue_id,
            name.clone(),
            durable,
            owner,
            auto_delete,
            arguments,
        ));
        self.by_name.insert(name, key);
        key
    }

    /// A queue id unique across restarts: time, shard and a counter, mixed.
    fn new_queue_id(&self) -> u64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut x = nanos ^ (u64::from(self.shard) << 56) ^ (u64::from(self.next_serial) << 20);
        // splitmix64 finalizer
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    fn lookup(&self, queue: QueueRef) -> Option<usize> {
        let q = self.queues.get(queue.key as usize)?;
        (q.id == queue).then_some(queue.key as usize)
    }

    fn queue_ref(&self, key: usize) -> QueueRef {
        self.queues[key].id
    }

    /// A publish routed to a queue on this shard. Hands the message back when the queue does
    /// not exist (to be dropped, or returned when mandatory).
    /// Ok(true) when the message was written to the store: its confirm waits for the sync.
    #[allow(clippy::result_large_err)] // handing the message back by value is the point
    pub fn enqueue(
        &mut self,
        target: QueueTarget,
        msg: Message,
        out: &mut Outbox,
    ) -> Result<bool, Message> {
        let key = match target {
            QueueTarget::Name(name) => self.by_name.get(&name).copied(),
            QueueTarget::Ref(queue) => self.lookup(queue),
        };
        let Some(key) = key else {
            return Err(msg);
        };
        let q = &mut self.queues[key];
        let stored = q.push(msg, &mut self.sh);
        q.dispatch(&mut self.sh, out);
        q.compact_waiting(&mut self.sh);
        Ok(stored)
    }

    pub fn credit(&mut self, queue: QueueRef, consumer_id: u64, n: u32, out: &mut Outbox) {
        let Some(key) = self.lookup(queue) else {
            return;
        };
        let q = &mut self.queues[key];
        q.credit(consumer_id, n);
        q.dispatch(&mut self.sh, out);
    }

    pub fn settle(&mut self, queue: QueueRef, kind: SettleKind, seqs: &[u64], out: &mut Outbox) {
        let Some(key) = self.lookup(queue) else {
            return;
        };
        let q = &mut self.queues[key];
        q.settle(kind, seqs, &mut self.sh);
        q.dispatch(&mut self.sh, out);
    }

    /// Applies one queue operation. Side effects (deliveries, cancel notifications) go to `out`.
    pub fn apply(&mut self, op: QueueOp, out: &mut Outbox) -> Result<OpOk, AmqpError> {
        match op {
            QueueOp::Declare {
                name,
                passive,
                durable,
                exclusive,
                auto_delete,
                arguments,
                owner,
            } => {
                if let Some(&key) = self.by_name.get(&name) {
                    self.queues[key].expire(&mut self.sh);
                    let q = &self.queues[key];
                    q.check_exclusive(owner)?;
                    if !passive {
                        q.check_equivalent(durable, exclusive, auto_delete, &arguments)?;
                    }
                    return Ok(OpOk::Declared {
                        queue: self.queue_ref(key),
                        name,
                        durable: q.durable,
                        message_count: q.ready_count() as u32,
                        consumer_count: q.consumer_count() as u32,
                    });
                }
                if passive {
                    return Err(AmqpError::not_found(format!(
                        "no queue '{}' in vhost '/'",
                        String::from_utf8_lossy(&name)
                    )));
                }
                let owner = exclusive.then_some(owner);
                let queue_id = self.new_queue_id();
                // Exclusive queues die with their connection, so they are never recovered.
                if durable && !exclusive {
                    if let Some(store) = self.sh.store.as_mut() {
                        store.append_def(&Record::Queue {
                            queue_id,
                            name: name.clone(),
                            auto_delete,
                            arguments: arguments.clone(),
                        });
                        self.sync_wanted = true;
                    }
                }
                let key = self.insert_queue(
                    queue_id,
                    name.clone(),
                    durable,
                    owner,
                    auto_delete,
                    arguments,
                );
                Ok(OpOk::Declared {
                    queue: self.queue_ref(key),
                    name,
                    durable,
                    message_count: 0,
                    consumer_count: 0,
                })
            }
            QueueOp::Delete {
                name,
                if_unused,
                if_empty,
                owner,
            } => {
                let Some(&key) = self.by_name.get(&name) else {
                    return Ok(OpOk::Count(0));
                };
                let q = &self.queues[key];
                q.check_exclusive(owner)?;
                if if_unused && q.consumer_count() > 0 {
                    return Err(AmqpError::precondition(format!(
                        "queue '{}' in vhost '/' in use",
                        q.display_name()
                    )));
                }
                if if_empty && q.ready_count() > 0 {
                    return Err(AmqpError::precondition(format!(
                        "queue '{}' in vhost '/' is not empty",
                        q.display_name()
                    )));
                }
                Ok(OpOk::Count(self.delete(key, out)))
            }
            QueueOp::Purge { name, owner } => {
                let key = self.existing(&name)?;
                let q = &mut self.queues[key];
                q.check_exclusive(owner)?;
                Ok(OpOk::Count(q.purge(&mut self.sh)))
            }
            QueueOp::Consume { name, spec } => {
                let key = self.existing(&name)?;
                let q = &mut self.queues[key];
                q.check_exclusive(spec.conn)?;
                q.add_consumer(spec)?;
                q.dispatch(&mut self.sh, out);
                Ok(OpOk::Consuming(self.queue_ref(key)))
            }
            QueueOp::Cancel { queue, consumer_id } => {
                if let Some(key) = self.lookup(queue) {
                    let q = &mut self.queues[key];
                    q.remove_consumer(consumer_id);
                    if q.should_auto_delete() {
                        self.delete(key, out);
                    } else {
                        self.queues[key].dispatch(&mut self.sh, out);
                    }
                }
                Ok(OpOk::Done)
            }
            QueueOp::Get {
                name,
                no_ack,
                conn,
                channel,
            } => {
                let key = self.existing(&name)?;
                let q = &mut self.queues[key];
                q.check_exclusive(conn)?;
                let got =
                    q.get(no_ack, conn, channel, &mut self.sh)
                        .map(|(seq, redelivered, msg)| {
                            Box::new(Got {
                                queue: q.id,
                                seq,
                                redelivered,
                                msg,
                                message_count: q.ready_count() as u32,
                            })
                        });
                Ok(OpOk::Got(got))
            }
            QueueOp::ConnectionClosed { conn } => {
                let owned: Vec<usize> = self
                    .queues
                    .iter()
                    .filter(|(_, q)| q.exclusive_owner == Some(conn))
                    .map(|(key, _)| key)
                    .collect();
                for key in owned {
                    self.delete(key, out);
                }
                self.sh.channel_in_flight.retain(|(c, _), _| *c != conn);
                Ok(OpOk::Done)
            }
        }
    }

    fn existing(&self, name: &Bytes) -> Result<usize, AmqpError> {
        self.by_name.get(name).copied().ok_or_else(|| {
            AmqpError::not_found(format!(
                "no queue '{}' in vhost '/'",
                String::from_utf8_lossy(name)
            ))
        })
    }

    /// Removes a queue; its consumers are told (basic.cancel from the server). Returns the
    /// number of ready messages it held.
    fn delete(&mut self, key: usize, out: &mut Outbox) -> u32 {
        let q = self.queues.remove(key);
        self.by_name.remove(&q.name);
        if q.durable && q.exclusive_owner.is_none() {
            if let Some(store) = self.sh.store.as_mut() {
                store.append_def(&Record::QueueGone {
                    queue_id: q.queue_id,
                });
                self.sync_wanted = true;
            }
        }
        // Its bindings go everywhere, through the topology owner like any other change.
        out.push((
            0,
            ShardMsg::TopologyRequest {
                from: self.shard,
                id: 0,
                change: topology::TopologyChange::RemoveQueue {
                    queue: q.id,
                    name: q.name.clone(),
                    durable: q.durable,
                },
            },
        ));
        q.release(&mut self.sh, out)
    }
}
