//! One queue: its ready messages, unacked deliveries and consumers, and fair dispatch.
//!
//! Invariants:
//! - each priority level of `ready` is sorted by `seq`: publishes append increasing seqs and
//!   requeues insert in order, so a requeued message goes back to its original position.
//! - every seq is in at most one of `ready` and `unacked`.
//! - a consumer's `in_flight` counts exactly the `unacked` entries that name it.
//! - a consumer's `in_transit` counts deliveries not yet written to its socket; dispatch
//!   stops at `TRANSIT_WINDOW`, which is what bounds a connection's output buffer even for
//!   no-ack consumers (RabbitMQ's credit flow plays the same role).
//! - `turns` and `channel_waiting` together hold exactly the consumers marked `queued`, each
//!   once; `by_id` maps every consumer's id to its index in `consumers`.

mod args;
mod credit;
mod dispatch;
mod invariants;
mod paging;
mod redelivery;
pub mod stats;
pub use stats::QueueStats;
#[cfg(test)]
mod tests;
mod turns;

use std::collections::VecDeque;

use bytes::Bytes;
use rustc_hash::FxHashMap;

use super::dead_letter::{self, DeadLetter, Reason};
use super::envelope::{CreditKey, Outbox, ShardMsg};
use super::ops::{AmqpError, ConsumerSpec, SettleKind};
pub use super::overflow::Overflow;
use super::ready::{now_ms, Ready, ReadyList};
use super::Shared;
use crate::counter::decrease;
use crate::ids::{ConnRef, QueueRef};
use crate::message::Message;
use crate::protocol::{FieldTable, FieldValue};
use args::Limits;
use dispatch::release_channel_credit;

/// Deliveries per consumer on their way to its socket before dispatch waits for credit.
pub const TRANSIT_WINDOW: u32 = 512;

/// What became of a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Written to the store (persistent, durable queue): its confirm waits for the sync.
    Stored,
    /// Kept in memory only.
    Kept,
    /// Refused: the queue is full and its x-overflow is reject-publish(-dlx).
    Rejected,
}

struct Unacked {
    msg: Message,
    expires_ms: u64,
    priority: u8,
    /// Returns before this delivery.
    returns: u32,
    consumer_id: u64,
    conn: ConnRef,
    channel: u16,
    counts_for_channel: bool,
}

struct Consumer {
    spec: ConsumerSpec,
    in_flight: u32,
    in_transit: u32,
    /// In `turns` or `channel_waiting`: dispatch will look at it.
    queued: bool,
}

pub struct Queue {
    pub id: QueueRef,
    /// Names the queue in the store; kept across restarts.
    pub queue_id: u64,
    pub vhost: Bytes,
    pub name: Bytes,
    pub durable: bool,
    pub exclusive_owner: Option<ConnRef>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    ready: ReadyList,
    /// x-message-ttl in milliseconds.
    message_ttl_ms: Option<u64>,
    /// x-max-priority: 0 for a plain queue.
    max_priority: u8,
    /// x-max-length, x-max-length-bytes and x-overflow.
    limits: Limits,
    /// x-dead-letter-exchange and x-dead-letter-routing-key.
    dead_letter: Option<dead_letter::Target>,
    /// x-single-active-consumer: only the first consumer (in order of arrival) gets messages.
    single_active: bool,
    /// x-delivery-limit, and whether returns are counted.
    redelivery: redelivery::Redelivery,
    /// x-expires: the queue goes once unused (no consumer, get or declare) for this long.
    expires_ms: Option<u64>,
    /// When the queue was last used, on `now_ms`'s clock.
    last_used_ms: u64,
    unacked: FxHashMap<u64, Unacked>,
    consumers: Vec<Consumer>,
    /// Consumer id -> index in `consumers`.
    by_id: FxHashMap<u64, usize>,
    /// Round-robin order of the consumers that may have credit (ids); see `dispatch.rs`.
    turns: turns::Turns,
    /// Consumers with credit of their own held back by their channel's prefetch (basic.qos
    /// global=true), which another queue's acks may lift: looked at again every dispatch.
    channel_waiting: Vec<u64>,
    next_seq: u64,
    had_consumer: bool,
    /// Priority level of the newest message (where `compact_waiting` finds it).
    last_priority: u8,
    /// A page-in of bodies at the head is outstanding.
    paging_in: bool,
    /// Messages published while consumers were active and not yet granted back to their
    /// publishers, in arrival order: (connection, destination, count). See `credit.rs`.
    ungranted: VecDeque<(ConnRef, CreditKey, u32)>,
    /// Messages in and out, for the management API's per-queue rates.
    pub stats: QueueStats,
    /// Consumers dispatch looked at (tests measure the cost of a delivery with it).
    #[cfg(test)]
    examined: usize,
}

