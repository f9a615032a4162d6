//! Broker configuration: command-line flags with environment equivalents.
//!
//! Every setting has a default that works from a fresh clone, so `cargo run --release`
//! needs no configuration at all.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// Warren: an AMQP 0-9-1 broker with one io_uring shard per core.
#[derive(Parser, Debug, Clone)]
#[command(name = "warren", version, about, long_about = None)]
pub struct Config {
    /// Address to accept AMQP 0-9-1 connections on; repeat the flag for several.
    /// Every shard listens on each address with SO_REUSEPORT.
    #[arg(
        long = "listen",
        env = "WARREN_LISTEN",
        value_delimiter = ',',
        default_value = "0.0.0.0:5672"
    )]
    pub listen: Vec<SocketAddr>,

    /// Directory for definitions and message segments (created if missing).
    #[arg(long = "data-dir", env = "WARREN_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Number of shards (threads, each pinned to one core). Defaults to the available cores.
    #[arg(long = "shards", env = "WARREN_SHARDS")]
    pub shards: Option<usize>,

    /// Heartbeat interval offered to clients in connection.tune, in seconds (0 disables).
    #[arg(long = "heartbeat", env = "WARREN_HEARTBEAT", default_value_t = 60)]
    pub heartbeat_secs: u16,

    /// Largest frame offered to clients in connection.tune, in bytes.
    #[arg(
        long = "frame-max",
        env = "WARREN_FRAME_MAX",
        default_value_t = 131_072
    )]
    pub frame_max_bytes: u32,

    /// Largest channel number offered to clients in connection.tune.
    #[arg(
        long = "channel-max",
        env = "WARREN_CHANNEL_MAX",
        default_value_t = 2047
    )]
    pub channel_max: u16,

    /// Largest message body accepted, in bytes (RabbitMQ's max_message_size).
    #[arg(long = "max-message-size", env = "WARREN_MAX_MESSAGE_SIZE", default_value_t = 128 * 1024 * 1024)]
    pub max_message_size_bytes: u64,

    /// Let the guest user log in from non-loopback addresses (RabbitMQ's loopback_users = none).
    #[arg(long = "allow-remote-guest", env = "WARREN_ALLOW_REMOTE_GUEST")]
    pub allow_remote_guest: bool,
}

impl Config {
    pub fn shard_count(&self) -> usize {
        self.shards
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            })
            .clamp(1, 256)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::parse_from(["warren"])
    }
}
