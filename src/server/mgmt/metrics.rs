//! Prometheus text format on `/metrics` (aggregated, as RabbitMQ's plugin answers by
//! default) and `/metrics/per-object` (one series per queue), with RabbitMQ's metric names
//! and labels so its Grafana dashboards read Warren; plus Warren's own per-shard series.

use std::fmt::Write;

use serde_json::Value;

use super::shape::{self, items, node_name};
use super::state::Api;
use crate::alarm::{self, DISK, MEMORY};

/// One metric family: `# HELP`, `# TYPE`, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn start(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# TYPE {name} {kind}\n# HELP {name} {help}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.out, "{name}");
        if !labels.is_empty() {
            let pairs: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(self.out, "{{{}}}", pairs.join(","));
        }
        let _ = writeln!(self.out, " {value}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.start(name, kind, help);
        self.sample(name, &[], value);
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// The exposition; `per_object` adds a series per queue.
pub fn render(api: &Api, snap: &Value, per_object: bool) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    let node = node_name();
    f.start(
        "rabbitmq_identity_info",
        "untyped",
        "RabbitMQ node & cluster identity info",
    );
    let identity = [
        ("rabbitmq_node", node.as_str()),
        ("rabbitmq_cluster", node.as_str()),
        ("rabbitmq_cluster_permanent_id", node.as_str()),
    ];
    f.sample("rabbitmq_identity_info", &identity, 1.0);
    f.start(
        "rabbitmq_build_info",
        "untyped",
        "RabbitMQ & Erlang/OTP version info",
    );
    let build = [
        ("rabbitmq_version", super::node::MANAGEMENT_VERSION),
        ("product_name", "Warren"),
        ("product_version", env!("CARGO_PKG_VERSION")),
    ];
    f.sample("rabbitmq_build_info", &build, 1.0);
    let tcp_sockets = items(snap, "connections").count() as f64;
    f.one(
        "rabbitmq_process_open_tcp_sockets",
        "gauge",
        "Open TCP sockets",
        tcp_sockets,
    );
    let connections = items(snap, "connections").count() as f64;
    f.one(
        "rabbitmq_connections",
        "gauge",
        "Connections currently open",
        connections,
    );
    let channels = shape::channels(snap).len() as f64;
    f.one(
        "rabbitmq_channels",
        "gauge",
        "Channels currently open",
        channels,
    );
    let consumers = shape::consumers(snap).len() as f64;
    f.one(
        "rabbitmq_consumers",
        "gauge",
        "Consumers currently connected",
        consumers,
    );
    f.one(
        "rabbitmq_queues",
        "gauge",
        "Queues available",
        items(snap, "queues").count() as f64,
    );
    queue_totals(&mut f, snap, per_object);
    global_counters(&mut f, &snap["totals"]);
    channel_totals(&mut f, snap);
    resources(&mut f, api, per_object);
    shards(&mut f, snap);
    super::shard_metrics::render(&mut out, snap);
    out
}

fn queue_totals(f: &mut Family, snap: &Value, per_object: bool) {
    let series = [
        (
            "rabbitmq_queue_messages_ready",
            "messages_ready",
            "Messages ready to be delivered to consumers",
        ),
        (
            "rabbitmq_queue_messages_unacked",
            "messages_unacknowledged",
            "Messages delivered to consumers but not yet acknowledged",
        ),
        (
            "rabbitmq_queue_messages",
            "",
            "Sum of ready and unacknowledged messages - total queue depth",
        ),
        (
            "rabbitmq_queue_consumers",
            "consumers",
            "Consumers on a queue",
        ),
        (
            "rabbitmq_queue_messages_bytes",
            "message_bytes",
            "Size in bytes of ready and unacknowledged messages",
        ),
    ];
    for (name, field, help) in series {
        f.start(name, "gauge", help);
        let value = |q: &Value| match field {
            "" => num(&q["messages_ready"]) + num(&q["messages_unacknowledged"]),
            field => num(&q[field]),
        };
        if per_object {
            for q in items(snap, "queues") {
                let labels = [
                    ("vhost", q["vhost"].as_str().unwrap_or_default()),
                    ("queue", q["name"].as_str().unwrap_or_default()),
                ];
                f.sample(name, &labels, value(q));
            }
        } else {
            f.sample(name, &[], items(snap, "queues").map(value).sum());
        }
    }
}

