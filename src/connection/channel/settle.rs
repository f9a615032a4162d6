//! basic.ack / nack / reject / recover: unacked deliveries go back to their queues, acked
//! (done with) or requeued. In a transaction they wait for tx.commit.

use super::{Ctx, Fail};
use crate::broker::{SettleKind, ShardMsg};
use crate::connection::HardError;
use crate::protocol::constants::NOT_IMPLEMENTED;
use crate::protocol::method::*;
use crate::protocol::Method;
use crate::stats::{self, Counter};

pub fn ack(ctx: &Ctx, m: &BasicAck) -> Result<(), Fail> {
    settle(ctx, m.delivery_tag, m.multiple, SettleKind::Ack)
}

pub fn reject(ctx: &Ctx, m: &BasicReject) -> Result<(), Fail> {
    settle(ctx, m.delivery_tag, false, kind(m.requeue))
}

pub fn nack(ctx: &Ctx, m: &BasicNack) -> Result<(), Fail> {
    settle(ctx, m.delivery_tag, m.multiple, kind(m.requeue))
}

/// nack/reject without requeue: the queue dead-letters or drops the message.
fn kind(requeue: bool) -> SettleKind {
    if requeue {
        SettleKind::Requeue
    } else {
        SettleKind::Reject
    }
}

/// basic.recover (`answer`: recover-ok; basic.recover-async has none): every unacked
/// delivery of the channel goes back to its queue.
pub fn recover(ctx: &Ctx, requeue: bool, answer: bool) -> Result<(), Fail> {
    if !requeue {
        return Err(Fail::Hard(HardError::new(NOT_IMPLEMENTED, "requeue=false")));
    }
    settle_now(ctx, 0, true, SettleKind::Requeue)?;
    if answer {
        ctx.send(Method::BasicRecoverOk(BasicRecoverOk {}));
    }
    Ok(())
}

fn settle(ctx: &Ctx, delivery_tag: u64, multiple: bool, kind: SettleKind) -> Result<(), Fail> {
    let buffered = ctx.with(|ch| match ch.tx.as_mut() {
        Some(tx) => {
            tx.settles.push((delivery_tag, multiple, kind));
            true
        }
        None => false,
    });
    if buffered == Some(true) {
        return Ok(());
    }
    settle_now(ctx, delivery_tag, multiple, kind)
}

/// Sends what the tag names back to its queues, grouped per queue.
pub fn settle_now(
    ctx: &Ctx,
    delivery_tag: u64,
    multiple: bool,
    kind: SettleKind,
) -> Result<(), Fail> {
    let groups = ctx
        .with(|ch| {
            let next = ch.next_delivery_tag;
            ch.unacked.take(delivery_tag, multiple, next)
        })
        .transpose()?
        .unwrap_or_default();
    for (queue, seqs) in groups {
        if kind == SettleKind::Ack {
            stats::add(Counter::Ack, seqs.len() as u64);
        }
        ctx.shard
            .send(queue.shard as usize, ShardMsg::Settle { queue, kind, seqs });
    }
    Ok(())
}
