//! basic.qos / consume / cancel.
//!
//! A consumer is registered on the channel before its queue answers (so that deliveries that
//! race ahead of consume-ok are held, not lost) and attached to its queue once the queue
//! accepted it; consume-ok goes out first, then the held deliveries, in order.

use bytes::Bytes;

use super::{internal, random_suffix, ChannelConsumer, Ctx, Fail};
use crate::broker::permissions::Access;
use crate::broker::{AmqpError, ConsumerSpec, Delivery, OpOk, QueueOp, ShardMsg};
use crate::connection::HardError;
use crate::ids::QueueRef;
use crate::protocol::constants::*;
use crate::protocol::method::*;
use crate::protocol::{FieldTable, Method};
use crate::routing::headers::type_name;
use crate::shard::Client;

pub fn qos(ctx: &Ctx, m: &BasicQos) -> Result<(), Fail> {
    if m.prefetch_size != 0 {
        return Err(Fail::Hard(HardError::new(
            NOT_IMPLEMENTED,
            format!("prefetch_size!=0 ({})", m.prefetch_size),
        )));
    }
    ctx.with(|ch| {
        if m.global {
            ch.channel_prefetch_count = m.prefetch_count;
        } else {
            ch.prefetch_count = m.prefetch_count;
        }
    });
    ctx.send(Method::BasicQosOk(BasicQosOk {}));
    Ok(())
}

/// The `x-priority` argument (default 0); anything but an integer is refused as RabbitMQ
/// refuses it.
fn consumer_priority(vhost: &[u8], queue: &[u8], arguments: &FieldTable) -> Result<i32, Fail> {
    match arguments.get("x-priority") {
        None => Ok(0),
        Some(v) => match v.as_i64() {
            Some(n) => Ok(n.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32),
            None => Err(Fail::Soft(AmqpError::precondition(format!(
                "invalid arg 'x-priority' for queue '{}' in vhost '{}': \"expected integer, got {}\"",
                String::from_utf8_lossy(queue),
                String::from_utf8_lossy(vhost),
                type_name(v)
            )))),
        },
    }
}

pub async fn consume(ctx: &Ctx<'_>, m: &BasicConsume) -> Result<(), Fail> {
    let name = ctx.queue_name_or_last(&m.queue)?;
    ctx.permit(Access::Read, "queue", &name)?;
    let vhost = ctx.vhost();
    let priority = consumer_priority(&vhost, &name, &m.arguments)?;
    let tag = consumer_tag(&m.consumer_tag);
    let id = ctx.shard.next_consumer_id();
    let Some((prefetch_count, channel_prefetch_count)) = register(ctx, &tag, &name, id, m.no_ack)?
    else {
        return Ok(());
    };
    let spec = ConsumerSpec {
        id,
        conn: ctx.conn.cref,
        channel: ctx.channel,
        tag: tag.clone(),
        no_ack: m.no_ack,
        exclusive: m.exclusive,
        prefetch_count,
        channel_prefetch_count,
        priority,
    };
    let owner = ctx.shard.queue_owner(&vhost, &name);
    ctx.conn.uses_queue_shard(owner);
    let queue = match ctx
        .shard
        .request(owner, QueueOp::Consume { vhost, name, spec })
        .await
    {
        Ok(OpOk::Consuming(queue)) => queue,
        Ok(_) => return Err(internal()),
        Err(e) => {
            ctx.with(|ch| ch.remove_consumer_by_tag(&tag));
            return Err(e.into());
        }
    };
    if !attach(ctx, id, queue) {
        let op = QueueOp::Cancel {
            queue,
            consumer_id: id,
            channel_closed: false,
        };
        ctx.shard.send(queue.shard as usize, ShardMsg::Oneway(op));
        return Ok(());
    }
    if !m.nowait {
        let consumer_tag = tag.clone();
        ctx.send(Method::BasicConsumeOk(BasicConsumeOk { consumer_tag }));
    }
    release_held(ctx, &tag);
    Ok(())
}

/// The client's tag, or a generated `amq.ctag-…` one.
pub fn consumer_tag(asked: &Bytes) -> Bytes {
    if asked.is_empty() {
        Bytes::from(format!("amq.ctag-{}", random_suffix()))
    } else {
        asked.clone()
    }
}

/// Registers the consumer on the channel; returns the channel's prefetch limits, or None
/// when the channel is gone.
fn register(
    ctx: &Ctx,
    tag: &Bytes,
    queue: &[u8],
    id: u64,
    no_ack: bool,
) -> Result<Option<(u16, u16)>, HardError> {
    let max = ctx.shard.config.consumer_max_per_channel;
    let limits = ctx.with(|ch| {
        if ch.consumers.iter().any(|c| c.tag == *tag) {
            let tag = String::from_utf8_lossy(tag);
            let text = format!("attempt to reuse consumer tag '{tag}'");
            return Err(HardError::new(NOT_ALLOWED, text));
        }
        if max > 0 && ch.consumers.len() >= max {
            let text = format!("reached maximum ({max}) of consumers per channel");
            return Err(HardError::new(NOT_ALLOWED, text));
        }
        ch.consumers.push(ChannelConsumer {
            tag: tag.clone(),
            id,
            no_ack,
            queue: None,
            queue_name: Bytes::copy_from_slice(queue),
        });
        Ok((ch.prefetch_count, ch.channel_prefetch_count))
    });
    limits.transpose()
}

/// Attaches the consumer to its queue; false when the channel closed (or the consumer was
/// cancelled) while the queue answered: then the consumer goes too.
fn attach(ctx: &Ctx, id: u64, queue: QueueRef) -> bool {
    ctx.with(|ch| {
        if ch.closing {
            return false;
        }
        match ch.consumers.iter_mut().find(|c| c.id == id) {
            Some(c) => {
                c.queue = Some(queue);
                true
            }
            None => false,
        }
    })
    .unwrap_or(false)
}

/// Deliveries that raced ahead of consume-ok go out now, in order.
fn release_held(ctx: &Ctx, tag: &Bytes) {
    let held: Vec<Delivery> = ctx
        .with(|ch| {
            let (mine, others): (Vec<Delivery>, Vec<Delivery>) =
                ch.held.drain(..).partition(|d| d.consumer_tag == *tag);
            ch.held = others;
            mine
        })
        .unwrap_or_default();
    for d in held {
        if let Some((queue, seq)) = ctx.conn.deliver(d) {
            ctx.shard.bounce(queue, seq);
        }
    }
}

pub async fn cancel(ctx: &Ctx<'_>, m: &BasicCancel) -> Result<(), Fail> {
    let consumer = ctx
        .with(|ch| {
            if ch.reply_consumer.as_ref() == Some(&m.consumer_tag) {
                ch.reply_consumer = None;
            }
            let i = ch.consumers.iter().position(|c| c.tag == m.consumer_tag)?;
            Some(ch.consumers.remove(i))
        })
        .flatten();
    if let Some(ChannelConsumer {
        queue: Some(queue),
        id,
        ..
    }) = consumer
    {
        let op = QueueOp::Cancel {
            queue,
            consumer_id: id,
            channel_closed: false,
        };
        ctx.shard.request(queue.shard as usize, op).await?;
    }
    if !m.nowait {
        let consumer_tag = m.consumer_tag.clone();
        ctx.send(Method::BasicCancelOk(BasicCancelOk { consumer_tag }));
    }
    Ok(())
}
