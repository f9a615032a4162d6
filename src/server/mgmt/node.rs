//! `/api/overview` and `/api/nodes`: the node's totals, rates, listeners and resources in
//! RabbitMQ's field names (Erlang VM internals have no counterpart and are left out).

use serde_json::{json, Value};

use super::auth::Who;
use super::shape::{
    self, details, items, node_name, CHURN, DELIVER_GROUP, DISK_GROUP, PUBLISH_GROUP,
};
use super::state::Api;
use crate::alarm::{self, DISK, MEMORY};

/// The version of RabbitMQ whose management API this answers as.
pub const MANAGEMENT_VERSION: &str = "3.10.8";

pub fn overview(api: &Api, snap: &Value, who: &Who) -> Value {
    let count = |section: &str| items(snap, section).filter(|i| who.sees(snap, i)).count();
    let mine = |c: &&Value| who.is_monitoring() || c["user"] == who.name.as_str();
    let connections = items(snap, "connections").filter(mine).count();
    let channels = shape::channels(snap)
        .iter()
        .filter(|(c, _)| mine(c))
        .count();
    let consumers = shape::consumers(snap).len();
    let (mut ready, mut unacked) = (0u64, 0u64);
    for q in items(snap, "queues").filter(|q| who.sees(snap, q)) {
        ready += q["messages_ready"].as_u64().unwrap_or(0);
        unacked += q["messages_unacknowledged"].as_u64().unwrap_or(0);
    }
    // A user who does not see the whole node sees no node-wide message counts.
    let groups: [&[&str]; 2] = [PUBLISH_GROUP, DELIVER_GROUP];
    let groups: &[&[&str]] = if who.is_monitoring() { &groups } else { &[] };
    let (stats, churn) = api.with_rates(|r| {
        let stats = shape::lazy_stats(&snap["totals"], groups, DISK_GROUP, |c| r.global(c));
        let churn = shape::message_stats(&snap["totals"], CHURN, |c| r.global(c));
        (stats, churn)
    });
    let mut out = json!({
        "management_version": MANAGEMENT_VERSION, "rates_mode": "basic",
        "product_name": "Warren", "product_version": env!("CARGO_PKG_VERSION"),
        "rabbitmq_version": MANAGEMENT_VERSION, "cluster_name": node_name(),
        "release_series_support_status": "supported",
        "disable_stats": false, "enable_queue_totals": false,
        "sample_retention_policies": {"global": [600, 3600, 28800, 86400],
            "basic": [600, 3600], "detailed": [600]},
        "exchange_types": exchange_types(),
        "message_stats": stats, "churn_rates": churn,
        "queue_totals": {"messages": ready + unacked, "messages_details": details(0.0),
            "messages_ready": ready, "messages_ready_details": details(0.0),
            "messages_unacknowledged": unacked,
            "messages_unacknowledged_details": details(0.0)},
        "object_totals": {"channels": channels, "connections": connections,
            "exchanges": count("exchanges"), "queues": count("queues")},
    });
    if who.is_monitoring() {
        out["object_totals"]["consumers"] = json!(consumers);
        out["node"] = json!(node_name());
        out["statistics_db_event_queue"] = json!(0);
        out["listeners"] = listeners(api);
        out["contexts"] = json!([{"node": node_name(), "description": "Warren Management",
            "path": "/", "port": api.config.management_port.to_string()}]);
    }
    out
}

fn exchange_types() -> Value {
    let kinds = ["direct", "fanout", "headers", "topic"];
    Value::Array(
        kinds
            .iter()
            .map(|k| {
                json!({"name": k, "enabled": true,
                    "description": format!("AMQP {k} exchange, as per the AMQP specification")})
            })
            .collect(),
    )
}

fn listeners(api: &Api) -> Value {
    let c = &api.config;
    let mut out: Vec<Value> = c
        .listen
        .iter()
        .map(|a| listener("amqp", &a.ip().to_string(), a.port()))
        .collect();
    if c.tls_cert.is_some() {
        for a in &c.listen {
            out.push(listener("amqp/ssl", &a.ip().to_string(), c.tls_port));
        }
    }
    if c.management_port != 0 {
        out.push(listener(
            "http",
            &c.management_ip.to_string(),
            c.management_port,
        ));
    }
    if c.prometheus_port != 0 {
        let ip = c.prometheus_ip.to_string();
        out.push(listener("http/prometheus", &ip, c.prometheus_port));
    }
    Value::Array(out)
}

fn listener(protocol: &str, ip: &str, port: u16) -> Value {
    json!({"node": node_name(), "protocol": protocol, "ip_address": ip, "port": port,
        "socket_opts": []})
}

pub fn node(api: &Api, snap: &Value) -> Value {
    let c = &api.config;
    let state = api_alarms(api);
    let disk_free = alarm::free_disk_bytes(&c.data_dir).unwrap_or(0);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
    let mut out = json!({
        "name": node_name(), "type": "disc", "running": true,
        "os_pid": std::process::id().to_string(),
        "uptime": api.started.elapsed().as_millis() as u64,
        "processors": std::thread::available_parallelism().map_or(1, usize::from),
        "mem_used": alarm::resident_bytes(), "mem_used_details": details(0.0),
        "mem_limit": c.memory_high_watermark.bytes(), "mem_alarm": state & MEMORY != 0,
        "mem_calculation_strategy": "rss",
        "disk_free": disk_free, "disk_free_details": details(0.0),
        "disk_free_limit": c.disk_free_limit, "disk_free_alarm": state & DISK != 0,
        "fd_used": fds, "fd_used_details": details(0.0), "fd_total": fd_limit(),
        "sockets_used": items(snap, "connections").count(),
        "sockets_used_details": details(0.0), "sockets_total": fd_limit(),
        "rates_mode": "basic", "db_dir": c.data_dir.display().to_string(),
        "exchange_types": exchange_types(), "auth_mechanisms": auth_mechanisms(),
        "enabled_plugins": ["rabbitmq_management", "rabbitmq_prometheus"],
        "partitions": [], "cluster_links": [], "applications": [], "contexts": [],
        "config_files": c.config.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "log_files": ["<stdout>"],
    });
    let churn = api.with_rates(|r| shape::message_stats(&snap["totals"], CHURN, |k| r.global(k)));
    if let (Some(node), Value::Object(churn)) = (out.as_object_mut(), churn) {
        node.extend(churn);
    }
    out
}

fn auth_mechanisms() -> Value {
    json!([{"name": "PLAIN", "description": "SASL PLAIN authentication mechanism", "enabled": true},
        {"name": "AMQPLAIN", "description": "QPid AMQPLAIN mechanism", "enabled": true},
        {"name": "EXTERNAL", "description": "TLS client certificate", "enabled": true}])
}

pub fn fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if ok {
        limit.rlim_cur
    } else {
        0
    }
}

/// The alarm bits in force (memory, disk).
pub fn api_alarms(api: &Api) -> u8 {
    api.alarms.as_ref().map_or(0, |a| a.state())
}

/// Why the alarms health check fails, if it does.
pub fn alarm_reason(api: &Api) -> Option<String> {
    let state = api_alarms(api);
    (state != 0).then(|| {
        format!(
            "resource alarm(s) in effect: {}",
            alarm::Alarms::reason(state)
        )
    })
}