fn global_counters(f: &mut Family, totals: &Value) {
    let counters = [
        ("rabbitmq_global_messages_received_total", vec!["publish"], "Total number of messages received from publishers"),
        ("rabbitmq_global_messages_received_confirm_total", vec!["publish"], "Total number of messages received from publishers expecting confirmations"),
        ("rabbitmq_global_messages_routed_total", vec!["publish"], "Total number of messages routed to queues or streams"),
        ("rabbitmq_global_messages_unroutable_dropped_total", vec!["drop_unroutable"], "Total number of messages published as non-mandatory into an exchange and dropped as unroutable"),
        ("rabbitmq_global_messages_unroutable_returned_total", vec!["return_unroutable"], "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable"),
        ("rabbitmq_global_messages_confirmed_total", vec!["confirm"], "Total number of messages confirmed to publishers"),
        ("rabbitmq_global_messages_delivered_total", vec!["deliver", "deliver_no_ack", "get", "get_no_ack"], "Total number of messages delivered to consumers"),
        ("rabbitmq_global_messages_delivered_consume_auto_ack_total", vec!["deliver_no_ack"], "Total number of messages delivered to consumers using basic.consume with automatic acknowledgment"),
        ("rabbitmq_global_messages_delivered_consume_manual_ack_total", vec!["deliver"], "Total number of messages delivered to consumers using basic.consume with manual acknowledgment"),
        ("rabbitmq_global_messages_delivered_get_auto_ack_total", vec!["get_no_ack"], "Total number of messages delivered to consumers using basic.get with automatic acknowledgment"),
        ("rabbitmq_global_messages_delivered_get_manual_ack_total", vec!["get"], "Total number of messages delivered to consumers using basic.get with manual acknowledgment"),
        ("rabbitmq_global_messages_get_empty_total", vec!["get_empty"], "Total number of times basic.get operations fetched no message"),
        ("rabbitmq_global_messages_redelivered_total", vec!["redeliver"], "Total number of messages redelivered to consumers"),
        ("rabbitmq_global_messages_acknowledged_total", vec!["ack"], "Total number of messages acknowledged by consumers"),
    ];
    for (name, fields, help) in counters {
        let value: f64 = fields.iter().map(|k| num(&totals[*k])).sum();
        // What consumers did is counted per queue type, as RabbitMQ labels it.
        let per_queue_type = !name.contains("received")
            && !name.contains("routed")
            && !name.contains("unroutable")
            && !name.contains("confirmed");
        let labels: &[(&str, &str)] = if per_queue_type {
            &[
                ("protocol", "amqp091"),
                ("queue_type", "rabbit_classic_queue"),
            ]
        } else {
            &[("protocol", "amqp091")]
        };
        f.start(name, "counter", help);
        f.sample(name, labels, value);
    }
    let churn = [
        (
            "rabbitmq_connections_opened_total",
            "connection_created",
            "Total number of connections opened",
        ),
        (
            "rabbitmq_connections_closed_total",
            "connection_closed",
            "Total number of connections closed or terminated",
        ),
        (
            "rabbitmq_channels_opened_total",
            "channel_created",
            "Total number of channels opened",
        ),
        (
            "rabbitmq_channels_closed_total",
            "channel_closed",
            "Total number of channels closed",
        ),
        (
            "rabbitmq_queues_declared_total",
            "queue_declared",
            "Total number of queues declared",
        ),
        (
            "rabbitmq_queues_created_total",
            "queue_created",
            "Total number of queues created",
        ),
        (
            "rabbitmq_queues_deleted_total",
            "queue_deleted",
            "Total number of queues deleted",
        ),
    ];
    for (name, field, help) in churn {
        f.one(name, "counter", help, num(&totals[field]));
    }
}

/// Memory, disk, descriptors; the alarms only in the aggregated answer, as RabbitMQ's.
fn resources(f: &mut Family, api: &Api, per_object: bool) {
    let c = &api.config;
    let state = super::node::api_alarms(api);
    let rss = alarm::resident_bytes() as f64;
    f.one(
        "rabbitmq_process_resident_memory_bytes",
        "gauge",
        "Memory used in bytes",
        rss,
    );
    let disk = alarm::free_disk_bytes(&c.data_dir).unwrap_or(0) as f64;
    f.one(
        "rabbitmq_disk_space_available_bytes",
        "gauge",
        "Disk space available in bytes",
        disk,
    );
    let limit = c.memory_high_watermark.bytes() as f64;
    f.one(
        "rabbitmq_resident_memory_limit_bytes",
        "gauge",
        "Memory high watermark in bytes",
        limit,
    );
    let disk_limit = c.disk_free_limit as f64;
    f.one(
        "rabbitmq_disk_space_available_limit_bytes",
        "gauge",
        "Free disk space low watermark in bytes",
        disk_limit,
    );
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count) as f64;
    let max_fds = super::node::fd_limit() as f64;
    f.one(
        "rabbitmq_process_max_fds",
        "gauge",
        "Limit of open file descriptors",
        max_fds,
    );
    f.one(
        "rabbitmq_process_max_tcp_sockets",
        "gauge",
        "Limit of open TCP sockets",
        max_fds,
    );
    f.one(
        "rabbitmq_process_open_fds",
        "gauge",
        "Open file descriptors",
        fds,
    );
    if !per_object {
        let flag = |bit: u8| if state & bit != 0 { 1.0 } else { 0.0 };
        f.one(
            "rabbitmq_alarms_memory_used_watermark",
            "untyped",
            "is 1 if VM memory watermark alarm is in effect",
            flag(MEMORY),
        );
        f.one(
            "rabbitmq_alarms_free_disk_space_watermark",
            "untyped",
            "is 1 if free disk space watermark alarm is in effect",
            flag(DISK),
        );
        f.one(
            "rabbitmq_alarms_file_descriptor_limit",
            "untyped",
            "is 1 if file descriptor limit alarm is in effect",
            0.0,
        );
    }
    let uptime = api.started.elapsed().as_secs_f64();
    f.one(
        "rabbitmq_erlang_uptime_seconds",
        "gauge",
        "Node uptime",
        uptime,
    );
}

