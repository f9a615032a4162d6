//! basic.get: one message pulled from a queue, tracked as unacked unless no_ack.

use crate::stats::{self, Counter};
use bytes::Bytes;

use super::{internal, Ctx, Fail};
use std::time::{Duration, Instant};

use crate::broker::permissions::Access;
use crate::broker::{Got, OpOk, QueueOp};
use crate::connection::traced;
use crate::io::time;
use crate::protocol::method::*;
use crate::protocol::Method;

pub async fn get(ctx: &Ctx<'_>, m: &BasicGet) -> Result<(), Fail> {
    let name = ctx.queue_name_or_last(&m.queue)?;
    ctx.permit(Access::Read, "queue", &name)?;
    let Some(got) = fetch(ctx, &name, m.no_ack).await? else {
        return Err(internal());
    };
    let Some(got) = got else {
        stats::add(Counter::GetEmpty, 1);
        let cluster_id = Bytes::new();
        ctx.send(Method::BasicGetEmpty(BasicGetEmpty { cluster_id }));
        return Ok(());
    };
    let tag = ctx
        .with(|ch| (!ch.closing).then(|| ch.track(got.queue, got.seq, m.no_ack)))
        .flatten();
    let Some(delivery_tag) = tag else {
        // The channel closed meanwhile: the message goes back.
        if !m.no_ack {
            ctx.shard.bounce(got.queue, got.seq);
        }
        return Ok(());
    };
    stats::add(
        if m.no_ack {
            Counter::GetNoAck
        } else {
            Counter::Get
        },
        1,
    );
    stats::add(Counter::Redeliver, u64::from(got.redelivered));
    let method = Method::BasicGetOk(BasicGetOk {
        delivery_tag,
        redelivered: got.redelivered,
        exchange: got.msg.exchange.clone(),
        routing_key: got.msg.routing_key.clone(),
        message_count: got.message_count,
    });
    ctx.conn.write_content(ctx.channel, &method, &got.msg);
    if crate::trace::on() {
        let delivered = traced::Delivered {
            channel: ctx.channel,
            queue: &name,
            consumer_tag: None,
            redelivered: got.redelivered,
            msg: &got.msg,
        };
        traced::delivered(ctx.conn, &delivered);
    }
    Ok(())
}

/// How long basic.get waits for a paged-out body to be read back before it gives up.
const PAGE_IN_PATIENCE: Duration = Duration::from_secs(10);

/// Runs the get; while the queue reads the head's body back from disk, asks again. None
/// when the disk never gave the body back.
async fn fetch(
    ctx: &Ctx<'_>,
    name: &Bytes,
    no_ack: bool,
) -> Result<Option<Option<Box<Got>>>, Fail> {
    let vhost = ctx.vhost();
    let owner = ctx.shard.queue_owner(&vhost, name);
    let started = Instant::now();
    loop {
        let op = QueueOp::Get {
            vhost: vhost.clone(),
            name: name.clone(),
            no_ack,
            conn: ctx.conn.cref,
            channel: ctx.channel,
        };
        match ctx.shard.request(owner, op).await? {
            OpOk::Got(got) => return Ok(Some(got)),
            OpOk::PagingIn if started.elapsed() < PAGE_IN_PATIENCE => {
                time::sleep(Duration::from_millis(1)).await;
            }
            _ => return Ok(None),
        }
    }
}
