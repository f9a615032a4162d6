//! Dispatch and settlement: fair round-robin among consumers with credit, basic.get, and
//! acks and requeues coming back.

use rustc_hash::FxHashMap;

use super::{leave, Consumer, Queue, Unacked, TRANSIT_WINDOW};
use crate::broker::dead_letter::Reason;
use crate::broker::envelope::{Delivery, Outbox, ShardMsg};
use crate::broker::ops::SettleKind;
use crate::broker::ready::Ready;
use crate::broker::Shared;
use crate::counter::decrease;
use crate::ids::ConnRef;
use crate::message::Message;

/// basic.get found the head paged out; its body is being read back.
#[derive(Debug)]
pub struct PagingIn;

impl Queue {
    /// The consumer's connection wrote `n` deliveries to its socket.
    pub fn credit(&mut self, consumer_id: u64, n: u32) {
        if let Some(&index) = self.by_id.get(&consumer_id) {
            decrease(
                &mut self.consumers[index].in_transit,
                n,
                "consumer in_transit",
            );
            self.offer(index);
        }
    }

    /// basic.get: the next ready message, tracked as unacked unless no_ack. When its body is
    /// paged out, asks the pager for it and answers `PagingIn`: the caller asks again once the
    /// read completed (the shard thread never blocks on the disk).
    pub fn get(
        &mut self,
        no_ack: bool,
        conn: ConnRef,
        channel: u16,
        sh: &mut Shared,
    ) -> Result<Option<(u64, bool, Message)>, PagingIn> {
        self.expire(sh);
        if sh.store.is_some() && self.ready.front().is_some_and(|r| r.msg.loc.paged) {
            self.request_page_in(sh);
            return Err(PagingIn);
        }
        let Some(ready) = self.ready.pop_front() else {
            self.stats.get_empty += 1;
            return Ok(None);
        };
        if !ready.redelivered {
            self.grant(1, sh);
        }
        if no_ack {
            self.leave(ready.seq, &ready.msg, sh);
        } else {
            let unacked = Unacked {
                msg: ready.msg.clone(),
                expires_ms: ready.expires_ms,
                priority: ready.priority,
                returns: ready.returns,
                consumer_id: 0,
                conn,
                channel,
                counts_for_channel: false,
            };
            self.unacked.insert(ready.seq, unacked);
        }
        if no_ack {
            self.stats.get_no_ack += 1;
        } else {
            self.stats.get += 1;
        }
        self.stats.redeliver += u64::from(ready.redelivered);
        let msg = self.redelivery.stamp(ready.msg, ready.returns);
        Ok(Some((ready.seq, ready.redelivered, msg)))
    }

    /// Acks drop unacked messages, rejects dead-letter or drop them; requeues put them back
    /// in seq order, marked redelivered.
    /// Unknown seqs (already settled, or from before a purge) are ignored.
    pub fn settle(&mut self, kind: SettleKind, seqs: &[u64], sh: &mut Shared) {
        for &seq in seqs {
            let Some(u) = self.unacked.remove(&seq) else {
                continue;
            };
            if let Some(&index) = self.by_id.get(&u.consumer_id) {
                decrease(
                    &mut self.consumers[index].in_flight,
                    1,
                    "consumer in_flight",
                );
                self.offer(index);
            }
            if u.counts_for_channel {
                release_channel_credit(&mut sh.channel_in_flight, u.conn, u.channel);
            }
            match kind {
                SettleKind::Ack => {
                    self.stats.ack += 1;
                    self.leave(seq, &u.msg, sh);
                }
                SettleKind::Reject => self.discard(seq, u.msg, Reason::Rejected, sh),
                SettleKind::Requeue => {
                    let returns = u.returns.saturating_add(1);
                    if self.redelivery.exceeded(returns) {
                        self.discard(seq, u.msg, Reason::DeliveryLimit, sh);
                        continue;
                    }
                    let mut ready = Ready::new(seq, true, u.expires_ms, u.priority, u.msg);
                    ready.returns = returns;
                    self.ready.insert_in_order(ready);
                }
            }
        }
    }

    /// Hands ready messages to consumers with credit, round-robin, until either runs out.
    ///
    /// `turns` is the round-robin order of the consumers that may have credit: the one served
    /// goes to the back, and one found without credit of its own leaves until its credit
    /// comes back (an ack, or its connection writing deliveries: [`Queue::offer`]). So a
    /// delivery costs O(1) amortized, however many consumers wait for acks.
    pub fn dispatch(&mut self, sh: &mut Shared, out: &mut Outbox) {
        self.expire(sh);
        // Another queue's acks may have lifted their channel's prefetch meanwhile.
        for id in std::mem::take(&mut self.channel_waiting) {
            let priority = self
                .by_id
                .get(&id)
                .map_or(0, |&i| self.consumers[i].spec.priority);
            self.turns.push_back(priority, id);
        }
        let mut fresh = 0;
        while !self.ready.is_empty() {
            let Some(index) = self.next_turn(sh) else {
                break;
            };
            if self.ready.front().is_some_and(|r| r.msg.loc.paged) {
                self.offer_first(index);
                self.request_page_in(sh);
                break;
            }
            let Some(ready) = self.ready.pop_front() else {
                self.offer_first(index);
                break;
            };
            fresh += u32::from(!ready.redelivered);
            self.deliver(index, ready, sh, out);
            self.offer(index);
        }
        self.grant(fresh, sh);
    }

