//! RabbitMQ's JSON objects (queue, exchange, connection, channel, consumer, vhost, user,
//! binding, overview) made from shard 0's snapshot and the sampled rates, with the field
//! names and types of RabbitMQ 3.10's management plugin.

use serde_json::{json, Map, Value};

use super::state::Rates;

/// `message_stats` counters come in groups, and as in RabbitMQ a group shows once one of its
/// counters moved: what publishers did, what consumers did.
pub const PUBLISH_GROUP: &[&str] = &["publish", "confirm", "return_unroutable", "drop_unroutable"];
pub const DELIVER_GROUP: &[&str] = &[
    "ack",
    "deliver",
    "deliver_get",
    "deliver_no_ack",
    "get",
    "get_empty",
    "get_no_ack",
    "redeliver",
];
/// The node's store traffic, always shown.
pub const DISK_GROUP: &[&str] = &["disk_reads", "disk_writes"];
/// The node's churn (`churn_rates` in the overview, top-level fields of a node).
pub const CHURN: &[&str] = &[
    "channel_closed",
    "channel_created",
    "connection_closed",
    "connection_created",
    "queue_created",
    "queue_declared",
    "queue_deleted",
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
    put_counters(&mut out, counts, names, &rate);
    Value::Object(out)
}

fn put_counters(
    out: &mut Map<String, Value>,
    counts: &Value,
    names: &[&str],
    rate: &dyn Fn(&str) -> f64,
) {
    for name in names {
        out.insert((*name).to_string(), json!(u64_of(&counts[*name])));
        out.insert(format!("{name}_details"), details(rate(name)));
    }
}

/// `message_stats` of the groups (see [`PUBLISH_GROUP`]) in which something happened, plus
/// the `always` group.
pub fn lazy_stats(
    counts: &Value,
    groups: &[&[&str]],
    always: &[&str],
    rate: impl Fn(&str) -> f64,
) -> Value {
    let mut out = Map::new();
    for group in groups {
        if group.iter().any(|name| u64_of(&counts[*name]) > 0) {
            put_counters(&mut out, counts, group, &rate);
        }
    }
    put_counters(&mut out, counts, always, &rate);
    Value::Object(out)
}

/// Milliseconds since the epoch as RabbitMQ writes times: `2026-12-08T00:05:05.703+00:00`.
pub fn iso_time(ms: u64) -> String {
    crate::log::api_time(ms)
}

pub fn queue(q: &Value, rates: &Rates) -> Value {
    let (vhost, name) = (str_of(&q["vhost"]), str_of(&q["name"]));
    let ready = u64_of(&q["messages_ready"]);
    let unacked = u64_of(&q["messages_unacknowledged"]);
    let ready_bytes = u64_of(&q["message_bytes_ready"]);
    let unacked_bytes = u64_of(&q["message_bytes_unacknowledged"]);
    let bytes = ready_bytes + unacked_bytes;
    let groups: [&[&str]; 2] = [&["publish"], DELIVER_GROUP];
    let stats = lazy_stats(&q["stats"], &groups, &[], |c| rates.queue(vhost, name, c));
    let consumers = u64_of(&q["consumers"]);
    let mut out = json!({
        "name": name, "vhost": vhost, "node": node_name(), "type": "classic",
        "state": "running", "durable": q["durable"], "auto_delete": q["auto_delete"],
        "exclusive": q["exclusive"], "arguments": q["arguments"],
        "policy": q["policy"], "operator_policy": q["operator_policy"],
        "effective_policy_definition": q["effective_policy_definition"],
        "idle_since": iso_time(u64_of(&q["idle_since"])),
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
        "message_bytes": bytes, "message_bytes_ready": ready_bytes,
        "message_bytes_unacknowledged": unacked_bytes, "message_bytes_ram": bytes,
        "message_bytes_persistent": 0, "message_bytes_paged_out": 0,
        "memory": bytes,
    });
    if stats.as_object().is_some_and(|s| !s.is_empty()) {
        out["message_stats"] = stats;
    }
    out
}

