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

use rustc_hash::FxHashMap;

use bytes::Bytes;

use super::ops::{AmqpError, ConsumerSpec, SettleKind};
use super::ready::{now_ms, Ready, ReadyList};
use super::{ConnRef, Loc, Message, Outbox, QueueRef, Shared};
use crate::protocol::BasicProperties;
use crate::protocol::FieldTable;
use crate::shard::{Delivery, ShardMsg};

/// Deliveries per consumer on their way to its socket before dispatch waits for credit.
pub const TRANSIT_WINDOW: u32 = 512;

struct Unacked {
    msg: Message,
    expires_ms: u64,
    priority: u8,
    consumer_id: u64,
    conn: ConnRef,
    channel: u16,
    counts_for_channel: bool,
}

struct Consumer {
    spec: ConsumerSpec,
    in_flight: u32,
    in_transit: u32,
}

pub struct Queue {
    pub id: QueueRef,
    /// Names the queue in the store; kept across restarts.
    pub queue_id: u64,
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
    unacked: FxHashMap<u64, Unacked>,
    consumers: Vec<Consumer>,
    /// Round-robin position: the consumer after the last one served.
    next_consumer: usize,
    next_seq: u64,
    had_consumer: bool,
    /// Priority level of the newest message (where `compact_waiting` finds it).
    last_priority: u8,
    /// A page-in of bodies at the head is outstanding.
    paging_in: bool,
}

