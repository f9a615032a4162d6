//! Everything the management API shows, in one JSON document gathered on shard 0: the
//! topology it holds (vhosts, users, permissions, policies, limits, exchanges, bindings) and
//! what every shard reports (queues, connections, channels, consumers, message counters).
//! The API thread shapes it into RabbitMQ's answers; nothing here runs on the message path.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{json, Value};

use super::definitions;
use super::listing::bindings;
use crate::broker::inspect::{ConnectionInfo, QueueInfo};
use crate::broker::policy::{definition_to_json, Target};
use crate::broker::topology::Topology;
use crate::ids::QueueRef;
use crate::shard::Shard;
use crate::stats::{Counter, Totals};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The JSON document (see the module doc).
pub async fn snapshot(shard: &Shard) -> String {
    let reports = shard.all_reports().await;
    let mut queues = Vec::new();
    let mut connections = Vec::new();
    let mut routed: HashMap<(Bytes, Bytes), (u64, u64)> = HashMap::new();
    let mut all = Totals::default();
    for r in &reports {
        queues.extend(r.queues.iter().cloned());
        connections.extend(r.connections.iter().cloned());
        all.add(&r.stats);
        for (vhost, name, i, o) in &r.exchanges {
            let sum = routed.entry((vhost.clone(), name.clone())).or_default();
            sum.0 += i;
            sum.1 += o;
        }
    }
    let topology = shard.topology.borrow();
    json!({
        "vhosts": definitions::vhosts(&topology),
        "users": definitions::users(&topology),
        "permissions": definitions::permissions(&topology),
        "topic_permissions": definitions::topic_permissions(&topology),
        "policies": definitions::policies(&topology, false),
        "operator_policies": definitions::policies(&topology, true),
        "vhost_limits": definitions::vhost_limits(&topology),
        "exchanges": exchanges(&topology, &routed),
        "bindings": all_bindings(&topology, &queues),
        "queues": queues.iter().map(|q| queue(&topology, q)).collect::<Vec<_>>(),
        "connections": connections_json(&connections, &queues),
        "totals": totals(&all),
        "shards": reports.iter().map(|r| totals(&r.stats)).collect::<Vec<_>>(),
        "shard_metrics": reports.iter().map(|r| r.metrics.to_json()).collect::<Vec<_>>(),
    })
    .to_string()
}

/// Counters under RabbitMQ's `message_stats` names.
fn totals(t: &Totals) -> Value {
    let deliver_get = t.get(Counter::Deliver)
        + t.get(Counter::DeliverNoAck)
        + t.get(Counter::Get)
        + t.get(Counter::GetNoAck);
    json!({
        "publish": t.get(Counter::Publish),
        "deliver": t.get(Counter::Deliver),
        "deliver_no_ack": t.get(Counter::DeliverNoAck),
        "get": t.get(Counter::Get),
        "get_no_ack": t.get(Counter::GetNoAck),
        "get_empty": t.get(Counter::GetEmpty),
        "deliver_get": deliver_get,
        "redeliver": t.get(Counter::Redeliver),
        "ack": t.get(Counter::Ack),
        "confirm": t.get(Counter::Confirm),
        "return_unroutable": t.get(Counter::ReturnUnroutable),
        "drop_unroutable": t.get(Counter::DropUnroutable),
        "disk_writes": t.get(Counter::DiskWrites),
        "disk_reads": t.get(Counter::DiskReads),
        "connection_created": t.get(Counter::ConnectionCreated),
        "connection_closed": t.get(Counter::ConnectionClosed),
        "channel_created": t.get(Counter::ChannelCreated),
        "channel_closed": t.get(Counter::ChannelClosed),
        "queue_created": t.get(Counter::QueueCreated),
        "queue_declared": t.get(Counter::QueueDeclared),
        "queue_deleted": t.get(Counter::QueueDeleted),
    })
}

/// Every exchange of every vhost, the default one (named "") included, by vhost and name.
fn exchanges(topology: &Topology, routed: &HashMap<(Bytes, Bytes), (u64, u64)>) -> Value {
    let stats = |vhost: &Bytes, name: &Bytes| {
        let (i, o) = routed.get(&(vhost.clone(), name.clone()))?;
        Some(json!({"publish_in": i, "publish_out": o}))
    };
    let mut all: Vec<Value> = topology
        .vhosts()
        .map(|v| {
            json!({"name": "", "vhost": text(&v.def.name), "type": "direct", "durable": true,
                "auto_delete": false, "internal": false, "arguments": {}, "policy": null,
                "stats": stats(&v.def.name, &Bytes::new())})
        })
        .collect();
    for ex in topology.exchanges() {
        let policy = topology
            .policies()
            .applying(&ex.vhost, &ex.name, Target::Exchange)
            .0
            .map(|p| text(&p.def.name));
        all.push(json!({"name": text(&ex.name), "vhost": text(&ex.vhost),
            "type": ex.kind.as_str(), "durable": ex.durable, "auto_delete": ex.auto_delete,
            "internal": ex.internal, "arguments": definition_to_json(&ex.arguments),
            "policy": policy, "stats": stats(&ex.vhost, &ex.name)}));
    }
    all.sort_by(|a, b| {
        let key = |v: &Value| (v["vhost"].to_string(), v["name"].to_string());
        key(a).cmp(&key(b))
    });
    Value::Array(all)
}

