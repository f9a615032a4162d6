//! basic.get: one message pulled from a queue, tracked as unacked unless no_ack.

use bytes::Bytes;

use super::{internal, Ctx, Fail};
use crate::broker::{OpOk, QueueOp};
use crate::protocol::method::*;
use crate::protocol::Method;

pub async fn get(ctx: &Ctx<'_>, m: &BasicGet) -> Result<(), Fail> {
    let name = ctx.queue_name_or_last(&m.queue)?;
    let op = QueueOp::Get {
        name: name.clone(),
        no_ack: m.no_ack,
        conn: ctx.conn.cref,
        channel: ctx.channel,
    };
    let OpOk::Got(got) = ctx.shard.request(ctx.shard.queue_owner(&name), op).await? else {
        return Err(internal());
    };
    let Some(got) = got else {
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
    let method = Method::BasicGetOk(BasicGetOk {
        delivery_tag,
        redelivered: got.redelivered,
        exchange: got.msg.exchange.clone(),
        routing_key: got.msg.routing_key.clone(),
        message_count: got.message_count,
    });
    ctx.conn.write_content(ctx.channel, &method, &got.msg);
    Ok(())
}