impl Queue {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: QueueRef,
        queue_id: u64,
        name: Bytes,
        durable: bool,
        exclusive_owner: Option<ConnRef>,
        auto_delete: bool,
        arguments: FieldTable,
    ) -> Self {
        // RabbitMQ caps x-max-priority at 255; non-positive or non-integer values mean none.
        let max_priority = arguments
            .get("x-max-priority")
            .and_then(|v| v.as_i64())
            .map_or(0, |p| p.clamp(0, 255) as u8);
        let message_ttl_ms = arguments
            .get("x-message-ttl")
            .and_then(|v| v.as_i64())
            .and_then(|ttl| u64::try_from(ttl).ok());
        Queue {
            id,
            queue_id,
            name,
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            ready: ReadyList::new(max_priority),
            message_ttl_ms,
            max_priority,
            unacked: FxHashMap::default(),
            consumers: Vec::new(),
            next_consumer: 0,
            next_seq: 1,
            had_consumer: false,
            last_priority: 0,
            paging_in: false,
        }
    }

    pub fn display_name(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.name)
    }

    pub fn ready_count(&self) -> usize {
        self.ready.len()
    }

    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    pub fn should_auto_delete(&self) -> bool {
        self.auto_delete && self.had_consumer && self.consumers.is_empty()
    }

    /// RabbitMQ's wording, which clients show to users.
    pub fn check_exclusive(&self, conn: ConnRef) -> Result<(), AmqpError> {
        match self.exclusive_owner {
            Some(owner) if owner != conn => Err(AmqpError::resource_locked(format!(
                "cannot obtain exclusive access to locked queue '{}' in vhost '/'. It could be originally \
                 declared on another connection or the exclusive property value does not match that of \
                 the original declaration.",
                self.display_name()
            ))),
            _ => Ok(()),
        }
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
                "inequivalent arg '{field}' for queue '{}' in vhost '/': received '{received}' but current is '{current}'",
                self.display_name()
            ))
        };
        if durable != self.durable {
            return Err(mismatch("durable", durable, self.durable));
        }
        if exclusive != self.exclusive_owner.is_some() {
            return Err(mismatch(
                "exclusive",
                exclusive,
                self.exclusive_owner.is_some(),
            ));
        }
        if auto_delete != self.auto_delete {
            return Err(mismatch("auto_delete", auto_delete, self.auto_delete));
        }
        for key in [
            "x-queue-type",
            "x-max-priority",
            "x-max-length",
            "x-message-ttl",
            "x-dead-letter-exchange",
            "x-expires",
        ] {
            let (received, current) = (arguments.get(key), self.arguments.get(key));
            // RabbitMQ treats a missing x-queue-type as equivalent to the queue's type.
            if key == "x-queue-type" && received.is_none() {
                continue;
            }
            if received != current {
                return Err(AmqpError::precondition(format!(
                    "inequivalent arg '{key}' for queue '{}' in vhost '/': received {} but current is {}",
                    self.display_name(),
                    describe(received),
                    describe(current),
                )));
            }
        }
        Ok(())
    }

    /// Adds a published message; returns true when it was written to the store (a persistent
    /// message in a durable queue), so that its confirm waits for the sync.
    pub fn push(&mut self, mut msg: Message, sh: &mut Shared) -> bool {
        let seq = self.next_seq;
        self.next_seq += 1;
        let (priority, expires_ms) = self.priority_and_expiry(&msg);
        self.last_priority = priority;
        let stored = self.durable && msg.persistent && sh.store.is_some();
        if let (true, Some(store)) = (stored, sh.store.as_mut()) {
            msg.loc = store.append_publish(self.queue_id, seq, false, false, &msg);
        }
        sh.resident += msg.body.len() as u64;
        self.ready.push_back(Ready {
            seq,
            redelivered: false,
            expires_ms,
            priority,
            msg,
        });
        stored
    }

    /// A recovered message, in seq order.
    pub fn push_recovered(&mut self, seq: u64, msg: Message) {
        let (priority, expires_ms) = self.priority_and_expiry(&msg);
        self.ready.push_back(Ready {
            seq,
            redelivered: true,
            expires_ms,
            priority,
            msg,
        });
    }

    pub fn set_next_seq(&mut self, next: u64) {
        self.next_seq = self.next_seq.max(next);
    }

    /// The message left the queue for good; see [`leave`].
    fn leave(&self, seq: u64, msg: &Message, sh: &mut Shared) {
        leave(self.durable, self.queue_id, seq, msg, sh);
    }

    /// The message's priority (capped at x-max-priority) and expiry: the earlier of the
    /// queue's x-message-ttl and the message's `expiration`. Properties are decoded only when
    /// a flag says they matter.
    fn priority_and_expiry(&self, msg: &Message) -> (u8, u64) {
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
        (priority, ttl.map_or(0, |ttl| now_ms() + ttl))
    }

    /// Drops expired messages at the head (dead-lettering is not implemented: they go).
    pub fn expire(&mut self, sh: &mut Shared) {
        let mut gone = std::mem::take(&mut sh.scratch);
        self.ready.drop_expired(&mut gone);
        for r in gone.drain(..) {
            self.leave(r.seq, &r.msg, sh);
        }
        sh.scratch = gone;
    }

    /// The consumer's connection wrote `n` deliveries to its socket.
    pub fn credit(&mut self, consumer_id: u64, n: u32) {
        if let Some(c) = self.consumers.iter_mut().find(|c| c.spec.id == consumer_id) {
            c.in_transit = c.in_transit.saturating_sub(n);
        }
    }

    /// A message that could not be dispatched at once waits: give it compact storage so it
    /// does not pin the read buffer it arrived in, or, past the shard's memory budget, drop its
    /// body from memory (writing it to the store first if it is not there yet).
    pub fn compact_waiting(&mut self, sh: &mut Shared) {
        let newest = self.next_seq - 1;
        let priority = self.last_priority;
        let durable = self.durable;
        let queue_id = self.queue_id;
        let Some(last) = self.ready.newest_mut(newest, priority) else {
            return;
        };
        if last.redelivered || last.msg.loc.paged {
            return;
        }
        let over_budget = sh.resident > sh.budget;
        match sh.store.as_mut() {
            Some(store) if over_budget && !last.msg.body.is_empty() => {
                let msg = &mut last.msg;
                if !msg.loc.is_stored() {
                    let transient = !(durable && msg.persistent);
                    msg.loc = store.append_publish(queue_id, newest, false, transient, msg);
                }
                sh.resident = sh.resident.saturating_sub(msg.body.len() as u64);
                msg.body = Bytes::new();
                msg.loc.paged = true;
                msg.compact();
            }
            _ => last.msg.compact(),
        }
    }

    /// Bodies read back from the store for messages at the head.
    pub fn paged_in(&mut self, bodies: &mut Vec<(u64, Bytes)>, sh: &mut Shared) {
        self.paging_in = false;
        for (seq, body) in bodies.drain(..) {
            if let Some(r) = self.ready.find_mut(seq) {
                if r.msg.loc.paged {
                    sh.resident += body.len() as u64;
                    r.msg.body = body;
                    r.msg.loc.paged = false;
                }
            }
        }
    }

    /// Asks the shard's pager for the bodies of the paged messages at the head.
    fn request_page_in(&mut self, sh: &mut Shared) {
        if self.paging_in {
            return;
        }
        let mut want: Vec<(u64, Loc)> = Vec::new();
        let mut bytes = 0u64;
        for r in self.ready.iter_front() {
            if want.len() >= 256 || bytes >= 4 << 20 {
                break;
            }
            if r.msg.loc.paged {
                want.push((r.seq, r.msg.loc));
                bytes += u64::from(r.msg.loc.len);
            }
        }
        if !want.is_empty() {
            self.paging_in = true;
            sh.page_in.push((self.id, want));
        }
    }

    /// basic.get: the next ready message, tracked as unacked unless no_ack. A body paged out
    /// to the store is read back here, synchronously (basic.get is not the fast path).
    pub fn get(
        &mut self,
        no_ack: bool,
        conn: ConnRef,
        channel: u16,
        sh: &mut Shared,
    ) -> Option<(u64, bool, Message)> {
        self.expire(sh);
        let mut ready = self.ready.pop_front()?;
        if ready.msg.loc.paged {
            if let Some(store) = sh.store.as_ref() {
                match store.read_body(ready.msg.loc) {
                    Ok(body) => {
                        sh.resident += body.len() as u64;
                        ready.msg.body = body;
                        ready.msg.loc.paged = false;
                    }
                    Err(err) => {
                        crate::error!("basic.get: cannot read a paged message back: {err}");
                        self.ready.insert_in_order(ready);
                        return None;
                    }
                }
            }
        }
        if no_ack {
            self.leave(ready.seq, &ready.msg, sh);
        } else {
            let unacked = Unacked {
                msg: ready.msg.clone(),
                expires_ms: ready.expires_ms,
                priority: ready.priority,
                consumer_id: 0,
                conn,
                channel,
                counts_for_channel: false,
            };
            self.unacked.insert(ready.seq, unacked);
        }
        Some((ready.seq, ready.redelivered, ready.msg))
    }

    pub fn purge(&mut self, sh: &mut Shared) -> u32 {
        let mut gone = std::mem::take(&mut sh.scratch);
        self.ready.drain_into(&mut gone);
        let n = gone.len() as u32;
        for r in gone.drain(..) {
            self.leave(r.seq, &r.msg, sh);
        }
        sh.scratch = gone;
        n
    }

    pub fn add_consumer(&mut self, spec: ConsumerSpec) -> Result<(), AmqpError> {
        if self.consumers.iter().any(|c| c.spec.exclusive)
            || (spec.exclusive && !self.consumers.is_empty())
        {
            return Err(AmqpError::access_refused(format!(
                "queue '{}' in vhost '/' in exclusive use",
                self.display_name()
            )));
        }
        self.had_consumer = true;
        self.consumers.push(Consumer {
            spec,
            in_flight: 0,
            in_transit: 0,
        });
        Ok(())
    }

    pub fn remove_consumer(&mut self, consumer_id: u64) {
        if let Some(i) = self.consumers.iter().position(|c| c.spec.id == consumer_id) {
            self.consumers.remove(i);
            if self.next_consumer > i {
                self.next_consumer -= 1;
            }
        }
    }

    /// Acks drop unacked messages; requeues put them back in seq order, marked redelivered.
    /// Unknown seqs (already settled, or from before a purge) are ignored.
    pub fn settle(&mut self, kind: SettleKind, seqs: &[u64], sh: &mut Shared) {
        for &seq in seqs {
            let Some(u) = self.unacked.remove(&seq) else {
                continue;
            };
            if let Some(c) = self
                .consumers
                .iter_mut()
                .find(|c| c.spec.id == u.consumer_id)
            {
                c.in_flight = c.in_flight.saturating_sub(1);
            }
            if u.counts_for_channel {
                release_channel_credit(&mut sh.channel_in_flight, u.conn, u.channel);
            }
            if kind == SettleKind::Ack {
                self.leave(seq, &u.msg, sh);
            } else {
                let ready = Ready {
                    seq,
                    redelivered: true,
                    expires_ms: u.expires_ms,
                    priority: u.priority,
                    msg: u.msg,
                };
                self.ready.insert_in_order(ready);
            }
        }
    }

    /// Hands ready messages to consumers with credit, round-robin, until either runs out.
    pub fn dispatch(&mut self, sh: &mut Shared, out: &mut Outbox) {
        self.expire(sh);
        while !self.ready.is_empty() && !self.consumers.is_empty() {
            let n = self.consumers.len();
            let Some(index) = (0..n)
                .map(|i| (self.next_consumer + i) % n)
                .find(|&i| has_credit(&self.consumers[i], &sh.channel_in_flight))
            else {
                break;
            };
            if self.ready.front().is_some_and(|r| r.msg.loc.paged) {
                self.request_page_in(sh);
                break;
            }
            self.next_consumer = (index + 1) % n;
            let Some(ready) = self.ready.pop_front() else {
                break;
            };
            let channel_in_flight = &mut sh.channel_in_flight;
            let consumer = &mut self.consumers[index];
            consumer.in_transit += 1;
            let spec = &consumer.spec;
            if !spec.no_ack {
                consumer.in_flight += 1;
                let counts_for_channel = spec.channel_prefetch_count > 0;
                if counts_for_channel {
                    *channel_in_flight
                        .entry((spec.conn, spec.channel))
                        .or_insert(0) += 1;
                }
                self.unacked.insert(
                    ready.seq,
                    Unacked {
                        msg: ready.msg.clone(),
                        expires_ms: ready.expires_ms,
                        priority: ready.priority,
                        consumer_id: spec.id,
                        conn: spec.conn,
                        channel: spec.channel,
                        counts_for_channel,
                    },
                );
            }
            if spec.no_ack {
                leave(self.durable, self.queue_id, ready.seq, &ready.msg, sh);
            }
            out.push((
                spec.conn.shard as usize,
                ShardMsg::Deliver(Delivery {
                    conn: spec.conn,
                    channel: spec.channel,
                    consumer_tag: spec.tag.clone(),
                    consumer_id: spec.id,
                    queue: self.id,
                    seq: ready.seq,
                    redelivered: ready.redelivered,
                    no_ack: spec.no_ack,
                    msg: ready.msg,
                }),
            ));
        }
    }

    /// The queue is going away: tell every consumer (server-sent basic.cancel) and drop the
    /// unacked bookkeeping. Returns how many ready messages were dropped with it.
    pub fn release(mut self, sh: &mut Shared, out: &mut Outbox) -> u32 {
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
        sh.resident = sh.resident.saturating_sub(msg.body.len() as u64);
    }
    if let Some(store) = sh.store.as_mut() {
        store.release(msg.loc);
    }
}

