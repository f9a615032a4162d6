//! What `warren ctl` lists about the running broker (queues, connections), as plain values a
//! shard sends shard 0 in answer to [`Inspect`]: each shard reports what it owns, shard 0
//! gathers and formats. Nothing here runs on the message path.

use std::net::SocketAddr;

use bytes::Bytes;

use super::queue::stats::QueueStats;
use super::Broker;
use crate::ids::QueueRef;
use crate::protocol::FieldTable;

/// What shard 0 asks every shard.
#[derive(Debug, Clone)]
pub enum Inspect {
    Queues,
    Connections,
    /// Everything the management API shows of the shard, in one answer ([`ShardReport`]).
    Report,
    /// connection.close 320 CONNECTION_FORCED to the connection of that name, if it is here.
    CloseConnection {
        name: String,
        explanation: String,
    },
}

/// One shard's answer.
#[derive(Debug)]
pub enum Inspected {
    Queues(Vec<QueueInfo>),
    Connections(Vec<ConnectionInfo>),
    /// Boxed: its histograms would make every answer as large.
    Report(Box<ShardReport>),
    /// How many connections were told to close.
    Closed(usize),
}

/// One shard's part of the management API's snapshot.
#[derive(Debug)]
pub struct ShardReport {
    pub queues: Vec<QueueInfo>,
    pub connections: Vec<ConnectionInfo>,
    /// Its message counters.
    pub stats: crate::stats::Totals,
    /// (vhost, name, publish_in, publish_out) of each exchange that routed something here.
    pub exchanges: Vec<(Bytes, Bytes, u64, u64)>,
    /// Its engine metrics (rings, io_uring, fsync, group commit) for Prometheus.
    pub metrics: crate::stats::shard_metrics::ShardMetrics,
}

/// A queue in `rabbitmqctl list_queues`' terms.
#[derive(Debug, Clone)]
pub struct QueueInfo {
    pub id: QueueRef,
    pub vhost: Bytes,
    pub name: Bytes,
    pub durable: bool,
    pub auto_delete: bool,
    pub exclusive: bool,
    pub arguments: FieldTable,
    pub messages_ready: u64,
    pub messages_unacknowledged: u64,
    pub consumers: u64,
    /// Bytes of the bodies of its ready and of its unacknowledged messages.
    pub message_bytes: (u64, u64),
    pub stats: QueueStats,
    /// Milliseconds since it was last used.
    pub idle_ms: u64,
}

/// A client connection in `rabbitmqctl list_connections`' terms.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// RabbitMQ's name: `PEER -> LOCAL`.
    pub name: String,
    pub user: String,
    pub vhost: String,
    pub peer: SocketAddr,
    /// `starting`, `tuning`, `opening`, `running` or `closing`.
    pub state: &'static str,
    pub channels: usize,
    pub client_properties: FieldTable,
    /// Milliseconds since the Unix epoch.
    pub connected_at_ms: u64,
    pub frame_max: u32,
    pub channel_max: u16,
    pub heartbeat_secs: u16,
    /// Its channels, in number order.
    pub channel_details: Vec<ChannelInfo>,
    /// Socket traffic: bytes received, reads, bytes sent, writes.
    pub io_counts: [u64; 4],
    /// Milliseconds since it last read or wrote.
    pub idle_ms: u64,
    /// Messages it published to the default exchange.
    pub default_published: u64,
    /// The SASL mechanism it logged in with (`PLAIN`, `AMQPLAIN`, `EXTERNAL`).
    pub auth_mechanism: String,
    /// Over TLS: the negotiated version and cipher suite, by rustls' names.
    pub tls: Option<(&'static str, &'static str)>,
}

/// A channel in the management API's terms.
#[derive(Debug, Clone)]
pub struct ChannelInfo {
    pub number: u16,
    pub prefetch_count: u16,
    pub global_prefetch_count: u16,
    pub messages_unacknowledged: u64,
    pub confirm: bool,
    pub transactional: bool,
    pub consumers: Vec<ConsumerInfo>,
}

/// A consumer of a channel.
#[derive(Debug, Clone)]
pub struct ConsumerInfo {
    pub tag: Bytes,
    /// None until the queue accepted it.
    pub queue: Option<QueueRef>,
    pub ack_required: bool,
}

impl Broker {
    /// Every queue of this shard.
    pub fn queue_infos(&self) -> Vec<QueueInfo> {
        self.queues
            .iter()
            .map(|(_, q)| QueueInfo {
                id: q.id,
                vhost: q.vhost.clone(),
                name: q.name.clone(),
                durable: q.durable,
                auto_delete: q.auto_delete,
                exclusive: q.exclusive_owner.is_some(),
                arguments: q.arguments.clone(),
                messages_ready: q.ready_count() as u64,
                messages_unacknowledged: q.unacked_count() as u64,
                consumers: q.consumer_count() as u64,
                message_bytes: q.message_bytes(),
                stats: q.stats,
                idle_ms: q.idle_ms(),
            })
            .collect()
    }
}
