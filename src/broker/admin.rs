//! Queue operations a connection asks of the queue's owner shard ([`QueueOp`]): declare,
//! delete, purge, consume, cancel, get, and the cleanup after a connection closes.

use bytes::Bytes;

use super::count::Full;
use super::ops::{AmqpError, ConsumerSpec, Got, OpOk, QueueOp};
use super::ready::now_ms;
use super::topology::TopologyChange;
use super::{Broker, ConnRef, Outbox, ShardMsg};
use crate::protocol::FieldTable;
use crate::store::record::Record;

/// queue.declare as the owner shard sees it.
pub struct Declare {
    pub vhost: Bytes,
    pub name: Bytes,
    pub passive: bool,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    pub owner: ConnRef,
}

impl Broker {
    /// Applies one queue operation. Side effects (deliveries, cancel notifications) go to `out`.
    pub fn apply(&mut self, op: QueueOp, out: &mut Outbox) -> Result<OpOk, AmqpError> {
        let result = match op {
            QueueOp::Declare {
                vhost,
                name,
                passive,
                durable,
                exclusive,
                auto_delete,
                arguments,
                owner,
            } => self.declare(Declare {
                vhost,
                name,
                passive,
                durable,
                exclusive,
                auto_delete,
                arguments,
                owner,
            }),
            QueueOp::Delete {
                vhost,
                name,
                if_unused,
                if_empty,
                owner,
            } => self.delete_queue((&vhost, &name), if_unused, if_empty, owner, out),
            QueueOp::Purge { vhost, name, owner } => self.purge((&vhost, &name), owner),
            QueueOp::Consume { vhost, name, spec } => self.consume((&vhost, &name), spec, out),
            QueueOp::Cancel {
                queue,
                consumer_id,
                channel_closed,
            } => {
                if let Some(key) = self.lookup(queue) {
                    self.cancel(key, consumer_id, channel_closed, out);
                }
                Ok(OpOk::Done)
            }
            QueueOp::Get {
                vhost,
                name,
                no_ack,
                conn,
                channel,
            } => self.get((&vhost, &name), no_ack, conn, channel),
            QueueOp::ConnectionClosed { conn } => {
                self.connection_closed(conn, out);
                Ok(OpOk::Done)
            }
            QueueOp::DeleteVhost { vhost } => {
                let keys: Vec<usize> = self.by_name.in_vhost(&vhost).copied().collect();
                for key in keys {
                    self.delete(key, out);
                }
                Ok(OpOk::Done)
            }
        };
        debug_assert!(self.check_invariants());
        result
    }

    fn declare(&mut self, d: Declare) -> Result<OpOk, AmqpError> {
        crate::stats::add(crate::stats::Counter::QueueDeclared, 1);
        if let Some(&key) = self.by_name.get(&d.vhost, &d.name) {
            self.queues[key].touch();
            self.queues[key].expire(&mut self.sh);
            let q = &self.queues[key];
            q.check_exclusive(d.owner)?;
            if !d.passive {
                q.check_equivalent(d.durable, d.exclusive, d.auto_delete, &d.arguments)?;
            }
            return Ok(OpOk::Declared {
                queue: self.queue_ref(key),
                name: d.name,
                durable: q.durable,
                message_count: q.ready_count() as u32,
                consumer_count: q.consumer_count() as u32,
            });
        }
        if d.passive {
            return Err(no_queue(&d.vhost, &d.name));
        }
        let vhost_max = self.vhost_queue_max.get(&d.vhost).copied();
        if let Err(full) = self.queue_count.try_add(&d.vhost, vhost_max) {
            let name = String::from_utf8_lossy(&d.name);
            let limit = match full {
                Full::Vhost(max) => format!(
                    "queue limit in vhost '{}' ({max})",
                    String::from_utf8_lossy(&d.vhost)
                ),
                Full::Node(max) => format!("queue limit in cluster ({max})"),
            };
            return Err(AmqpError::precondition(format!(
                "cannot declare queue '{name}': {limit} is reached"
            )));
        }
        crate::stats::add(crate::stats::Counter::QueueCreated, 1);
        let owner = d.exclusive.then_some(d.owner);
        let queue_id = self.new_queue_id();
        // Exclusive queues die with their connection, so they are never recovered.
        if d.durable && !d.exclusive {
            if let Some(store) = self.sh.store.as_mut() {
                store.append_def(&Record::Queue {
                    queue_id,
                    vhost: d.vhost.clone(),
                    name: d.name.clone(),
                    auto_delete: d.auto_delete,
                    arguments: d.arguments.clone(),
                });
                self.sync_wanted = true;
            }
        }
        let key = self.insert_queue(
            queue_id,
            d.vhost,
            d.name.clone(),
            d.durable,
            owner,
            d.auto_delete,
            d.arguments,
        );
        Ok(OpOk::Declared {
            queue: self.queue_ref(key),
            name: d.name,
            durable: d.durable,
            message_count: 0,
            consumer_count: 0,
        })
    }

