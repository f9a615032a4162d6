//! `warren ctl export_definitions`: the broker's definitions in RabbitMQ 3.10's export
//! format, so that either broker can load the other's file. Like RabbitMQ, only what
//! survives a restart is exported: durable queues (not exclusive), durable exchanges (not
//! internal, not predeclared) and bindings between durable ends.

use serde_json::{json, Value};

use super::listing::bindings;
use crate::broker::limits::to_value;
use crate::broker::policy::definition_to_json;
use crate::broker::topology::Topology;
use crate::broker::users::password_hash_b64;
use crate::shard::Shard;
use crate::store::record::{LimitScope, PolicyDef};

/// The RabbitMQ release whose export format this is.
const RABBIT_VERSION: &str = "3.10.8";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub async fn export(shard: &Shard) -> String {
    let queues = shard.all_queues().await;
    let topology = shard.topology.borrow();
    let durable_queues: Vec<Value> = queues
        .iter()
        .filter(|q| q.durable && !q.exclusive)
        .map(|q| {
            json!({"name": text(&q.name), "vhost": text(&q.vhost), "durable": true,
                "auto_delete": q.auto_delete, "arguments": definition_to_json(&q.arguments),
                "type": "classic"})
        })
        .collect();
    let mut durable_bindings: Vec<Value> = Vec::new();
    for vhost in topology.vhosts() {
        let vhost = &vhost.def.name;
        let in_vhost: Vec<_> = queues
            .iter()
            .filter(|q| q.vhost == vhost)
            .cloned()
            .collect();
        let all = bindings(&topology, &in_vhost, vhost, false);
        durable_bindings.extend(all.into_iter().filter(|b| b.durable).map(|b| {
            json!({"source": b.source, "vhost": text(vhost), "destination": b.destination,
                "destination_type": b.destination_kind, "routing_key": b.routing_key,
                "arguments": definition_to_json(&b.arguments)})
        }));
    }
    let mut defs = json!({
        "rabbit_version": RABBIT_VERSION,
        "rabbitmq_version": RABBIT_VERSION,
        "product_name": "Warren",
        "product_version": env!("CARGO_PKG_VERSION"),
        "users": users(&topology),
        "vhosts": vhosts(&topology),
        "permissions": permissions(&topology),
        "topic_permissions": topic_permissions(&topology),
        "parameters": vhost_limits(&topology),
        "global_parameters": [],
        "policies": policies(&topology, false),
        "queues": durable_queues,
        "exchanges": exchanges(&topology),
        "bindings": durable_bindings,
    });
    let operator = policies(&topology, true);
    if operator.as_array().is_some_and(|a| !a.is_empty()) {
        defs["operator_policies"] = operator;
    }
    defs.to_string()
}

pub(super) fn vhosts(topology: &Topology) -> Value {
    let vhosts: Vec<Value> = topology
        .vhosts()
        .map(|v| {
            let tags: Vec<String> = text(&v.def.tags)
                .split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect();
            json!({"name": text(&v.def.name), "limits": [],
                "metadata": {"description": text(&v.def.description), "tags": tags}})
        })
        .collect();
    Value::Array(vhosts)
}

pub(super) fn users(topology: &Topology) -> Value {
    let users: Vec<Value> = topology
        .users()
        .iter()
        .map(|u| {
            let tags: Vec<String> = text(&u.tags)
                .split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect();
            json!({"name": text(&u.name), "password_hash": password_hash_b64(u),
                "hashing_algorithm": text(&u.hashing), "tags": tags,
                "limits": user_limits(topology, &u.name)})
        })
        .collect();
    Value::Array(users)
}

fn user_limits(topology: &Topology, user: &[u8]) -> Value {
    topology
        .limits()
        .get_all(LimitScope::User, user)
        .map_or_else(|| json!({}), |d| to_value(&d.limits))
}

/// Vhost limits, as RabbitMQ exports them: runtime parameters of component `vhost-limits`.
pub(super) fn vhost_limits(topology: &Topology) -> Value {
    let limits: Vec<Value> = topology
        .limits()
        .iter()
        .filter(|d| d.scope == LimitScope::Vhost)
        .map(|d| {
            json!({"vhost": text(&d.name), "component": "vhost-limits", "name": "limits",
                "value": to_value(&d.limits)})
        })
        .collect();
    Value::Array(limits)
}

pub(super) fn topic_permissions(topology: &Topology) -> Value {
    let all: Vec<Value> = topology
        .topic_permissions()
        .iter()
        .map(|p| {
            json!({"user": text(&p.user), "vhost": text(&p.vhost),
                "exchange": text(&p.exchange), "write": text(&p.write), "read": text(&p.read)})
        })
        .collect();
    Value::Array(all)
}

pub(super) fn permissions(topology: &Topology) -> Value {
    let permissions: Vec<Value> = topology
        .permissions()
        .iter()
        .map(|p| {
            json!({"user": text(&p.user), "vhost": text(&p.vhost),
                "configure": text(&p.configure), "write": text(&p.write), "read": text(&p.read)})
        })
        .collect();
    Value::Array(permissions)
}

pub(super) fn policies(topology: &Topology, operator: bool) -> Value {
    let policy = |p: &PolicyDef| {
        json!({"vhost": text(&p.vhost), "name": text(&p.name), "pattern": text(&p.pattern),
            "apply-to": text(&p.apply_to), "definition": definition_to_json(&p.definition),
            "priority": p.priority})
    };
    let policies: Vec<Value> = topology
        .policies()
        .iter()
        .filter(|p| p.operator == operator)
        .map(policy)
        .collect();
    Value::Array(policies)
}

fn exchanges(topology: &Topology) -> Value {
    let mut exchanges: Vec<_> = topology
        .exchanges()
        .filter(|ex| ex.durable && !ex.internal && !ex.name.starts_with(b"amq."))
        .collect();
    exchanges.sort_by(|a, b| a.name.cmp(&b.name));
    let exchanges: Vec<Value> = exchanges
        .into_iter()
        .map(|ex| {
            json!({"name": text(&ex.name), "vhost": text(&ex.vhost), "type": ex.kind.as_str(),
                "durable": true, "auto_delete": ex.auto_delete,
                "arguments": definition_to_json(&ex.arguments)})
        })
        .collect();
    Value::Array(exchanges)
}
