//! The management API's operations that act on queues and messages (the topology changes it
//! makes go through [`super::Control`] like `warren ctl`'s): login checks, queue delete and
//! purge, basic.get on behalf of an operator, and publishing a message from the API. Served
//! on shard 0; queue operations go to the queue's owner like a client's would.

use bytes::Bytes;
use serde_json::{json, Value};

use super::verbs::no_connection;
use super::ControlReply;
use crate::broker::publish::{fan_out, route, Route};
use crate::broker::{OpOk, Origin, QueueOp, SettleKind, ShardMsg};
use crate::message::Message;
use crate::protocol::BasicProperties;
use crate::shard::Shard;

/// What the management API asks of the queues.
#[derive(Debug)]
pub enum ApiOp {
    /// The user's tags (comma-separated) if the password is right and the user may log in
    /// from there (guest only from loopback, as for AMQP).
    Login {
        user: Bytes,
        password: Bytes,
        loopback: bool,
    },
    DeleteQueue {
        vhost: Bytes,
        name: Bytes,
        if_unused: bool,
        if_empty: bool,
    },
    PurgeQueue {
        vhost: Bytes,
        name: Bytes,
    },
    /// Up to `count` messages, then put back (`requeue`) or acknowledged / rejected.
    Get {
        vhost: Bytes,
        name: Bytes,
        count: u32,
        settle: GetSettle,
    },
    /// A message to an exchange; answers `{"routed": bool}`.
    Publish {
        vhost: Bytes,
        exchange: Bytes,
        routing_key: Bytes,
        properties: Box<BasicProperties>,
        body: Bytes,
    },
}

/// The management API's `ackmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetSettle {
    /// `ack_requeue_true` and `reject_requeue_true`: the messages go back.
    Requeue,
    /// `ack_requeue_false`: taken off the queue.
    Ack,
    /// `reject_requeue_false`: rejected (dead-lettered where the queue says so).
    Reject,
}

pub async fn handle(shard: &Shard, op: ApiOp) -> ControlReply {
    match op {
        ApiOp::Login {
            user,
            password,
            loopback,
        } => login(shard, &user, &password, loopback),
        ApiOp::DeleteQueue {
            vhost,
            name,
            if_unused,
            if_empty,
        } => {
            let owner = shard.queue_owner(&vhost, &name);
            let op = QueueOp::Delete {
                vhost,
                name,
                if_unused,
                if_empty,
                owner: no_connection(),
            };
            shard.request(owner, op).await.map_err(|e| e.text)?;
            Ok(String::new())
        }
        ApiOp::PurgeQueue { vhost, name } => {
            let owner = shard.queue_owner(&vhost, &name);
            let op = QueueOp::Purge {
                vhost,
                name,
                owner: no_connection(),
            };
            shard.request(owner, op).await.map_err(|e| e.text)?;
            Ok(String::new())
        }
        ApiOp::Get {
            vhost,
            name,
            count,
            settle,
        } => get(shard, vhost, name, count, settle).await,
        ApiOp::Publish {
            vhost,
            exchange,
            routing_key,
            properties,
            body,
        } => publish(shard, vhost, exchange, routing_key, &properties, body),
    }
}

fn login(shard: &Shard, user: &[u8], password: &[u8], loopback: bool) -> ControlReply {
    let topology = shard.topology.borrow();
    let users = topology.users();
    let remote_guest = user == b"guest" && !loopback && !shard.config.allow_remote_guest;
    match users.get(user) {
        Some(u) if !remote_guest && users.check_password(user, password) => {
            Ok(String::from_utf8_lossy(&u.tags).into_owned())
        }
        _ => Err("Login failed".to_string()),
    }
}

async fn get(
    shard: &Shard,
    vhost: Bytes,
    name: Bytes,
    count: u32,
    settle: GetSettle,
) -> ControlReply {
    let owner = shard.queue_owner(&vhost, &name);
    let mut got = Vec::new();
    for _ in 0..count {
        let op = QueueOp::Get {
            vhost: vhost.clone(),
            name: name.clone(),
            no_ack: settle == GetSettle::Ack,
            conn: no_connection(),
            channel: 0,
        };
        match shard.request(owner, op).await.map_err(|e| e.text)? {
            OpOk::Got(Some(g)) => got.push(*g),
            _ => break,
        }
    }
    let kind = match settle {
        GetSettle::Ack => None,
        GetSettle::Requeue => Some(SettleKind::Requeue),
        GetSettle::Reject => Some(SettleKind::Reject),
    };
    if let (Some(kind), Some(first)) = (kind, got.first()) {
        let queue = first.queue;
        let seqs = got.iter().map(|g| g.seq).collect();
        shard.send(owner, ShardMsg::Settle { queue, kind, seqs });
        shard.flush();
    }
    let messages: Vec<Value> = got
        .iter()
        .map(|g| {
            json!({"exchange": String::from_utf8_lossy(&g.msg.exchange),
                "routing_key": String::from_utf8_lossy(&g.msg.routing_key),
                "redelivered": g.redelivered, "message_count": g.message_count,
                "properties": properties_raw_hex(&g.msg.properties),
                "payload": base64_of(&g.msg.body), "payload_bytes": g.msg.body.len()})
        })
        .collect();
    Ok(Value::Array(messages).to_string())
}

/// Properties travel to the API thread as their wire bytes (hex), which decodes them.
fn properties_raw_hex(raw: &[u8]) -> String {
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

fn base64_of(body: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(body)
}

fn publish(
    shard: &Shard,
    vhost: Bytes,
    exchange: Bytes,
    routing_key: Bytes,
    properties: &BasicProperties,
    body: Bytes,
) -> ControlReply {
    // Counted like a client's publish (RabbitMQ publishes through a direct connection).
    crate::stats::add(crate::stats::Counter::Publish, 1);
    let mut raw = bytes::BytesMut::new();
    properties.encode(&mut raw);
    let persistent = properties.delivery_mode == Some(2);
    let msg = Message::new(exchange, routing_key, raw.freeze(), body, persistent);
    let route = route(&shard.topology.borrow(), shard.count, &vhost, &msg);
    // A name on the default exchange is routed by its owner, which drops it if unknown; the
    // API answers from the names the owner holds, as RabbitMQ's routed flag does.
    let routed = match &route {
        Route::Queues(queues) => !queues.is_empty(),
        Route::Named { .. } => {
            crate::stats::add_default_exchange(&vhost, 1);
            true
        }
    };
    let origin = Origin {
        conn: no_connection(),
        channel: 0,
        mandatory: false,
        confirm: None,
        dead_letter: false,
    };
    let mut out = shard.take_outbox();
    fan_out(route, &vhost, msg, origin, &mut out);
    shard.send_all(out);
    shard.flush();
    Ok(json!({ "routed": routed }).to_string())
}