/// A message left its queue for good: its memory is released and the store records it, so
/// that recovery does not bring it back.
fn leave(durable: bool, queue_id: u64, seq: u64, msg: &Message, sh: &mut Shared) {
    if !msg.loc.paged {
        sh.resident = sh.resident.saturating_sub(msg.body.len() as u64);
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

fn has_credit(c: &Consumer, channel_in_flight: &FxHashMap<(ConnRef, u16), u32>) -> bool {
    let spec = &c.spec;
    if c.in_transit >= TRANSIT_WINDOW {
        return false;
    }
    if spec.no_ack {
        return true;
    }
    if spec.prefetch_count > 0 && c.in_flight >= u32::from(spec.prefetch_count) {
        return false;
    }
    spec.channel_prefetch_count == 0
        || channel_in_flight
            .get(&(spec.conn, spec.channel))
            .copied()
            .unwrap_or(0)
            < u32::from(spec.channel_prefetch_count)
}

fn release_channel_credit(
    channel_in_flight: &mut FxHashMap<(ConnRef, u16), u32>,
    conn: ConnRef,
    channel: u16,
) {
    if let Some(n) = channel_in_flight.get_mut(&(conn, channel)) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            channel_in_flight.remove(&(conn, channel));
        }
    }
}

fn describe(value: Option<&crate::protocol::FieldValue>) -> String {
    match value {
        None => "none".to_string(),
        Some(v) => format!("{v:?}"),
    }
}
