//! warren-perf's command line.

use clap::Parser;

use super::topology::{ExchangeType, QueueArg};

/// Load generator for AMQP 0-9-1 brokers (Warren, RabbitMQ).
#[derive(Parser, Debug, Clone)]
#[command(name = "warren-perf", version)]
pub struct Args {
    /// amqp://user:pass@host:port/vhost; overrides --host and --port.
    #[arg(long)]
    pub uri: Option<String>,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 5672)]
    pub port: u16,
    /// Connect over TLS, verifying the broker's certificate against the CA certificates in
    /// this PEM file (the server name is --host, or the URI's host).
    #[arg(long = "tls-ca")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Producer connections.
    #[arg(long, short = 'x', default_value_t = 1)]
    pub producers: usize,
    /// Consumer connections; consumer i reads queue i % queues.
    #[arg(long, short = 'y', default_value_t = 1)]
    pub consumers: usize,
    /// Message body size in bytes (latency needs at least 8).
    #[arg(long, short = 's', default_value_t = 16)]
    pub size: usize,
    /// Length of the measurement window, seconds.
    #[arg(long, short = 'z', default_value_t = 10.0)]
    pub duration: f64,
    /// Number of queues to declare.
    #[arg(long, default_value_t = 1)]
    pub queues: usize,
    /// Queue names; `%d` is replaced by the queue's index.
    #[arg(long, default_value = "warren-perf-%d")]
    pub queue_pattern: String,
    /// Exchange to publish to; "" is the default exchange (routing key =
    /// queue name). Names not starting with "amq." are declared and deleted.
    #[arg(long, short = 'e', default_value = "")]
    pub exchange: String,
    #[arg(long, short = 't', value_enum, default_value = "direct")]
    pub exchange_type: ExchangeType,
    /// Routing keys producers cycle through (comma-separated); replaces the
    /// generated --bindings/--match-ratio scheme.
    #[arg(
        long = "routing-key",
        alias = "routing-keys",
        short = 'k',
        value_delimiter = ','
    )]
    pub routing_keys: Vec<String>,
    /// Binding keys when they differ from --routing-key (key j binds queue
    /// j % queues).
    #[arg(long = "binding-key", alias = "binding-keys", value_delimiter = ',')]
    pub binding_keys: Vec<String>,
    /// Generated bindings (default: one per queue), spread over the queues.
    #[arg(long)]
    pub bindings: Option<usize>,
    /// Fraction of publishes whose key matches a binding.
    #[arg(long, default_value_t = 1.0)]
    pub match_ratio: f64,
    /// An argument of every work queue (repeatable): `x-max-length=1000`,
    /// `x-overflow=drop-head`. Integers are sent as signed longs, true/false
    /// as booleans, anything else as a string.
    #[arg(long = "queue-arg", value_name = "KEY=VALUE")]
    pub queue_args: Vec<QueueArg>,
    /// Dead-lettering: each work queue Q dead-letters to queue Q.dead through
    /// a direct exchange, consumers nack (requeue=false) what they get, one
    /// more consumer per queue reads Q.dead (autoack) and the run reports
    /// the rate of dead-lettered messages received there. Without consumers,
    /// pair it with --queue-arg x-message-ttl=N.
    #[arg(long)]
    pub dead_letter: bool,
    /// delivery-mode 2 and durable queues and exchange.
    #[arg(long)]
    pub persistent: bool,
    /// Publisher confirms with at most WINDOW unconfirmed messages per producer.
    #[arg(long, value_name = "WINDOW")]
    pub confirm: Option<u64>,
    /// Consume with no-ack.
    #[arg(long, short = 'a')]
    pub autoack: bool,
    /// Manual ack with multiple=true every N deliveries (1 = ack each).
    #[arg(long, default_value_t = 1)]
    pub multi_ack_every: u64,
    /// basic.qos prefetch-count per consumer (default: none, unlimited).
    #[arg(long, short = 'q')]
    pub prefetch: Option<u16>,
    /// Fixed total publish rate, msg/s, split evenly over producers.
    #[arg(long, short = 'r')]
    pub rate: Option<f64>,
    /// Broker process whose CPU time per message is reported.
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Print only the JSON line on stdout.
    #[arg(long)]
    pub json: bool,
    /// No per-second progress on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Free text copied into the JSON line (e.g. a scenario name).
    #[arg(long)]
    pub label: Option<String>,
    /// Leave queues and exchange in place after the run.
    #[arg(long)]
    pub keep_topology: bool,
}