    /// Takes the next consumer with credit out of `turns`. One without credit of its own
    /// is dropped (until [`Queue::offer`]); one held back only by its channel's prefetch
    /// waits in `channel_waiting`.
    fn next_turn(&mut self, sh: &Shared) -> Option<usize> {
        while let Some(id) = self.turns.pop_front() {
            let Some(&index) = self.by_id.get(&id) else {
                debug_assert!(
                    false,
                    "queue {}: turn of a gone consumer",
                    self.display_name()
                );
                continue;
            };
            #[cfg(test)]
            {
                self.examined += 1;
            }
            let c = &mut self.consumers[index];
            if !has_own_credit(c) {
                c.queued = false;
            } else if !has_channel_credit(c, &sh.channel_in_flight) {
                self.channel_waiting.push(id);
            } else {
                c.queued = false;
                return Some(index);
            }
        }
        None
    }

    /// Consumer `index` may have credit again: it gets a turn, at the back, unless it has one
    /// (with a single active consumer, only the first consumer ever gets one).
    pub(super) fn offer(&mut self, index: usize) {
        if self.single_active && index != 0 {
            return;
        }
        let c = &mut self.consumers[index];
        if !c.queued {
            c.queued = true;
            self.turns.push_back(c.spec.priority, c.spec.id);
        }
    }

    /// Gives back the turn `next_turn` just took: nothing was delivered.
    fn offer_first(&mut self, index: usize) {
        let c = &mut self.consumers[index];
        c.queued = true;
        self.turns.push_front(c.spec.priority, c.spec.id);
    }

    /// Sends `ready` to consumer `index`'s connection, tracking it as unacked unless no-ack.
    fn deliver(&mut self, index: usize, ready: Ready, sh: &mut Shared, out: &mut Outbox) {
        let consumer = &mut self.consumers[index];
        consumer.in_transit += 1;
        let spec = &consumer.spec;
        if spec.no_ack {
            leave(self.durable, self.queue_id, ready.seq, &ready.msg, sh);
        } else {
            consumer.in_flight += 1;
            let counts_for_channel = spec.channel_prefetch_count > 0;
            if counts_for_channel {
                *sh.channel_in_flight
                    .entry((spec.conn, spec.channel))
                    .or_insert(0) += 1;
            }
            let unacked = Unacked {
                msg: ready.msg.clone(),
                expires_ms: ready.expires_ms,
                priority: ready.priority,
                returns: ready.returns,
                consumer_id: spec.id,
                conn: spec.conn,
                channel: spec.channel,
                counts_for_channel,
            };
            self.unacked.insert(ready.seq, unacked);
        }
        if self.consumers[index].spec.no_ack {
            self.stats.deliver_no_ack += 1;
        } else {
            self.stats.deliver += 1;
        }
        self.stats.redeliver += u64::from(ready.redelivered);
        let spec = &self.consumers[index].spec;
        let delivery = Delivery {
            conn: spec.conn,
            channel: spec.channel,
            consumer_tag: spec.tag.clone(),
            consumer_id: spec.id,
            queue: self.id,
            seq: ready.seq,
            redelivered: ready.redelivered,
            no_ack: spec.no_ack,
            msg: self.redelivery.stamp(ready.msg, ready.returns),
        };
        out.push((spec.conn.shard as usize, ShardMsg::Deliver(delivery)));
    }
}

/// Room in the consumer's own windows: in transit, and its prefetch (basic.qos global=false).
fn has_own_credit(c: &Consumer) -> bool {
    let spec = &c.spec;
    if c.in_transit >= TRANSIT_WINDOW {
        return false;
    }
    spec.no_ack || spec.prefetch_count == 0 || c.in_flight < u32::from(spec.prefetch_count)
}

/// Room in the consumer's channel prefetch (basic.qos global=true).
fn has_channel_credit(c: &Consumer, channel_in_flight: &FxHashMap<(ConnRef, u16), u32>) -> bool {
    let spec = &c.spec;
    spec.no_ack
        || spec.channel_prefetch_count == 0
        || channel_in_flight
            .get(&(spec.conn, spec.channel))
            .copied()
            .unwrap_or(0)
            < u32::from(spec.channel_prefetch_count)
}

pub(super) fn release_channel_credit(
    channel_in_flight: &mut FxHashMap<(ConnRef, u16), u32>,
    conn: ConnRef,
    channel: u16,
) {
    if let Some(n) = channel_in_flight.get_mut(&(conn, channel)) {
        decrease(n, 1, "channel in_flight");
        if *n == 0 {
            channel_in_flight.remove(&(conn, channel));
        }
    }
}
