//! Dispatch and settlement: fair round-robin among consumers with credit, basic.get, and
//! acks and requeues coming back.

use rustc_hash::FxHashMap;

use super::{leave, Consumer, Queue, Unacked, TRANSIT_WINDOW};
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
        if let Some(c) = self.consumers.iter_mut().find(|c| c.spec.id == consumer_id) {
            decrease(&mut c.in_transit, n, "consumer in_transit");
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
                consumer_id: 0,
                conn,
                channel,
                counts_for_channel: false,
            };
            self.unacked.insert(ready.seq, unacked);
        }
        Ok(Some((ready.seq, ready.redelivered, ready.msg)))
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
                decrease(&mut c.in_flight, 1, "consumer in_flight");
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
        let mut fresh = 0;
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
            fresh += u32::from(!ready.redelivered);
            self.deliver(index, ready, sh, out);
        }
        self.grant(fresh, sh);
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
                consumer_id: spec.id,
                conn: spec.conn,
                channel: spec.channel,
                counts_for_channel,
            };
            self.unacked.insert(ready.seq, unacked);
        }
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
            msg: ready.msg,
        };
        out.push((spec.conn.shard as usize, ShardMsg::Deliver(delivery)));
    }
}

pub(super) fn has_credit(c: &Consumer, channel_in_flight: &FxHashMap<(ConnRef, u16), u32>) -> bool {
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