    fn delete_queue(
        &mut self,
        (vhost, name): Named,
        if_unused: bool,
        if_empty: bool,
        owner: ConnRef,
        out: &mut Outbox,
    ) -> Result<OpOk, AmqpError> {
        let Some(&key) = self.by_name.get(vhost, name) else {
            return Ok(OpOk::Count(0));
        };
        let q = &self.queues[key];
        q.check_exclusive(owner)?;
        if if_unused && q.consumer_count() > 0 {
            return Err(AmqpError::precondition(format!(
                "queue '{}' in vhost '{}' in use",
                q.display_name(),
                q.display_vhost()
            )));
        }
        if if_empty && q.ready_count() > 0 {
            return Err(AmqpError::precondition(format!(
                "queue '{}' in vhost '{}' is not empty",
                q.display_name(),
                q.display_vhost()
            )));
        }
        Ok(OpOk::Count(self.delete(key, out)))
    }

    fn purge(&mut self, name: Named, owner: ConnRef) -> Result<OpOk, AmqpError> {
        let key = self.existing(name)?;
        let q = &mut self.queues[key];
        q.check_exclusive(owner)?;
        Ok(OpOk::Count(q.purge(&mut self.sh)))
    }

    fn consume(
        &mut self,
        name: Named,
        spec: ConsumerSpec,
        out: &mut Outbox,
    ) -> Result<OpOk, AmqpError> {
        let key = self.existing(name)?;
        let q = &mut self.queues[key];
        q.check_exclusive(spec.conn)?;
        q.add_consumer(spec)?;
        q.dispatch(&mut self.sh, out);
        Ok(OpOk::Consuming(self.queue_ref(key)))
    }

    fn cancel(&mut self, key: usize, consumer_id: u64, channel_closed: bool, out: &mut Outbox) {
        let q = &mut self.queues[key];
        if channel_closed && q.single_active() {
            // The next consumer gets these first, redelivered; the channel's own requeue of
            // them (behind this cancel) then finds nothing.
            q.requeue_unacked_of(consumer_id, &mut self.sh);
        }
        q.remove_consumer(consumer_id, &mut self.sh);
        if q.should_auto_delete() {
            self.delete(key, out);
        } else {
            self.queues[key].dispatch(&mut self.sh, out);
        }
    }

    fn get(
        &mut self,
        name: Named,
        no_ack: bool,
        conn: ConnRef,
        channel: u16,
    ) -> Result<OpOk, AmqpError> {
        let key = self.existing(name)?;
        let q = &mut self.queues[key];
        q.check_exclusive(conn)?;
        q.touch();
        let Ok(got) = q.get(no_ack, conn, channel, &mut self.sh) else {
            return Ok(OpOk::PagingIn);
        };
        let got = got.map(|(seq, redelivered, msg)| {
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

    /// Deletes the exclusive queues the connection owned on this shard (from the index: no
    /// other queue is looked at).
    fn connection_closed(&mut self, conn: ConnRef, out: &mut Outbox) {
        let owned = self.exclusive_by_conn.remove(&conn).unwrap_or_default();
        for key in owned {
            self.delete(key, out);
        }
        self.sh.channel_in_flight.retain(|(c, _), _| *c != conn);
    }

    fn forget_exclusive(&mut self, owner: ConnRef, key: usize) {
        if let Some(keys) = self.exclusive_by_conn.get_mut(&owner) {
            keys.retain(|k| *k != key);
            if keys.is_empty() {
                self.exclusive_by_conn.remove(&owner);
            }
        }
    }

    fn existing(&self, (vhost, name): Named) -> Result<usize, AmqpError> {
        self.by_name
            .get(vhost, name)
            .copied()
            .ok_or_else(|| no_queue(vhost, name))
    }

    /// Deletes the queues whose x-expires period passed unused.
    pub(super) fn delete_unused(&mut self, out: &mut Outbox) {
        let now = now_ms();
        let unused: Vec<usize> = self
            .queues
            .iter()
            .filter(|(_, q)| q.unused_too_long(now))
            .map(|(key, _)| key)
            .collect();
        for key in unused {
            crate::info!(
                "queue '{}' in vhost '{}' expired: unused for its x-expires period",
                self.queues[key].display_name(),
                self.queues[key].display_vhost()
            );
            self.delete(key, out);
        }
    }

    /// Removes a queue; its consumers are told (basic.cancel from the server). Returns the
    /// number of ready messages it held.
    fn delete(&mut self, key: usize, out: &mut Outbox) -> u32 {
        crate::stats::add(crate::stats::Counter::QueueDeleted, 1);
        let q = self.queues.remove(key);
        self.by_name.remove(&q.vhost, &q.name);
        self.queue_count.remove(&q.vhost);
        if let Some(owner) = q.exclusive_owner {
            self.forget_exclusive(owner, key);
        }
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
                change: TopologyChange::RemoveQueue {
                    queue: q.id,
                    vhost: q.vhost.clone(),
                    name: q.name.clone(),
                    durable: q.durable,
                },
            },
        ));
        q.release(&mut self.sh, out)
    }
}

/// A queue's (vhost, name).
type Named<'a> = (&'a [u8], &'a [u8]);

fn no_queue(vhost: &[u8], name: &[u8]) -> AmqpError {
    AmqpError::not_found(format!(
        "no queue '{}' in vhost '{}'",
        String::from_utf8_lossy(name),
        String::from_utf8_lossy(vhost)
    ))
}
