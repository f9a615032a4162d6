//! Publisher confirms (confirm.select).
//!
//! `pending` is in sequence order; an entry is complete when every queue the message went to
//! has taken it, and confirms go out only for a complete prefix, so a `multiple` ack never
//! covers a message still in flight.

use crate::stats::{self, Counter};
use std::collections::VecDeque;

use super::{Channel, Ctx, Fail};
use crate::broker::AmqpError;
use crate::counter::decrease;
use crate::protocol::method::*;
use crate::protocol::Method;

#[derive(Default)]
pub struct Confirms {
    next_seq: u64,
    pending: VecDeque<PendingConfirm>,
}

struct PendingConfirm {
    seq: u64,
    /// Queues yet to take the message.
    remaining: u32,
    ok: bool,
}

impl Confirms {
    fn register(&mut self, targets: u32) -> u64 {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.pending.push_back(PendingConfirm {
            seq,
            remaining: targets,
            ok: true,
        });
        seq
    }

    fn complete(&mut self, seq: u64, ok: bool) {
        if let Ok(i) = self.pending.binary_search_by_key(&seq, |p| p.seq) {
            let p = &mut self.pending[i];
            decrease(&mut p.remaining, 1, "queues yet to confirm");
            p.ok &= ok;
        }
    }

    /// Pops the complete prefix as acks (runs folded into one `multiple` ack) and nacks.
    fn take_ready(&mut self, out: &mut Vec<Method>) {
        let mut run: Option<(u64, u64)> = None;
        let flush = |run: &mut Option<(u64, u64)>, out: &mut Vec<Method>| {
            if let Some((first, last)) = run.take() {
                out.push(Method::BasicAck(BasicAck {
                    delivery_tag: last,
                    multiple: last > first,
                }));
            }
        };
        while self.pending.front().is_some_and(|p| p.remaining == 0) {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            if p.ok {
                stats::add(Counter::Confirm, 1);
                run = Some(run.map_or((p.seq, p.seq), |(first, _)| (first, p.seq)));
            } else {
                flush(&mut run, out);
                out.push(Method::BasicNack(BasicNack {
                    delivery_tag: p.seq,
                    multiple: false,
                    requeue: false,
                }));
            }
        }
        flush(&mut run, out);
    }
}

impl Channel {
    /// A publisher confirm arrived from a queue.
    pub fn confirmed(&mut self, seq: u64, ok: bool) {
        if let Some(confirm) = self.confirm.as_mut() {
            confirm.complete(seq, ok);
        }
    }

    /// The confirms now due, in order, folded into `multiple` acks where possible.
    pub fn take_confirms(&mut self, out: &mut Vec<Method>) {
        if let Some(confirm) = self.confirm.as_mut() {
            confirm.take_ready(out);
        }
    }
}

/// confirm.select.
pub fn select(ctx: &Ctx, m: &ConfirmSelect) -> Result<(), Fail> {
    ctx.with(|ch| {
        if ch.tx.is_some() {
            return Err(AmqpError::precondition(
                "cannot switch from tx to confirm mode".to_string(),
            ));
        }
        ch.confirm.get_or_insert_with(Confirms::default);
        Ok(())
    })
    .unwrap_or(Ok(()))?;
    if !m.nowait {
        ctx.send(Method::ConfirmSelectOk(ConfirmSelectOk {}));
    }
    Ok(())
}

/// In confirm mode, numbers the publish and waits for `targets` queues to confirm it.
pub fn register(ctx: &Ctx, targets: u32) -> Option<u64> {
    ctx.with(|ch| ch.confirm.as_mut().map(|c| c.register(targets)))
        .flatten()
}

/// A publish that reached no queue is confirmed at once (after its basic.return): it is
/// registered as waiting for one answer, which is given right here.
pub fn confirm_now(ctx: &Ctx) {
    use crate::shard::Client;
    if let Some(seq) = register(ctx, 1) {
        ctx.conn.confirmed(ctx.channel, seq, true);
    }
}
