//! RabbitMQ's JSON objects (queue, exchange, connection, channel, consumer, vhost, user,
//! binding, overview) made from shard 0's snapshot and the sampled rates, with the field
//! names and types of RabbitMQ 3.10's management plugin.

use serde_json::{json, Map, Value};

use super::state::Rates;

/// Counter names of a queue's, a vhost's and the node's `message_stats`.
pub const QUEUE_COUNTERS: &[&str] = &[
    "ack",
    "deliver",
    "deliver_get",
    "deliver_no_ack",
    "get",
    "get_empty",
    "get_no_ack",
    "publish",
    "redeliver",
];
pub const GLOBAL_COUNTERS: &[&str] = &[
    "ack",
    "confirm",
    "deliver",
    "deliver_get",
    "deliver_no_ack",
    "drop_unroutable",
    "get",
    "get_empty",
    "get_no_ack",
    "publish",
    "redeliver",
    "return_unroutable",
];

/// The node's name, as RabbitMQ's `rabbit@host`.
pub fn node_name() -> String {
    format!("warren@{}", hostname())
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn u64_of(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// `{"rate": r}`.
pub fn details(rate: f64) -> Value {
    json!({ "rate": rate })
}

/// `message_stats`: each counter with its `_details`.
pub fn message_stats(counts: &Value, names: &[&str], rate: impl Fn(&str) -> f64) -> Value {
    let mut out = Map::new();
    for name in names {
        out.insert((*name).to_string(), json!(u64_of(&counts[*name])));
        out.insert(format!("{name}_details"), details(rate(name)));
    }
    Value::Object(out)
}

pub fn queue(q: &Value, rates: &Rates) -> Value {
    let (vhost, name) = (str_of(&q["vhost"]), str_of(&q["name"]));
    let ready = u64_of(&q["messages_ready"]);
    let unacked = u64_of(&q["messages_unacknowledged"]);
    let bytes = u64_of(&q["message_bytes"]);
    let stats = message_stats(&q["stats"], QUEUE_COUNTERS, |c| rates.queue(vhost, name, c));
    let consumers = u64_of(&q["consumers"]);
    json!({
        "name": name, "vhost": vhost, "node": node_name(), "type": "classic",
        "state": "running", "durable": q["durable"], "auto_delete": q["auto_delete"],
        "exclusive": q["exclusive"], "arguments": q["arguments"],
        "policy": q["policy"], "operator_policy": q["operator_policy"],
        "effective_policy_definition": {},
        "consumers": consumers, "consumer_capacity": if consumers > 0 { 1.0 } else { 0.0 },
        "consumer_utilisation": if consumers > 0 { 1.0 } else { 0.0 },
        "exclusive_consumer_tag": null, "single_active_consumer_tag": null,
        "head_message_timestamp": null, "recoverable_slaves": null,
        "messages": ready + unacked, "messages_details": details(0.0),
        "messages_ready": ready, "messages_ready_details": details(0.0),
        "messages_unacknowledged": unacked, "messages_unacknowledged_details": details(0.0),
        "messages_ram": ready + unacked, "messages_ready_ram": ready,
        "messages_unacknowledged_ram": unacked, "messages_persistent": 0,
        "messages_paged_out": 0,
        "message_bytes": bytes, "message_bytes_ready": bytes,
        "message_bytes_unacknowledged": 0, "message_bytes_ram": bytes,
        "message_bytes_persistent": 0, "message_bytes_paged_out": 0,
        "memory": bytes, "message_stats": stats,
    })
}

pub fn exchange(ex: &Value) -> Value {
    json!({
        "name": ex["name"], "vhost": ex["vhost"], "type": ex["type"],
        "durable": ex["durable"], "auto_delete": ex["auto_delete"],
        "internal": ex["internal"], "arguments": ex["arguments"], "policy": ex["policy"],
        "user_who_performed_action": "rmq-internal",
    })
}

/// A binding with its `properties_key` (the routing key, `~` plus a hash when it has
/// arguments), which names it in `/api/bindings/.../{props}`.
pub fn binding(b: &Value) -> Value {
    let mut b = b.clone();
    b["properties_key"] = json!(properties_key(&b));
    b
}

pub fn properties_key(b: &Value) -> String {
    let key = str_of(&b["routing_key"]);
    let no_args = b["arguments"].as_object().is_none_or(Map::is_empty);
    let quoted = quote_key(key);
    if no_args {
        return if key.is_empty() {
            "~".to_string()
        } else {
            quoted
        };
    }
    let hash = b["arguments"]
        .to_string()
        .bytes()
        .fold(0u32, |h, c| h.wrapping_mul(31).wrapping_add(u32::from(c)));
    format!("{quoted}~{hash:08x}")
}

/// RabbitMQ's quoting of a routing key in a URL segment: `%`-escapes beyond unreserved.
fn quote_key(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn connection(c: &Value, config_port: u16) -> Value {
    let props = &c["client_properties"];
    json!({
        "name": c["name"], "node": node_name(), "type": "network", "protocol": "AMQP 0-9-1",
        "user": c["user"], "user_who_performed_action": c["user"], "vhost": c["vhost"],
        "host": "127.0.0.1", "port": config_port,
        "peer_host": c["peer_host"], "peer_port": c["peer_port"], "state": c["state"],
        "channels": c["channels"], "channel_max": c["channel_max"],
        "frame_max": c["frame_max"], "timeout": c["timeout"],
        "client_properties": props, "user_provided_name": props["connection_name"],
        "connected_at": c["connected_at"], "auth_mechanism": "PLAIN",
        "ssl": false, "ssl_protocol": null, "ssl_cipher": null, "ssl_hash": null,
        "ssl_key_exchange": null, "peer_cert_issuer": null, "peer_cert_subject": null,
        "peer_cert_validity": null,
        "recv_oct": 0, "recv_oct_details": details(0.0), "recv_cnt": 0,
        "send_oct": 0, "send_oct_details": details(0.0), "send_cnt": 0, "send_pend": 0,
    })
}

/// `name (number)`, RabbitMQ's channel name.
pub fn channel_name(conn: &Value, number: &Value) -> String {
    format!("{} ({})", str_of(&conn["name"]), u64_of(number))
}

pub fn channel(conn: &Value, ch: &Value) -> Value {
    json!({
        "name": channel_name(conn, &ch["number"]), "number": ch["number"],
        "node": node_name(), "user": conn["user"], "user_who_performed_action": conn["user"],
        "vhost": conn["vhost"], "state": "running",
        "connection_details": {"name": conn["name"], "peer_host": conn["peer_host"],
            "peer_port": conn["peer_port"]},
        "prefetch_count": ch["prefetch_count"],
        "global_prefetch_count": ch["global_prefetch_count"],
        "consumer_count": ch["consumers"].as_array().map_or(0, Vec::len),
        "messages_unacknowledged": ch["messages_unacknowledged"],
        "messages_unconfirmed": 0, "messages_uncommitted": 0, "acks_uncommitted": 0,
        "pending_raft_commands": 0,
        "confirm": ch["confirm"], "transactional": ch["transactional"],
    })
}

pub fn consumer(conn: &Value, ch: &Value, k: &Value) -> Value {
    json!({
        "consumer_tag": k["consumer_tag"], "queue": k["queue"],
        "ack_required": k["ack_required"], "prefetch_count": ch["prefetch_count"],
        "exclusive": false, "active": true, "activity_status": "up", "arguments": {},
        "channel_details": {"name": channel_name(conn, &ch["number"]), "number": ch["number"],
            "node": node_name(), "connection_name": conn["name"],
            "peer_host": conn["peer_host"], "peer_port": conn["peer_port"],
            "user": conn["user"]},
    })
}

/// Every channel of every connection, with its connection.
pub fn channels(snapshot: &Value) -> Vec<(&Value, &Value)> {
    let conns = snapshot["connections"].as_array().map(Vec::as_slice);
    let mut out = Vec::new();
    for c in conns.unwrap_or_default() {
        for ch in c["channel_details"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            out.push((c, ch));
        }
    }
    out
}

pub fn consumers(snapshot: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for (c, ch) in channels(snapshot) {
        for k in ch["consumers"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            out.push(consumer(c, ch, k));
        }
    }
    out
}

pub fn vhost(v: &Value, snapshot: &Value) -> Value {
    let name = str_of(&v["name"]);
    let (mut ready, mut unacked) = (0, 0);
    for q in items(snapshot, "queues").filter(|q| q["vhost"] == name) {
        ready += u64_of(&q["messages_ready"]);
        unacked += u64_of(&q["messages_unacknowledged"]);
    }
    let meta = &v["metadata"];
    json!({
        "name": name, "description": meta["description"], "tags": meta["tags"],
        "metadata": meta, "tracing": false, "default_queue_type": "undefined",
        "cluster_state": {node_name(): "running"},
        "messages": ready + unacked, "messages_details": details(0.0),
        "messages_ready": ready, "messages_ready_details": details(0.0),
        "messages_unacknowledged": unacked, "messages_unacknowledged_details": details(0.0),
    })
}

pub fn user(u: &Value) -> Value {
    json!({
        "name": u["name"], "password_hash": u["password_hash"],
        "hashing_algorithm": u["hashing_algorithm"], "tags": u["tags"], "limits": u["limits"],
    })
}

/// The items of one section of the snapshot.
pub fn items<'a>(snapshot: &'a Value, section: &str) -> impl Iterator<Item = &'a Value> {
    snapshot[section]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_keys_as_rabbitmq_names_bindings() {
        assert_eq!(
            properties_key(&json!({"routing_key": "a.#", "arguments": {}})),
            "a.%23"
        );
        assert_eq!(
            properties_key(&json!({"routing_key": "", "arguments": {}})),
            "~"
        );
        let with_args = properties_key(&json!({"routing_key": "k", "arguments": {"x": 1}}));
        assert!(with_args.starts_with("k~"), "{with_args}");
    }

    #[test]
    fn message_stats_carry_details() {
        let stats = message_stats(&json!({"publish": 3}), &["publish", "ack"], |_| 1.5);
        assert_eq!(stats["publish"], 3);
        assert_eq!(stats["ack"], 0);
        assert_eq!(stats["publish_details"]["rate"], 1.5);
    }
}