pub fn exchange(ex: &Value) -> Value {
    let mut out = json!({
        "name": ex["name"], "vhost": ex["vhost"], "type": ex["type"],
        "durable": ex["durable"], "auto_delete": ex["auto_delete"],
        "internal": ex["internal"], "arguments": ex["arguments"],
        "user_who_performed_action": "rmq-internal",
    });
    if !ex["policy"].is_null() {
        out["policy"] = ex["policy"].clone();
    }
    if ex["stats"].is_object() {
        out["message_stats"] = message_stats(&ex["stats"], &["publish_in", "publish_out"], |_| 0.0);
    }
    out
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

/// A connection; `one` is the single-connection answer, where RabbitMQ writes the TLS
/// fields of a plain connection as empty strings (null in listings).
/// `local` is the listener's address (host and port of the connection's server side).
pub fn connection(c: &Value, local: std::net::SocketAddr, one: bool) -> Value {
    let props = &c["client_properties"];
    let none = if one { json!("") } else { Value::Null };
    let mut out = json!({
        "name": c["name"], "node": node_name(), "type": "network", "protocol": "AMQP 0-9-1",
        "user": c["user"], "user_who_performed_action": c["user"], "vhost": c["vhost"],
        "host": local.ip().to_string(), "port": local.port(),
        "peer_host": c["peer_host"], "peer_port": c["peer_port"], "state": c["state"],
        "channels": c["channels"], "channel_max": c["channel_max"],
        "frame_max": c["frame_max"], "timeout": c["timeout"],
        "client_properties": props, "user_provided_name": props["connection_name"],
        "connected_at": c["connected_at"], "auth_mechanism": c["auth_mechanism"],
        "ssl": c["tls"].is_array(),
        "recv_oct": c["recv_oct"], "recv_oct_details": details(0.0), "recv_cnt": c["recv_cnt"],
        "send_oct": c["send_oct"], "send_oct_details": details(0.0), "send_cnt": c["send_cnt"],
        "send_pend": 0,
    });
    for key in [
        "ssl_protocol",
        "ssl_cipher",
        "ssl_hash",
        "ssl_key_exchange",
        "peer_cert_issuer",
        "peer_cert_subject",
        "peer_cert_validity",
    ] {
        out[key] = none.clone();
    }
    if let (Some(version), Some(suite)) = (c["tls"][0].as_str(), c["tls"][1].as_str()) {
        let (key_exchange, cipher, hash) = suite_parts(suite);
        out["ssl_protocol"] = json!(tls_version(version));
        out["ssl_key_exchange"] = json!(key_exchange);
        out["ssl_cipher"] = json!(cipher);
        out["ssl_hash"] = json!(hash);
    }
    out
}

/// rustls' `TLSv1_3` as RabbitMQ (Erlang) writes it: `tlsv1.3`.
fn tls_version(version: &str) -> String {
    version.to_lowercase().replace('_', ".")
}

/// A cipher suite's key exchange, cipher and hash in RabbitMQ's (Erlang's) words:
/// `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256` is `ecdhe_rsa`, `aes_128_gcm`, `sha256`; a TLS 1.3
/// suite (`TLS13_AES_256_GCM_SHA384`) negotiates its key exchange apart: `any`.
fn suite_parts(suite: &str) -> (String, String, String) {
    let lower = suite.to_lowercase();
    let rest = lower
        .strip_prefix("tls13_")
        .or_else(|| lower.strip_prefix("tls_"))
        .unwrap_or(&lower);
    let (key_exchange, rest) = match rest.split_once("_with_") {
        Some((kx, rest)) => (kx.to_string(), rest),
        None => ("any".to_string(), rest),
    };
    match rest.rsplit_once('_') {
        Some((cipher, hash)) => (key_exchange, cipher.to_string(), hash.to_string()),
        None => (key_exchange, rest.to_string(), String::new()),
    }
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
        "idle_since": iso_time(u64_of(&conn["idle_since"])),
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
    let mut counts = Map::new();
    let mut add = |key: &str, n: u64| {
        let sum = counts.entry(key.to_string()).or_insert(json!(0));
        *sum = json!(u64_of(sum) + n);
    };
    for q in items(snapshot, "queues").filter(|q| q["vhost"] == name) {
        ready += u64_of(&q["messages_ready"]);
        unacked += u64_of(&q["messages_unacknowledged"]);
        for key in DELIVER_GROUP {
            add(key, u64_of(&q["stats"][*key]));
        }
    }
    for ex in items(snapshot, "exchanges").filter(|e| e["vhost"] == name) {
        add("publish", u64_of(&ex["stats"]["publish_in"]));
    }
    let (mut recv, mut send) = (0, 0);
    for c in items(snapshot, "connections").filter(|c| c["vhost"] == name) {
        recv += u64_of(&c["recv_oct"]);
        send += u64_of(&c["send_oct"]);
    }
    let groups: [&[&str]; 2] = [PUBLISH_GROUP, DELIVER_GROUP];
    let stats = lazy_stats(&Value::Object(counts), &groups, &[], |_| 0.0);
    let meta = &v["metadata"];
    let mut out = json!({
        "name": name, "description": meta["description"], "tags": meta["tags"],
        "metadata": meta, "tracing": crate::trace::is_traced(name.as_bytes()), "default_queue_type": "undefined",
        "cluster_state": {node_name(): "running"},
        "messages": ready + unacked, "messages_details": details(0.0),
        "messages_ready": ready, "messages_ready_details": details(0.0),
        "messages_unacknowledged": unacked, "messages_unacknowledged_details": details(0.0),
    });
    // Shown once clients have talked in the vhost, as RabbitMQ's.
    if recv + send > 0 {
        out["recv_oct"] = json!(recv);
        out["recv_oct_details"] = details(0.0);
        out["send_oct"] = json!(send);
        out["send_oct_details"] = details(0.0);
    }
    if stats.as_object().is_some_and(|s| !s.is_empty()) {
        out["message_stats"] = stats;
    }
    out
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
    fn tls_names_as_rabbitmq_writes_them() {
        assert_eq!(tls_version("TLSv1_3"), "tlsv1.3");
        let parts = |s: &str| suite_parts(s);
        assert_eq!(
            parts("TLS13_AES_256_GCM_SHA384"),
            ("any".into(), "aes_256_gcm".into(), "sha384".into())
        );
        assert_eq!(
            parts("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
            ("ecdhe_rsa".into(), "aes_128_gcm".into(), "sha256".into())
        );
    }

    #[test]
    fn times_are_written_as_rabbitmq_writes_them() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000+00:00");
        assert_eq!(iso_time(1_796_688_305_703), "2026-12-08T00:05:05.703+00:00");
        assert_eq!(iso_time(951_782_400_001), "2000-02-29T00:00:00.001+00:00");
    }

    #[test]
    fn message_stats_groups_show_once_something_happened() {
        let groups: [&[&str]; 2] = [PUBLISH_GROUP, DELIVER_GROUP];
        let stats = lazy_stats(&json!({"publish": 2}), &groups, DISK_GROUP, |_| 0.0);
        assert_eq!(stats["publish"], 2);
        assert_eq!(stats["confirm"], 0);
        assert!(stats.get("deliver").is_none());
        assert_eq!(stats["disk_reads"], 0);
    }

    #[test]
    fn message_stats_carry_details() {
        let stats = message_stats(&json!({"publish": 3}), &["publish", "ack"], |_| 1.5);
        assert_eq!(stats["publish"], 3);
        assert_eq!(stats["ack"], 0);
        assert_eq!(stats["publish_details"]["rate"], 1.5);
    }
}
