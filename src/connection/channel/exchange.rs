//! exchange.declare / delete / bind / unbind: changes to the routing replica, applied through
//! the topology owner shard.

use bytes::Bytes;

use super::{Ctx, Fail};
use crate::broker::permissions::Access;
use crate::broker::publish::is_default_exchange;
use crate::broker::topology::{no_exchange, unknown_type, BindingChange, Dest, TopologyChange};
use crate::broker::AmqpError;
use crate::protocol::method::*;
use crate::protocol::{FieldTable, Method};
use crate::routing::ExchangeKind;
use crate::shard::Shard;

pub async fn declare(ctx: &Ctx<'_>, m: &ExchangeDeclare) -> Result<(), Fail> {
    if is_default_exchange(&m.exchange) {
        return Err(Fail::Soft(no_default_exchange()));
    }
    let vhost = ctx.vhost();
    if m.passive {
        if ctx
            .shard
            .topology
            .borrow()
            .exchange(&vhost, &m.exchange)
            .is_none()
        {
            return Err(Fail::Soft(no_exchange(&vhost, &m.exchange)));
        }
    } else {
        if m.exchange.starts_with(b"amq.") {
            return Err(Fail::Soft(reserved_exchange(&m.exchange)));
        }
        ctx.permit(Access::Configure, "exchange", &m.exchange)?;
        let kind = ExchangeKind::parse(&m.kind).ok_or_else(|| Fail::from(unknown_type(&m.kind)))?;
        let change = TopologyChange::DeclareExchange {
            id: 0,
            vhost,
            name: m.exchange.clone(),
            kind,
            durable: m.durable,
            auto_delete: m.auto_delete,
            internal: m.internal,
            arguments: m.arguments.clone(),
        };
        ctx.shard.change_topology(change).await?;
    }
    if !m.nowait {
        ctx.send(Method::ExchangeDeclareOk(ExchangeDeclareOk {}));
    }
    Ok(())
}

pub async fn delete(ctx: &Ctx<'_>, m: &ExchangeDelete) -> Result<(), Fail> {
    if m.exchange.is_empty() || m.exchange.starts_with(b"amq.") {
        return Err(Fail::Soft(reserved_exchange(&m.exchange)));
    }
    ctx.permit(Access::Configure, "exchange", &m.exchange)?;
    let change = TopologyChange::DeleteExchange {
        vhost: ctx.vhost(),
        name: m.exchange.clone(),
        if_unused: m.if_unused,
    };
    ctx.shard.change_topology(change).await?;
    if !m.nowait {
        ctx.send(Method::ExchangeDeleteOk(ExchangeDeleteOk {}));
    }
    Ok(())
}

pub async fn bind(ctx: &Ctx<'_>, m: &ExchangeBind) -> Result<(), Fail> {
    permit_binding(ctx, &m.destination, &m.source, &m.routing_key)?;
    let binding = Binding {
        source: &m.source,
        destination: &m.destination,
        routing_key: &m.routing_key,
        arguments: &m.arguments,
    };
    change(ctx, binding, true).await?;
    if !m.nowait {
        ctx.send(Method::ExchangeBindOk(ExchangeBindOk {}));
    }
    Ok(())
}

pub async fn unbind(ctx: &Ctx<'_>, m: &ExchangeUnbind) -> Result<(), Fail> {
    permit_binding(ctx, &m.destination, &m.source, &m.routing_key)?;
    let binding = Binding {
        source: &m.source,
        destination: &m.destination,
        routing_key: &m.routing_key,
        arguments: &m.arguments,
    };
    change(ctx, binding, false).await?;
    if !m.nowait {
        ctx.send(Method::ExchangeUnbindOk(ExchangeUnbindOk {}));
    }
    Ok(())
}

/// Binding needs write on the destination and read on the source (and on the key, for a
/// topic source with topic permissions), as in RabbitMQ.
fn permit_binding(
    ctx: &Ctx<'_>,
    destination: &[u8],
    source: &[u8],
    key: &[u8],
) -> Result<(), AmqpError> {
    ctx.permit(Access::Write, "exchange", destination)?;
    ctx.permit(Access::Read, "exchange", source)?;
    ctx.permit_topic(Access::Read, source, key)
}

/// An exchange-to-exchange binding as exchange.bind and exchange.unbind name it.
struct Binding<'a> {
    source: &'a Bytes,
    destination: &'a Bytes,
    routing_key: &'a Bytes,
    arguments: &'a FieldTable,
}

async fn change(ctx: &Ctx<'_>, b: Binding<'_>, bind: bool) -> Result<(), Fail> {
    if is_default_exchange(b.source) || is_default_exchange(b.destination) {
        return Err(Fail::Soft(no_default_exchange()));
    }
    let vhost = ctx.vhost();
    let dest = ctx
        .shard
        .topology
        .borrow()
        .exchange(&vhost, b.destination)
        .map(|ex| (ex.id, ex.durable));
    let Some((dest, dest_durable)) = dest else {
        return if bind {
            Err(Fail::Soft(no_exchange(&vhost, b.destination)))
        } else {
            Ok(())
        };
    };
    let change = BindingChange {
        vhost,
        source: b.source.clone(),
        dest: Dest::Exchange(dest),
        dest_name: b.destination.clone(),
        dest_durable,
        routing_key: b.routing_key.clone(),
        arguments: b.arguments.clone(),
    };
    change_binding(ctx.shard, bind, change).await
}

/// Applies a bind or unbind everywhere.
async fn change_binding(shard: &Shard, bind: bool, change: BindingChange) -> Result<(), Fail> {
    shard.change_topology(binding_change(bind, change)).await?;
    Ok(())
}

/// A bind or unbind of a queue, sent to the topology owner through the queue's shard `via`,
/// so that it cannot overtake the removal of a deleted queue's bindings (see
/// `shard/metadata.rs`).
pub async fn change_queue_binding(
    shard: &Shard,
    via: usize,
    bind: bool,
    change: BindingChange,
) -> Result<(), Fail> {
    shard
        .change_topology_via(via, binding_change(bind, change))
        .await?;
    Ok(())
}

fn binding_change(bind: bool, change: BindingChange) -> TopologyChange {
    if bind {
        TopologyChange::Bind(change)
    } else {
        TopologyChange::Unbind(change)
    }
}

pub fn no_default_exchange() -> AmqpError {
    AmqpError::access_refused("operation not permitted on the default exchange".to_string())
}

fn reserved_exchange(name: &[u8]) -> AmqpError {
    if name.is_empty() {
        return no_default_exchange();
    }
    AmqpError::access_refused(format!(
        "exchange name '{}' contains reserved prefix 'amq.*'",
        String::from_utf8_lossy(name)
    ))
}
