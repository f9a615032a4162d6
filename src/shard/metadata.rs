//! Exchanges and bindings change through one owner shard, which validates each change
//! against its replica, stores it when durable, applies it, and sends the same change to
//! every other shard; the requester's `-ok` goes out once every shard applied it (and, for a
//! stored change, once it is on disk). Every replica applies the same deterministic changes
//! in the same order, so they stay identical.
//!
//! A change about a queue (queue.bind, queue.unbind) travels to the owner *through the
//! queue's shard*: that shard removes a deleted queue's bindings by sending the owner a
//! `RemoveQueue`, without waiting, and a ring is FIFO, so a bind sent after the delete
//! (against a queue declared again meanwhile) reaches the owner after the removal, in every
//! replica and in the definitions log. Sent directly from a third shard, it could overtake
//! the removal, which would then take the new binding with it at the next start (the log
//! names queues, not their incarnations).

use super::request::stopped;
use super::Shard;
use crate::broker::topology::TopologyChange;
use crate::broker::{AmqpError, OpOk, QueueOp, ShardMsg};
use bytes::Bytes;

/// The shard that serializes topology changes.
const TOPOLOGY_OWNER: usize = 0;

/// A change still being applied elsewhere, on the owner.
pub(super) struct Pending {
    /// Shards yet to acknowledge.
    left: usize,
    /// Who asked, and their request id (0: nobody waits).
    from: u16,
    id: u64,
    /// The change was written to the definitions log.
    stored: bool,
}

impl Shard {
    /// Validates a topology change on the owner shard and returns once every shard applied it.
    pub async fn change_topology(&self, change: TopologyChange) -> Result<(), AmqpError> {
        self.change_topology_via(TOPOLOGY_OWNER, change).await
    }

    /// As [`Shard::change_topology`], sent to the owner through shard `via`: the change
    /// reaches the owner after everything `via` sent it before (see the module docs).
    pub async fn change_topology_via(
        &self,
        via: usize,
        change: TopologyChange,
    ) -> Result<(), AmqpError> {
        let (id, rx) = self.expect_reply();
        let from = self.id as u16;
        self.send(via, ShardMsg::TopologyRequest { from, id, change });
        self.flush();
        rx.await.unwrap_or_else(|_| Err(stopped())).map(|_| ())
    }

    /// On the owner: check, store, apply here, then everywhere else. Elsewhere: pass it on
    /// to the owner, behind what this shard sent it before.
    pub(super) fn topology_request(&self, from: u16, id: u64, change: TopologyChange) {
        if self.id != TOPOLOGY_OWNER {
            let msg = ShardMsg::TopologyRequest { from, id, change };
            return self.send(TOPOLOGY_OWNER, msg);
        }
        let validated = self.topology.borrow().validate(change);
        let change = match validated {
            Err(err) => return self.reply(from, id, Err(err)),
            Ok(None) => return self.reply(from, id, Ok(OpOk::Done)),
            Ok(Some(change)) => change,
        };
        let record = self.topology.borrow().persisted(&change);
        let stored = match (record, self.broker.borrow_mut().store_mut()) {
            (Some(record), Some(store)) => {
                store.append_def(&record);
                true
            }
            _ => false,
        };
        self.apply_topology(&change);
        if self.count == 1 {
            return self.topology_reply(from, id, stored);
        }
        let token = self.next_request_id.get();
        self.next_request_id.set(token + 1);
        let pending = Pending {
            left: self.count - 1,
            from,
            id,
            stored,
        };
        self.topology_waiting.borrow_mut().insert(token, pending);
        for target in (0..self.count).filter(|&t| t != self.id) {
            let change = change.clone();
            self.send(target, ShardMsg::TopologyApply { change, token });
        }
    }

    pub(super) fn topology_apply(&self, change: &TopologyChange, token: u64) {
        self.apply_topology(change);
        let applied = ShardMsg::TopologyApplied { token };
        if matches!(change, TopologyChange::DeleteVhost { .. }) {
            // The vhost's queues here are gone on disk before the delete is answered.
            self.send_after_sync(TOPOLOGY_OWNER, applied);
        } else {
            self.send(TOPOLOGY_OWNER, applied);
        }
    }

    /// Applies a change to this shard's replica; a policy change also reaches this shard's
    /// queues at once (what they drop or dead-letter goes out at the next flush).
    fn apply_topology(&self, change: &TopologyChange) {
        self.topology.borrow_mut().apply(change);
        if let TopologyChange::DeleteVhost { name } = change {
            self.vhost_deleted(name);
        }
        if matches!(
            change,
            TopologyChange::SetPolicy(_)
                | TopologyChange::ClearPolicy { .. }
                | TopologyChange::DeleteVhost { .. }
        ) {
            let policies = self.topology.borrow().policies().clone();
            self.broker.borrow_mut().set_policies(policies);
        }
        if matches!(
            change,
            TopologyChange::SetLimits(_) | TopologyChange::DeleteVhost { .. }
        ) {
            let max = self.topology.borrow().vhost_queue_max();
            self.broker.borrow_mut().set_vhost_queue_max(max);
        }
    }

    /// A deleted vhost's queues on this shard go (durably), and its connections here are
    /// closed, as RabbitMQ closes them.
    fn vhost_deleted(&self, vhost: &Bytes) {
        let mut out = self.take_outbox();
        let op = QueueOp::DeleteVhost {
            vhost: vhost.clone(),
        };
        let _ = self.broker.borrow_mut().apply(op, &mut out);
        self.send_all(out);
        let explanation = format!("vhost '{}' is deleted", String::from_utf8_lossy(vhost));
        for conn in self.conns_snapshot() {
            if conn.info().is_some_and(|i| i.vhost.as_bytes() == vhost) {
                conn.force_close(&explanation);
            }
        }
    }

    pub(super) fn topology_applied(&self, token: u64) {
        let done = {
            let mut waiting = self.topology_waiting.borrow_mut();
            match waiting.get_mut(&token) {
                Some(p) if p.left > 1 => {
                    p.left -= 1;
                    None
                }
                Some(_) => waiting.remove(&token),
                None => None,
            }
        };
        if let Some(p) = done {
            self.topology_reply(p.from, p.id, p.stored);
        }
    }

    /// A topology change is done everywhere; a stored one answers once it is on disk.
    fn topology_reply(&self, from: u16, id: u64, stored: bool) {
        if stored {
            self.reply_after_sync(from, id, Ok(OpOk::Done));
        } else {
            self.reply(from, id, Ok(OpOk::Done));
        }
    }
}
