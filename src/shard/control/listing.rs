//! `warren ctl list_queues`, `list_exchanges`, `list_bindings` and `list_connections` in
//! `rabbitmqctl -q`'s shape: a header of column names, then one tab-separated row per item;
//! nothing at all when there is no item, as rabbitmqctl 3.10 prints.

use std::collections::HashMap;

use serde_json::Value;

use crate::broker::inspect::{ConnectionInfo, QueueInfo};
use crate::broker::policy::definition_to_json;
use crate::broker::topology::{Dest, Topology};
use crate::ids::QueueRef;
use crate::protocol::FieldTable;

pub const QUEUE_COLUMNS: &[&str] = &[
    "name",
    "messages",
    "messages_ready",
    "messages_unacknowledged",
    "consumers",
    "durable",
    "auto_delete",
    "exclusive",
    "arguments",
    "type",
];
pub const EXCHANGE_COLUMNS: &[&str] = &[
    "name",
    "type",
    "durable",
    "auto_delete",
    "internal",
    "arguments",
];
pub const BINDING_COLUMNS: &[&str] = &[
    "source_name",
    "source_kind",
    "destination_name",
    "destination_kind",
    "routing_key",
    "arguments",
];
pub const CONNECTION_COLUMNS: &[&str] = &[
    "name",
    "user",
    "vhost",
    "peer_host",
    "peer_port",
    "state",
    "channels",
];

/// The columns asked for, or `default`; RabbitMQ's refusal for one it does not know.
pub fn columns<'a>(
    asked: &'a [String],
    known: &[&str],
    default: &'a [&'a str],
) -> Result<Vec<&'a str>, String> {
    if asked.is_empty() {
        return Ok(default.to_vec());
    }
    let unknown: Vec<&str> = asked
        .iter()
        .map(String::as_str)
        .filter(|c| !known.contains(c))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "Info key(s) {} are not supported",
            unknown.join(",")
        ));
    }
    Ok(asked.iter().map(String::as_str).collect())
}

/// A header and the rows; empty when there are no rows.
fn table(columns: &[&str], rows: Vec<Vec<String>>) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut out = columns.join("\t");
    for row in rows {
        out.push('\n');
        out.push_str(&row.join("\t"));
    }
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Arguments as rabbitmqctl prints them: `[{"x-max-length",10},{"x-queue-type","classic"}]`,
/// sorted by key.
pub fn arguments(table: &FieldTable) -> String {
    let Value::Object(map) = definition_to_json(table) else {
        return "[]".to_string();
    };
    let mut pairs: Vec<(String, Value)> = map.into_iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let items: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{{{},{v}}}", Value::String(k.clone())))
        .collect();
    format!("[{}]", items.join(","))
}

pub fn list_queues(queues: &[QueueInfo], columns: &[&str]) -> String {
    let rows = queues
        .iter()
        .map(|q| columns.iter().map(|c| queue_column(q, c)).collect())
        .collect();
    table(columns, rows)
}

fn queue_column(q: &QueueInfo, column: &str) -> String {
    match column {
        "name" => text(&q.name),
        "messages" => (q.messages_ready + q.messages_unacknowledged).to_string(),
        "messages_ready" => q.messages_ready.to_string(),
        "messages_unacknowledged" => q.messages_unacknowledged.to_string(),
        "consumers" => q.consumers.to_string(),
        "durable" => q.durable.to_string(),
        "auto_delete" => q.auto_delete.to_string(),
        "exclusive" => q.exclusive.to_string(),
        "arguments" => arguments(&q.arguments),
        "type" => "classic".to_string(),
        _ => String::new(),
    }
}

