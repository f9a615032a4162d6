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
use rustc_hash::FxHashMap;
use slab::Slab;

pub use message::Message;
pub use ops::{AmqpError, ConsumerSpec, Got, OpOk, QueueOp, SettleKind};
use queue::Queue;

use crate::shard::{QueueTarget, ShardMsg};

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
    /// Unacked deliveries per (connection, channel), for basic.qos global=true.
    channel_in_flight: FxHashMap<(ConnRef, u16), u32>,
}

impl Broker {
    pub fn new(shard: usize) -> Self {
        Broker {
            shard: shard as u16,
            queues: Slab::new(),
            by_name: HashMap::new(),
            next_serial: 1,
            channel_in_flight: FxHashMap::default(),
        }
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
    #[allow(clippy::result_large_err)] // handing the message back by value is the point
    pub fn enqueue(
        &mut self,
        target: QueueTarget,
        msg: Message,
        out: &mut Outbox,
    ) -> Result<(), Message> {
        let key = match target {
            QueueTarget::Name(name) => self.by_name.get(&name).copied(),
            QueueTarget::Ref(queue) => self.lookup(queue),
        };
        let Some(key) = key else {
            return Err(msg);
        };
        let q = &mut self.queues[key];
        q.push(msg);
        q.dispatch(&mut self.channel_in_flight, out);
        q.compact_waiting();
        Ok(())
    }

    pub fn credit(&mut self, queue: QueueRef, consumer_id: u64, n: u32, out: &mut Outbox) {
        let Some(key) = self.lookup(queue) else {
            return;
        };
        let q = &mut self.queues[key];
        q.credit(consumer_id, n);
        q.dispatch(&mut self.channel_in_flight, out);
    }

    pub fn settle(&mut self, queue: QueueRef, kind: SettleKind, seqs: &[u64], out: &mut Outbox) {
        let Some(key) = self.lookup(queue) else {
            return;
        };
        let q = &mut self.queues[key];
        q.settle(kind, seqs, &mut self.channel_in_flight);
        q.dispatch(&mut self.channel_in_flight, out);
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
                    self.queues[key].expire();
                    let q = &self.queues[key];
                    q.check_exclusive(owner)?;
                    if !passive {
                        q.check_equivalent(durable, exclusive, auto_delete, &arguments)?;
                    }
                    return Ok(OpOk::Declared {
                        queue: self.queue_ref(key),
                        name,
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
                let serial = self.next_serial;
                self.next_serial = self.next_serial.wrapping_add(1);
                let owner = exclusive.then_some(owner);
                let entry = self.queues.vacant_entry();
                let key = entry.key();
                let id = QueueRef {
                    shard: self.shard,
                    key: key as u32,
                    serial,
                };
                entry.insert(Queue::new(
                    id,
                    name.clone(),
                    durable,
                    owner,
                    auto_delete,
                    arguments,
                ));
                self.by_name.insert(name.clone(), key);
                Ok(OpOk::Declared {
                    queue: self.queue_ref(key),
                    name,
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
                Ok(OpOk::Count(q.purge()))
            }
            QueueOp::Consume { name, spec } => {
                let key = self.existing(&name)?;
                let q = &mut self.queues[key];
                q.check_exclusive(spec.conn)?;
                q.add_consumer(spec)?;
                q.dispatch(&mut self.channel_in_flight, out);
                Ok(OpOk::Consuming(self.queue_ref(key)))
            }
            QueueOp::Cancel { queue, consumer_id } => {
                if let Some(key) = self.lookup(queue) {
                    let q = &mut self.queues[key];
                    q.remove_consumer(consumer_id);
                    if q.should_auto_delete() {
                        self.delete(key, out);
                    } else {
                        self.queues[key].dispatch(&mut self.channel_in_flight, out);
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
                let got = q.get(no_ack, conn, channel).map(|(seq, redelivered, msg)| {
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
                self.channel_in_flight.retain(|(c, _), _| *c != conn);
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
        // Its bindings go everywhere, through the topology owner like any other change.
        out.push((
            0,
            ShardMsg::TopologyRequest {
                from: self.shard,
                id: 0,
                change: topology::TopologyChange::RemoveQueue { queue: q.id },
            },
        ));
        q.release(&mut self.channel_in_flight, out)
    }
}