fn all_bindings(topology: &Topology, queues: &[QueueInfo]) -> Value {
    let mut out = Vec::new();
    for vhost in topology.vhosts() {
        let vhost = &vhost.def.name;
        let in_vhost: Vec<QueueInfo> = queues
            .iter()
            .filter(|q| q.vhost == vhost)
            .cloned()
            .collect();
        for b in bindings(topology, &in_vhost, vhost, true) {
            out.push(json!({"source": b.source, "vhost": text(vhost),
                "destination": b.destination, "destination_type": b.destination_kind,
                "routing_key": b.routing_key, "arguments": definition_to_json(&b.arguments)}));
        }
    }
    Value::Array(out)
}

fn queue(topology: &Topology, q: &QueueInfo) -> Value {
    let (policy, operator) = topology
        .policies()
        .applying(&q.vhost, &q.name, Target::Queue);
    let name = |p: Option<&crate::broker::policy::Policy>| p.map(|p| text(&p.def.name));
    json!({"name": text(&q.name), "vhost": text(&q.vhost), "durable": q.durable,
        "auto_delete": q.auto_delete, "exclusive": q.exclusive,
        "arguments": definition_to_json(&q.arguments),
        "messages_ready": q.messages_ready, "messages_unacknowledged": q.messages_unacknowledged,
        "consumers": q.consumers, "message_bytes_ready": q.message_bytes.0,
        "message_bytes_unacknowledged": q.message_bytes.1,
        "policy": name(policy), "operator_policy": name(operator),
        "effective_policy_definition": effective_definition(policy, operator),
        "idle_since": crate::io::time::unix_ms().saturating_sub(q.idle_ms),
        "stats": queue_stats(&q.stats)})
}

/// The keys the queue's policy and operator policy set (the operator's where both do).
fn effective_definition(
    policy: Option<&crate::broker::policy::Policy>,
    operator: Option<&crate::broker::policy::Policy>,
) -> Value {
    let mut out = serde_json::Map::new();
    for p in [policy, operator].into_iter().flatten() {
        if let Value::Object(keys) = definition_to_json(&p.def.definition) {
            out.extend(keys);
        }
    }
    Value::Object(out)
}

/// A queue's counters under RabbitMQ's `message_stats` names.
fn queue_stats(s: &crate::broker::queue::QueueStats) -> Value {
    json!({"publish": s.publish, "deliver": s.deliver, "deliver_no_ack": s.deliver_no_ack,
        "get": s.get, "get_no_ack": s.get_no_ack, "get_empty": s.get_empty,
        "deliver_get": s.deliver + s.deliver_no_ack + s.get + s.get_no_ack,
        "ack": s.ack, "redeliver": s.redeliver})
}

fn connections_json(connections: &[ConnectionInfo], queues: &[QueueInfo]) -> Value {
    let names: HashMap<QueueRef, (&[u8], &[u8])> = queues
        .iter()
        .map(|q| (q.id, (&q.name[..], &q.vhost[..])))
        .collect();
    let all: Vec<Value> = connections.iter().map(|c| connection(c, &names)).collect();
    Value::Array(all)
}

fn connection(c: &ConnectionInfo, names: &HashMap<QueueRef, (&[u8], &[u8])>) -> Value {
    let channels: Vec<Value> = c
        .channel_details
        .iter()
        .map(|ch| {
            let consumers: Vec<Value> = ch
                .consumers
                .iter()
                .filter_map(|k| {
                    let (name, vhost) = names.get(&k.queue?)?;
                    Some(
                        json!({"consumer_tag": text(&k.tag), "ack_required": k.ack_required,
                        "queue": {"name": text(name), "vhost": text(vhost)}}),
                    )
                })
                .collect();
            json!({"number": ch.number, "prefetch_count": ch.prefetch_count,
                "global_prefetch_count": ch.global_prefetch_count,
                "messages_unacknowledged": ch.messages_unacknowledged, "confirm": ch.confirm,
                "transactional": ch.transactional, "consumers": consumers})
        })
        .collect();
    json!({"name": c.name, "user": c.user, "vhost": c.vhost,
        "peer_host": c.peer.ip().to_string(), "peer_port": c.peer.port(), "state": c.state,
        "channels": c.channels, "client_properties": definition_to_json(&c.client_properties),
        "connected_at": c.connected_at_ms, "frame_max": c.frame_max,
        "channel_max": c.channel_max, "timeout": c.heartbeat_secs,
        "idle_since": crate::io::time::unix_ms().saturating_sub(c.idle_ms),
        "auth_mechanism": c.auth_mechanism, "tls": c.tls.map(|(v, s)| json!([v, s])),
        "recv_oct": c.io_counts[0], "recv_cnt": c.io_counts[1],
        "send_oct": c.io_counts[2], "send_cnt": c.io_counts[3],
        "channel_details": channels})
}