impl Queue {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: QueueRef,
        queue_id: u64,
        vhost: Bytes,
        name: Bytes,
        durable: bool,
        exclusive_owner: Option<ConnRef>,
        auto_delete: bool,
        arguments: FieldTable,
    ) -> Self {
        // Read from the arguments until policies apply (see `configure`).
        // RabbitMQ caps x-max-priority at 255; non-positive or non-integer values mean none.
        let max_priority = arguments
            .get("x-max-priority")
            .and_then(|v| v.as_i64())
            .map_or(0, |p| p.clamp(0, 255) as u8);
        let single_active = arguments
            .get("x-single-active-consumer")
            .and_then(FieldValue::as_bool)
            .unwrap_or(false);
        Queue {
            id,
            queue_id,
            vhost,
            name,
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            ready: ReadyList::new(max_priority),
            message_ttl_ms: None,
            max_priority,
            limits: Limits::default(),
            dead_letter: None,
            expires_ms: None,
            last_used_ms: now_ms(),
            redelivery: redelivery::Redelivery::default(),
            single_active,
            unacked: FxHashMap::default(),
            consumers: Vec::new(),
            by_id: FxHashMap::default(),
            turns: turns::Turns::default(),
            channel_waiting: Vec::new(),
            next_seq: 1,
            had_consumer: false,
            last_priority: 0,
            paging_in: false,
            ungranted: VecDeque::new(),
            stats: QueueStats::default(),
            #[cfg(test)]
            examined: 0,
        }
    }

    pub fn display_name(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.name)
    }

    pub fn display_vhost(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.vhost)
    }

    pub fn ready_count(&self) -> usize {
        self.ready.len()
    }

    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    /// Deliveries waiting for an ack.
    /// Body bytes of its ready and of its unacknowledged messages (walks the unacked:
    /// listings only).
    pub fn message_bytes(&self) -> (u64, u64) {
        let unacked: u64 = self.unacked.values().map(|u| u.msg.body.len() as u64).sum();
        (self.ready.bytes(), unacked)
    }

    pub fn unacked_count(&self) -> usize {
        self.unacked.len()
    }

    pub fn should_auto_delete(&self) -> bool {
        self.auto_delete && self.had_consumer && self.consumers.is_empty()
    }

    /// RabbitMQ's wording, which clients show to users.
    pub fn check_exclusive(&self, conn: ConnRef) -> Result<(), AmqpError> {
        match self.exclusive_owner {
            Some(owner) if owner != conn => Err(self.locked()),
            _ => Ok(()),
        }
    }

    /// RabbitMQ's refusal of another connection's exclusive queue, or of a declare whose
    /// exclusive flag does not match the queue's.
    pub fn locked(&self) -> AmqpError {
        AmqpError::resource_locked(format!(
            "cannot obtain exclusive access to locked queue '{}' in vhost '{}'. It could be originally \
             declared on another connection or the exclusive property value does not match that of \
             the original declaration.",
            self.display_name(),
            self.display_vhost()
        ))
    }

    /// Adds a message `from` published (to `key`), unless the queue is full and refuses
    /// publishes (x-overflow reject-publish); see [`Pushed`].
    pub fn push(
        &mut self,
        mut msg: Message,
        from: (ConnRef, CreditKey),
        sh: &mut Shared,
    ) -> Pushed {
        self.stats.publish += 1;
        if self.limits.overflow != Overflow::DropHead
            && self.limits.full(self.ready.len(), self.ready.bytes())
        {
            sh.grant(from.0, from.1, 1);
            if self.limits.overflow == Overflow::RejectPublishDlx {
                self.dead_letter(msg, Reason::MaxLen, sh);
            }
            return Pushed::Rejected;
        }
        self.hold_credit(from.0, from.1, sh);
        let seq = self.next_seq;
        self.next_seq += 1;
        let (priority, expires_ms) = self.priority_and_expiry(&msg);
        self.last_priority = priority;
        let stored = self.durable && msg.persistent && sh.store.is_some();
        if let (true, Some(store)) = (stored, sh.store.as_mut()) {
            msg.loc = store.append_publish(self.queue_id, seq, false, false, &msg);
        }
        sh.resident += msg.body.len() as u64;
        self.ready
            .push_back(Ready::new(seq, false, expires_ms, priority, msg));
        if stored {
            Pushed::Stored
        } else {
            Pushed::Kept
        }
    }

    /// Past x-max-length or x-max-length-bytes (after dispatch took what consumers could),
    /// drops the oldest ready messages, as RabbitMQ's default `drop-head` overflow does.
    pub fn drop_over_limit(&mut self, sh: &mut Shared) {
        if self.limits.overflow != Overflow::DropHead {
            return;
        }
        let mut fresh = 0;
        while self.limits.over(self.ready.len(), self.ready.bytes()) {
            // A dead letter needs its body: wait for the page-in of a paged head.
            if self.dead_letter.is_some() && self.ready.front().is_some_and(|r| r.msg.loc.paged) {
                self.request_page_in(sh);
                break;
            }
            let Some(r) = self.ready.pop_front() else {
                break;
            };
            fresh += u32::from(!r.redelivered);
            self.discard(r.seq, r.msg, Reason::MaxLen, sh);
        }
        self.grant(fresh, sh);
    }

    /// A recovered message, in seq order.
    pub fn push_recovered(&mut self, seq: u64, msg: Message) {
        let (priority, expires_ms) = self.priority_and_expiry(&msg);
        self.ready
            .push_back(Ready::new(seq, true, expires_ms, priority, msg));
    }

    pub fn set_next_seq(&mut self, next: u64) {
        self.next_seq = self.next_seq.max(next);
    }

    /// The message left the queue for good; see [`leave`].
    fn leave(&self, seq: u64, msg: &Message, sh: &mut Shared) {
        leave(self.durable, self.queue_id, seq, msg, sh);
    }

    /// The message leaves the queue for `reason`: dead-lettered when the queue has a
    /// dead-letter exchange, dropped otherwise. Its body must be in memory.
    fn discard(&self, seq: u64, msg: Message, reason: Reason, sh: &mut Shared) {
        self.leave(seq, &msg, sh);
        self.dead_letter(msg, reason, sh);
    }

    /// Hands `msg` to the shard for its dead-letter exchange, if the queue has one.
    fn dead_letter(&self, msg: Message, reason: Reason, sh: &mut Shared) {
        if let Some(target) = &self.dead_letter {
            debug_assert!(!msg.loc.paged, "a dead letter without its body");
            sh.dead_letters.push(DeadLetter {
                msg,
                reason,
                vhost: self.vhost.clone(),
                queue: self.name.clone(),
                target: target.clone(),
            });
        }
    }

    /// Removes expired messages at the head, dead-lettering them where the queue says so
    /// (a paged body is read back first).
    pub fn expire(&mut self, sh: &mut Shared) {
        let mut gone = std::mem::take(&mut sh.scratch);
        let dead_lettering = self.dead_letter.is_some();
        let stopped = self.ready.drop_expired(&mut gone, dead_lettering);
        let fresh = gone.iter().filter(|r| !r.redelivered).count() as u32;
        for r in gone.drain(..) {
            self.discard(r.seq, r.msg, Reason::Expired, sh);
        }
        sh.scratch = gone;
        self.grant(fresh, sh);
        if stopped {
            self.request_page_in(sh);
        }
    }

    pub fn single_active(&self) -> bool {
        self.single_active
    }

    /// Requeues every message delivered to `consumer_id` and not yet acked.
    pub fn requeue_unacked_of(&mut self, consumer_id: u64, sh: &mut Shared) {
        let mut seqs: Vec<u64> = self
            .unacked
            .iter()
            .filter(|(_, u)| u.consumer_id == consumer_id)
            .map(|(seq, _)| *seq)
            .collect();
        seqs.sort_unstable();
        self.settle(SettleKind::Requeue, &seqs, sh);
    }

    /// The queue was used (declared again, basic.get, a consumer came or went): its x-expires
    /// period starts again.
    /// Milliseconds since it was last used (declared, consumed from, got from).
    pub fn idle_ms(&self) -> u64 {
        crate::broker::ready::now_ms().saturating_sub(self.last_used_ms)
    }

    pub fn touch(&mut self) {
        self.last_used_ms = now_ms();
    }

    /// True when the queue has x-expires and has gone unused for that long.
    pub fn unused_too_long(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|ms| {
            self.consumers.is_empty() && now_ms >= self.last_used_ms.saturating_add(ms)
        })
    }

    /// True when some ready message may have expired: worth a look without a consumer.
    pub fn may_expire(&self) -> bool {
        self.ready.may_expire()
    }

    pub fn purge(&mut self, sh: &mut Shared) -> u32 {
        let mut gone = std::mem::take(&mut sh.scratch);
        self.ready.drain_into(&mut gone);
        let n = gone.len() as u32;
        for r in gone.drain(..) {
            self.leave(r.seq, &r.msg, sh);
        }
        sh.scratch = gone;
        self.grant_all(sh);
        n
    }

    pub fn add_consumer(&mut self, spec: ConsumerSpec) -> Result<(), AmqpError> {
        if self.consumers.iter().any(|c| c.spec.exclusive)
            || (spec.exclusive && !self.consumers.is_empty())
        {
            return Err(AmqpError::access_refused(format!(
                "queue '{}' in vhost '{}' in exclusive use",
                self.display_name(),
                self.display_vhost()
            )));
        }
        self.had_consumer = true;
        self.touch();
        self.by_id.insert(spec.id, self.consumers.len());
        self.consumers.push(Consumer {
            spec,
            in_flight: 0,
            in_transit: 0,
            queued: false,
        });
        self.offer(self.consumers.len() - 1);
        Ok(())
    }

    /// Cancels a consumer. Linear in the consumers (rare next to deliveries).
    pub fn remove_consumer(&mut self, consumer_id: u64, sh: &mut Shared) {
        self.touch();
        if let Some(i) = self.by_id.remove(&consumer_id) {
            self.consumers.remove(i);
            for (j, c) in self.consumers.iter().enumerate().skip(i) {
                self.by_id.insert(c.spec.id, j);
            }
            self.turns.retain(|id| id != consumer_id);
            self.channel_waiting.retain(|&id| id != consumer_id);
        }
        if self.consumers.is_empty() {
            // Nobody consumes now: what is held back is a legitimate backlog.
            self.grant_all(sh);
        } else if self.single_active {
            // The next in order takes over (a no-op when the active one stays).
            self.offer(0);
        }
    }

    /// The queue is going away: tell every consumer (server-sent basic.cancel) and drop the
    /// unacked bookkeeping. Returns how many ready messages were dropped with it.
    pub fn release(mut self, sh: &mut Shared, out: &mut Outbox) -> u32 {
        self.grant_all(sh);
        for u in self.unacked.values() {
            if u.counts_for_channel {
                release_channel_credit(&mut sh.channel_in_flight, u.conn, u.channel);
            }
            forget(&u.msg, sh);
        }
        let mut gone = std::mem::take(&mut sh.scratch);
        self.ready.drain_into(&mut gone);
        let n = gone.len() as u32;
        for r in gone.drain(..) {
            forget(&r.msg, sh);
        }
        sh.scratch = gone;
        for c in &self.consumers {
            out.push((
                c.spec.conn.shard as usize,
                ShardMsg::ConsumerCancelled {
                    conn: c.spec.conn,
                    channel: c.spec.channel,
                    tag: c.spec.tag.clone(),
                },
            ));
        }
        n
    }
}

/// A deleted queue's message: its memory and store space go (the deletion itself is recorded
/// in the definitions, so no ack record is needed).
fn forget(msg: &Message, sh: &mut Shared) {
    if !msg.loc.paged {
        decrease(&mut sh.resident, msg.body.len() as u64, "resident bytes");
    }
    if let Some(store) = sh.store.as_mut() {
        store.release(msg.loc);
    }
}

/// A message left its queue for good: its memory is released and the store records it, so
/// that recovery does not bring it back.
fn leave(durable: bool, queue_id: u64, seq: u64, msg: &Message, sh: &mut Shared) {
    if !msg.loc.paged {
        decrease(&mut sh.resident, msg.body.len() as u64, "resident bytes");
    }
    if let Some(store) = sh.store.as_mut() {
        if durable && msg.persistent {
            store.append_ack(queue_id, seq, msg.loc);
        } else {
            // A paged transient body: recovery ignores its record anyway.
            store.release(msg.loc);
        }
    }
}
