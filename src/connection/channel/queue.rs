//! queue.declare / delete / purge / bind / unbind.

use bytes::Bytes;

use super::exchange::{change_queue_binding, no_default_exchange};
use super::{internal, random_suffix, Ctx, Fail};
use crate::broker::permissions::Access;
use crate::broker::publish::is_default_exchange;
use crate::broker::queue::Overflow;
use crate::broker::topology::{no_exchange, BindingChange, Dest};
use crate::broker::{AmqpError, OpOk, QueueOp};
use crate::protocol::constants::NOT_FOUND;
use crate::protocol::method::*;
use crate::protocol::{FieldTable, FieldValue, Method};
use crate::routing::headers::type_name;
use crate::shard::Shard;

pub async fn declare(ctx: &Ctx<'_>, m: &QueueDeclare) -> Result<(), Fail> {
    let vhost = ctx.vhost();
    let name = if m.queue.is_empty() {
        server_named_queue(ctx.shard, &vhost)
    } else {
        if !m.passive && m.queue.starts_with(b"amq.") {
            return Err(Fail::Soft(AmqpError::access_refused(format!(
                "queue name '{}' contains reserved prefix 'amq.*'",
                String::from_utf8_lossy(&m.queue)
            ))));
        }
        m.queue.clone()
    };
    let named = (&vhost[..], &name[..]);
    check_queue_type(named, &m.arguments)?;
    if !m.passive {
        ctx.permit(Access::Configure, "queue", &name)?;
        check_integer_args(named, &m.arguments)?;
        check_value_args(named, &m.arguments)?;
    }
    let owner = ctx.shard.queue_owner(&vhost, &name);
    let op = QueueOp::Declare {
        vhost,
        name: name.clone(),
        passive: m.passive,
        durable: m.durable,
        exclusive: m.exclusive,
        auto_delete: m.auto_delete,
        arguments: m.arguments.clone(),
        owner: ctx.conn.cref,
    };
    if m.exclusive {
        ctx.conn.uses_queue_shard(owner);
    }
    let OpOk::Declared {
        name,
        message_count,
        consumer_count,
        ..
    } = ctx.shard.request(owner, op).await?
    else {
        return Err(internal());
    };
    ctx.with(|ch| ch.last_queue = name.clone());
    if !m.nowait {
        ctx.send(Method::QueueDeclareOk(QueueDeclareOk {
            queue: name,
            message_count,
            consumer_count,
        }));
    }
    Ok(())
}

/// A queue's (vhost, name), for refusals that name both.
type Named<'a> = (&'a [u8], &'a [u8]);

/// `x-queue-type`: classic, quorum and stream are accepted (all served by the local queue).
fn check_queue_type((vhost, name): Named, arguments: &FieldTable) -> Result<(), Fail> {
    if let Some(FieldValue::LongStr(kind)) = arguments.get("x-queue-type") {
        if !matches!(&kind[..], b"classic" | b"quorum" | b"stream") {
            return Err(Fail::Soft(AmqpError::precondition(format!(
                "invalid arg 'x-queue-type' for queue '{}' in vhost '{}': unsupported queue type '{}'",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(vhost),
                String::from_utf8_lossy(kind)
            ))));
        }
    }
    Ok(())
}

/// The queue arguments RabbitMQ requires to be integers.
const INTEGER_ARGS: [&str; 6] = [
    "x-delivery-limit",
    "x-expires",
    "x-message-ttl",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
];

/// An integer argument of another type (`x-max-length` as a string, say) is refused as
/// RabbitMQ refuses it: 406, "expected integer, got longstr".
fn check_integer_args((vhost, name): Named, arguments: &FieldTable) -> Result<(), Fail> {
    use FieldValue as V;
    for key in INTEGER_ARGS {
        let value = match arguments.get(key) {
            None | Some(V::I8(_) | V::U8(_) | V::I16(_) | V::U16(_)) => continue,
            Some(V::I32(_) | V::U32(_) | V::I64(_) | V::U64(_)) => continue,
            Some(other) => other,
        };
        return Err(Fail::Soft(AmqpError::precondition(format!(
            "invalid arg '{key}' for queue '{}' in vhost '{}': \"expected integer, got {}\"",
            String::from_utf8_lossy(name),
            String::from_utf8_lossy(vhost),
            type_name(value)
        ))));
    }
    Ok(())
}