/// RabbitMQ's aggregated per-channel and per-connection families, which its Grafana
/// dashboards read: the node's counters, and sums over open channels and connections.
fn channel_totals(f: &mut Family, snap: &Value) {
    let totals = &snap["totals"];
    let counters = [
        ("rabbitmq_channel_messages_published_total", "publish", "Total number of messages published into an exchange on a channel"),
        ("rabbitmq_channel_messages_confirmed_total", "confirm", "Total number of messages published into an exchange and confirmed on the channel"),
        ("rabbitmq_channel_messages_unroutable_dropped_total", "drop_unroutable", "Total number of messages published as non-mandatory into an exchange and dropped as unroutable"),
        ("rabbitmq_channel_messages_unroutable_returned_total", "return_unroutable", "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable"),
        ("rabbitmq_channel_messages_delivered_total", "deliver_no_ack", "Total number of messages delivered to consumers in automatic acknowledgement mode"),
        ("rabbitmq_channel_messages_delivered_ack_total", "deliver", "Total number of messages delivered to consumers in manual acknowledgement mode"),
        ("rabbitmq_channel_messages_redelivered_total", "redeliver", "Total number of messages redelivered to consumers"),
        ("rabbitmq_channel_messages_acked_total", "ack", "Total number of messages acknowledged by consumers"),
        ("rabbitmq_channel_get_total", "get_no_ack", "Total number of messages fetched with basic.get in automatic acknowledgement mode"),
        ("rabbitmq_channel_get_ack_total", "get", "Total number of messages fetched with basic.get in manual acknowledgement mode"),
        ("rabbitmq_channel_get_empty_total", "get_empty", "Total number of times basic.get operations fetched no message"),
    ];
    for (name, field, help) in counters {
        f.one(name, "counter", help, num(&totals[field]));
    }
    let channels = shape::channels(snap);
    let sum = |key: &str| channels.iter().map(|(_, ch)| num(&ch[key])).sum::<f64>();
    let consumers = shape::consumers(snap).len() as f64;
    f.one(
        "rabbitmq_channel_consumers",
        "gauge",
        "Consumers on a channel",
        consumers,
    );
    let unacked = sum("messages_unacknowledged");
    f.one(
        "rabbitmq_channel_messages_unacked",
        "gauge",
        "Delivered but not yet acknowledged messages",
        unacked,
    );
    let prefetch = sum("global_prefetch_count");
    f.one(
        "rabbitmq_channel_prefetch",
        "gauge",
        "Total limit of unacknowledged messages for all consumers on a channel",
        prefetch,
    );
    let conns = items(snap, "connections");
    let (recv, send): (f64, f64) = conns.fold((0.0, 0.0), |(r, s), c| {
        (r + num(&c["recv_oct"]), s + num(&c["send_oct"]))
    });
    f.one(
        "rabbitmq_connection_incoming_bytes_total",
        "counter",
        "Total number of bytes received on a connection",
        recv,
    );
    f.one(
        "rabbitmq_connection_outgoing_bytes_total",
        "counter",
        "Total number of bytes sent on a connection",
        send,
    );
    let published: f64 = items(snap, "queues")
        .map(|q| num(&q["stats"]["publish"]))
        .sum();
    f.one(
        "rabbitmq_queue_messages_published_total",
        "counter",
        "Total number of messages published to queues",
        published,
    );
    f.start(
        "rabbitmq_global_consumers",
        "gauge",
        "Current number of consumers",
    );
    f.sample(
        "rabbitmq_global_consumers",
        &[("protocol", "amqp091")],
        consumers,
    );
}

/// Warren's own: message counters per shard.
fn shards(f: &mut Family, snap: &Value) {
    let series = [
        (
            "warren_shard_messages_received_total",
            "publish",
            "Messages received from publishers on connections of this shard",
        ),
        (
            "warren_shard_messages_delivered_total",
            "deliver_get",
            "Messages delivered to consumers on connections of this shard",
        ),
        (
            "warren_shard_messages_acknowledged_total",
            "ack",
            "Acknowledgements received on connections of this shard",
        ),
        (
            "warren_shard_messages_confirmed_total",
            "confirm",
            "Publisher confirms sent on connections of this shard",
        ),
    ];
    let shards = snap["shards"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (name, field, help) in series {
        f.start(name, "counter", help);
        for (i, s) in shards.iter().enumerate() {
            let id = i.to_string();
            f.sample(name, &[("shard", &id)], num(&s[field]));
        }
    }
}
