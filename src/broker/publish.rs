//! Routing a publish: which queues a message reaches, and the enqueue messages that carry it
//! there. Runs on the shard that read the message, against that shard's routing replica.
//!
//! The default exchange routes by name to whichever shard owns that name (the owner looks the
//! queue up); every other exchange routes to queue references from the replica. A fanout to
//! eight queues clones the message's `Bytes` handles seven times, never the body.

use bytes::Bytes;
use smallvec::SmallVec;

use super::envelope::{CreditKey, Origin, Outbox, QueueTarget, ShardMsg};
use super::topology::Topology;
use crate::ids::{name_hash, queue_shard_bytes, QueueRef};
use crate::message::Message;
use crate::protocol::BasicProperties;

/// Where a publish goes.
pub enum Route {
    /// The default exchange: the queue named by the routing key, on this shard.
    Named { shard: usize, name_hash: u64 },
    /// Queues reached through bindings (exchange-to-exchange ones followed), each once.
    Queues(SmallVec<[QueueRef; 8]>),
}

impl Route {
    /// How many queues will answer for the message (its publisher confirm waits for all).
    pub fn targets(&self) -> u32 {
        match self {
            Route::Named { .. } => 1,
            Route::Queues(queues) => queues.len() as u32,
        }
    }

    /// The credit the publisher spends: one per target queue.
    pub fn credit_keys(&self) -> impl Iterator<Item = CreditKey> + '_ {
        let named = match *self {
            Route::Named { shard, name_hash } => Some(CreditKey::Named {
                shard: shard as u16,
                name_hash,
            }),
            Route::Queues(_) => None,
        };
        let queues = match self {
            Route::Queues(queues) => &queues[..],
            Route::Named { .. } => &[],
        };
        named
            .into_iter()
            .chain(queues.iter().map(|q| CreditKey::Queue(*q)))
    }
}

/// The nameless default exchange, also reachable as `amq.default`.
pub fn is_default_exchange(name: &[u8]) -> bool {
    name.is_empty() || name == b"amq.default"
}

/// The queues `msg`, published in `vhost`, reaches. An exchange deleted since basic.publish
/// was checked routes nowhere.
pub fn route(topology: &Topology, shards: usize, vhost: &[u8], msg: &Message) -> Route {
    if is_default_exchange(&msg.exchange) {
        let shard = queue_shard_bytes(vhost, &msg.routing_key, shards);
        let name_hash = name_hash(&msg.routing_key);
        return Route::Named { shard, name_hash };
    }
    let mut queues = SmallVec::new();
    // Headers are parsed only when a headers exchange could look at them.
    let headers = if topology.has_headers_bindings() {
        BasicProperties::decode(&msg.properties)
            .ok()
            .and_then(|p| p.headers)
    } else {
        None
    };
    let _ = topology.route(
        vhost,
        &msg.exchange,
        &msg.routing_key,
        headers.as_ref(),
        &mut queues,
    );
    Route::Queues(queues)
}

/// Hands `msg` to every queue of `route`: the last one takes the message itself, the others
/// a clone of its handles. Only the default exchange's single target reports a missing
/// queue back for `mandatory`; exchange routes were checked against the replica.
pub fn fan_out(route: Route, vhost: &Bytes, msg: Message, origin: Origin, out: &mut Outbox) {
    match route {
        Route::Named { shard, .. } => {
            let queue = QueueTarget::Name {
                vhost: vhost.clone(),
                name: msg.routing_key.clone(),
            };
            out.push((shard, ShardMsg::Enqueue { queue, msg, origin }));
        }
        Route::Queues(queues) => {
            let origin = Origin {
                mandatory: false,
                ..origin
            };
            let Some((&last, rest)) = queues.split_last() else {
                return;
            };
            for &queue in rest {
                let msg = msg.clone();
                let queue_target = QueueTarget::Ref(queue);
                let enqueue = ShardMsg::Enqueue {
                    queue: queue_target,
                    msg,
                    origin,
                };
                out.push((queue.shard as usize, enqueue));
            }
            let enqueue = ShardMsg::Enqueue {
                queue: QueueTarget::Ref(last),
                msg,
                origin,
            };
            out.push((last.shard as usize, enqueue));
        }
    }
}