/// x-max-length and x-max-length-bytes must not be negative, x-expires must be positive and
/// x-message-ttl not negative (both at most 2^32 - 1 ms), and x-overflow must name a mode
/// RabbitMQ knows; refusals in RabbitMQ's wording.
fn check_value_args((vhost, name): Named, arguments: &FieldTable) -> Result<(), Fail> {
    let invalid = |key: &str, why: String| {
        Fail::Soft(AmqpError::precondition(format!(
            "invalid arg '{key}' for queue '{}' in vhost '{}': {why}",
            String::from_utf8_lossy(name),
            String::from_utf8_lossy(vhost)
        )))
    };
    const MAX_EXPIRY: i64 = u32::MAX as i64;
    for key in [
        "x-max-length",
        "x-max-length-bytes",
        "x-delivery-limit",
        "x-expires",
        "x-message-ttl",
    ] {
        let Some(n) = arguments.get(key).and_then(|v| v.as_i64()) else {
            continue;
        };
        let timer = matches!(key, "x-expires" | "x-message-ttl");
        if key == "x-expires" && n == 0 {
            return Err(invalid(key, "{value_zero,0}".into()));
        }
        if n < 0 {
            return Err(invalid(key, format!("{{value_negative,{n}}}")));
        }
        if timer && n > MAX_EXPIRY {
            return Err(invalid(key, format!("{{value_too_large,{n}}}")));
        }
    }
    if let Some(v) = arguments.get("x-single-active-consumer") {
        if v.as_bool().is_none() {
            let why = format!("{{unacceptable_type,{}}}", type_name(v));
            return Err(invalid("x-single-active-consumer", why));
        }
    }
    match arguments.get("x-overflow") {
        None => Ok(()),
        Some(FieldValue::LongStr(mode)) if Overflow::parse(mode).is_some() => Ok(()),
        Some(FieldValue::LongStr(_)) => Err(invalid("x-overflow", "invalid_overflow".into())),
        Some(other) => Err(invalid(
            "x-overflow",
            format!("{{unacceptable_type,{}}}", type_name(other)),
        )),
    }
}

pub async fn delete(ctx: &Ctx<'_>, m: &QueueDelete) -> Result<(), Fail> {
    let name = ctx.queue_name_or_last(&m.queue)?;
    ctx.permit(Access::Configure, "queue", &name)?;
    let vhost = ctx.vhost();
    let owner = ctx.shard.queue_owner(&vhost, &name);
    let op = QueueOp::Delete {
        vhost,
        name,
        if_unused: m.if_unused,
        if_empty: m.if_empty,
        owner: ctx.conn.cref,
    };
    let OpOk::Count(message_count) = ctx.shard.request(owner, op).await? else {
        return Err(internal());
    };
    if !m.nowait {
        ctx.send(Method::QueueDeleteOk(QueueDeleteOk { message_count }));
    }
    Ok(())
}

pub async fn purge(ctx: &Ctx<'_>, m: &QueuePurge) -> Result<(), Fail> {
    let name = ctx.queue_name_or_last(&m.queue)?;
    ctx.permit(Access::Read, "queue", &name)?;
    let vhost = ctx.vhost();
    let owner = ctx.shard.queue_owner(&vhost, &name);
    let op = QueueOp::Purge {
        vhost,
        name,
        owner: ctx.conn.cref,
    };
    let OpOk::Count(message_count) = ctx.shard.request(owner, op).await? else {
        return Err(internal());
    };
    if !m.nowait {
        ctx.send(Method::QueuePurgeOk(QueuePurgeOk { message_count }));
    }
    Ok(())
}