/// Exchanges, with the default exchange (named "") as RabbitMQ lists it.
pub fn list_exchanges(topology: &Topology, vhost: &[u8], columns: &[&str]) -> String {
    let mut rows = vec![columns
        .iter()
        .map(|c| match *c {
            "type" => "direct".to_string(),
            "durable" => "true".to_string(),
            "auto_delete" | "internal" => "false".to_string(),
            "arguments" => "[]".to_string(),
            _ => String::new(),
        })
        .collect()];
    let mut exchanges: Vec<_> = topology
        .exchanges()
        .filter(|ex| ex.vhost == vhost)
        .collect();
    exchanges.sort_by(|a, b| a.name.cmp(&b.name));
    for ex in exchanges {
        let row = columns.iter().map(|c| match *c {
            "name" => text(&ex.name),
            "type" => ex.kind.as_str().to_string(),
            "durable" => ex.durable.to_string(),
            "auto_delete" => ex.auto_delete.to_string(),
            "internal" => ex.internal.to_string(),
            "arguments" => arguments(&ex.arguments),
            _ => String::new(),
        });
        rows.push(row.collect());
    }
    table(columns, rows)
}

/// A binding with both ends named.
pub struct Binding {
    pub source: String,
    pub destination: String,
    /// `queue` or `exchange`.
    pub destination_kind: &'static str,
    pub routing_key: String,
    pub arguments: FieldTable,
    /// Both ends durable: stored, and exported.
    pub durable: bool,
}

/// Every binding of the vhost, the default exchange's to every queue first (as RabbitMQ
/// lists them), sorted by source, destination and key. `queues` are the vhost's.
pub fn bindings(
    topology: &Topology,
    queues: &[QueueInfo],
    vhost: &[u8],
    implicit: bool,
) -> Vec<Binding> {
    let by_ref: HashMap<QueueRef, &QueueInfo> = queues.iter().map(|q| (q.id, q)).collect();
    let exchanges: HashMap<u32, (&[u8], bool)> = topology
        .exchanges()
        .map(|ex| (ex.id, (&ex.name[..], ex.durable)))
        .collect();
    let mut out = Vec::new();
    if implicit {
        for q in queues {
            out.push(Binding {
                source: String::new(),
                destination: text(&q.name),
                destination_kind: "queue",
                routing_key: text(&q.name),
                arguments: FieldTable::default(),
                durable: q.durable,
            });
        }
    }
    let mut explicit = Vec::new();
    for ex in topology.exchanges().filter(|ex| ex.vhost == vhost) {
        for (dest, key, args) in ex.bindings.iter() {
            let (name, kind, durable) = match dest {
                Dest::Queue(q) => match by_ref.get(&q) {
                    Some(q) => (&q.name[..], "queue", q.durable),
                    None => continue, // a queue deleted meanwhile
                },
                Dest::Exchange(id) => match exchanges.get(&id) {
                    Some((name, durable)) => (*name, "exchange", *durable),
                    None => continue,
                },
            };
            explicit.push(Binding {
                source: text(&ex.name),
                destination: text(name),
                destination_kind: kind,
                routing_key: text(key),
                arguments: args.clone(),
                durable: durable && ex.durable,
            });
        }
    }
    explicit.sort_by(|a, b| {
        (&a.source, &a.destination, &a.routing_key).cmp(&(
            &b.source,
            &b.destination,
            &b.routing_key,
        ))
    });
    out.extend(explicit);
    out
}

pub fn list_bindings(bindings: &[Binding], columns: &[&str]) -> String {
    let rows = bindings
        .iter()
        .map(|b| {
            columns
                .iter()
                .map(|c| match *c {
                    "source_name" => b.source.clone(),
                    "source_kind" => "exchange".to_string(),
                    "destination_name" => b.destination.clone(),
                    "destination_kind" => b.destination_kind.to_string(),
                    "routing_key" => b.routing_key.clone(),
                    "arguments" => arguments(&b.arguments),
                    _ => String::new(),
                })
                .collect()
        })
        .collect();
    table(columns, rows)
}

pub fn list_connections(conns: &[ConnectionInfo], columns: &[&str]) -> String {
    let rows = conns
        .iter()
        .map(|c| {
            columns
                .iter()
                .map(|col| match *col {
                    "name" => c.name.clone(),
                    "user" => c.user.clone(),
                    "vhost" => c.vhost.clone(),
                    "peer_host" => c.peer.ip().to_string(),
                    "peer_port" => c.peer.port().to_string(),
                    "state" => c.state.to_string(),
                    "channels" => c.channels.to_string(),
                    _ => String::new(),
                })
                .collect()
        })
        .collect();
    table(columns, rows)
}