pub async fn bind(ctx: &Ctx<'_>, m: &QueueBind) -> Result<(), Fail> {
    let name = ctx.queue_name_or_last(&m.queue)?;
    permit_binding(ctx, &name, &m.exchange, &m.routing_key)?;
    let binding = Binding {
        queue: &name,
        exchange: &m.exchange,
        routing_key: &m.routing_key,
        arguments: &m.arguments,
    };
    change(ctx, binding, true).await?;
    if !m.nowait {
        ctx.send(Method::QueueBindOk(QueueBindOk {}));
    }
    Ok(())
}

pub async fn unbind(ctx: &Ctx<'_>, m: &QueueUnbind) -> Result<(), Fail> {
    let name = ctx.queue_name_or_last(&m.queue)?;
    permit_binding(ctx, &name, &m.exchange, &m.routing_key)?;
    let binding = Binding {
        queue: &name,
        exchange: &m.exchange,
        routing_key: &m.routing_key,
        arguments: &m.arguments,
    };
    change(ctx, binding, false).await?;
    ctx.send(Method::QueueUnbindOk(QueueUnbindOk {}));
    Ok(())
}

/// Binding needs write on the queue and read on the exchange (and on the key, for a topic
/// exchange with topic permissions), as in RabbitMQ.
fn permit_binding(
    ctx: &Ctx<'_>,
    queue: &[u8],
    exchange: &[u8],
    key: &[u8],
) -> Result<(), AmqpError> {
    ctx.permit(Access::Write, "queue", queue)?;
    ctx.permit(Access::Read, "exchange", exchange)?;
    ctx.permit_topic(Access::Read, exchange, key)
}

/// A queue binding as queue.bind and queue.unbind name it.
struct Binding<'a> {
    queue: &'a Bytes,
    exchange: &'a Bytes,
    routing_key: &'a Bytes,
    arguments: &'a FieldTable,
}

/// Looks the queue up on its owner (for its reference and durability), then binds or
/// unbinds everywhere. Unbinding what does not exist succeeds, as in RabbitMQ.
async fn change(ctx: &Ctx<'_>, b: Binding<'_>, bind: bool) -> Result<(), Fail> {
    if is_default_exchange(b.exchange) {
        return Err(Fail::Soft(no_default_exchange()));
    }
    let vhost = ctx.vhost();
    let owner = ctx.shard.queue_owner(&vhost, b.queue);
    let lookup = QueueOp::Declare {
        vhost: vhost.clone(),
        name: b.queue.clone(),
        passive: true,
        durable: false,
        exclusive: false,
        auto_delete: false,
        arguments: FieldTable::default(),
        owner: ctx.conn.cref,
    };
    let (queue, durable) = match ctx.shard.request(owner, lookup).await {
        Ok(OpOk::Declared { queue, durable, .. }) => (queue, durable),
        Ok(_) => return Err(internal()),
        Err(e) if !bind && e.code == NOT_FOUND => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if bind
        && ctx
            .shard
            .topology
            .borrow()
            .exchange(&vhost, b.exchange)
            .is_none()
    {
        return Err(Fail::Soft(no_exchange(&vhost, b.exchange)));
    }
    let change = BindingChange {
        vhost,
        source: b.exchange.clone(),
        dest: Dest::Queue(queue),
        dest_name: b.queue.clone(),
        dest_durable: durable,
        routing_key: b.routing_key.clone(),
        arguments: b.arguments.clone(),
    };
    change_queue_binding(ctx.shard, owner, bind, change).await
}

/// `amq.gen-…` names that hash to this shard, so server-named queues stay local.
fn server_named_queue(shard: &Shard, vhost: &[u8]) -> Bytes {
    loop {
        let name = format!("amq.gen-{}", random_suffix());
        if shard.queue_owner(vhost, name.as_bytes()) == shard.id {
            return Bytes::from(name);
        }
    }
}
