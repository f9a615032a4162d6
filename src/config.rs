//! Broker configuration: command-line flags with environment equivalents.
//!
//! Every setting has a default that works from a fresh clone, so `cargo run --release`
//! needs no configuration at all.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::io::tls::{CertFiles, LoginFrom};
use crate::io::IoChoice;
use crate::store::SyncPolicy;

mod rabbitmq_conf;

/// Warren: an AMQP 0-9-1 broker with one io_uring shard per core.
#[derive(Parser, Debug, Clone)]
#[command(name = "warren", version, about, long_about = None)]
pub struct Config {
    /// Address to accept AMQP 0-9-1 connections on; repeat the flag for several. The default
    /// `[::]:5672` takes IPv6 and IPv4 connections (0.0.0.0:5672 where the host has no IPv6).
    /// Every shard listens on each address with SO_REUSEPORT.
    #[arg(
        long = "listen",
        env = "WARREN_LISTEN",
        value_delimiter = ',',
        default_value = "[::]:5672"
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

    /// Largest size of one message segment file (e.g. 64MiB).
    #[arg(long = "segment-size", env = "WARREN_SEGMENT_SIZE", default_value = "64MiB", value_parser = parse_bytes)]
    pub segment_size: u64,

    /// When persistent messages on durable queues are confirmed: `always` after fdatasync (group
    /// commit), `never` once written to the kernel (survives a broker crash, not a power loss).
    #[arg(
        long = "sync",
        env = "WARREN_SYNC",
        value_enum,
        default_value = "always"
    )]
    pub sync: SyncPolicy,

    /// Message bodies held in memory by all queues together before those of waiting messages
    /// are paged out to the store (e.g. 2GiB); 0 means half the memory high watermark.
    #[arg(long = "memory-budget", env = "WARREN_MEMORY_BUDGET", default_value = "0", value_parser = parse_bytes)]
    pub memory_budget: u64,

    /// Resident memory above which publishers are blocked (connection.blocked): a fraction of
    /// physical memory (0.4) or an absolute size (4GiB).
    #[arg(long = "memory-high-watermark", env = "WARREN_MEMORY_HIGH_WATERMARK", default_value = "0.4", value_parser = parse_watermark)]
    pub memory_high_watermark: Watermark,

    /// Free disk space under the data directory below which publishers are blocked.
    #[arg(long = "disk-free-limit", env = "WARREN_DISK_FREE_LIMIT", default_value = "50MB", value_parser = parse_bytes)]
    pub disk_free_limit: u64,

    /// Seconds a client has to complete the AMQP handshake (up to connection.open) before its
    /// socket is closed (RabbitMQ's handshake_timeout).
    #[arg(
        long = "handshake-timeout",
        env = "WARREN_HANDSHAKE_TIMEOUT",
        default_value_t = 10
    )]
    pub handshake_timeout_secs: u64,

    /// Most client connections at once, over all shards (0: no limit, RabbitMQ's
    /// connection_max = infinity); past it new connections are closed right after accept.
    #[arg(
        long = "connection-max",
        env = "WARREN_CONNECTION_MAX",
        default_value_t = 0
    )]
    pub connection_max: usize,

    /// Most consumers on one channel (0: no limit, RabbitMQ's consumer_max_per_channel =
    /// infinity); basic.consume past it closes the connection with 530 NOT_ALLOWED.
    #[arg(
        long = "consumer-max-per-channel",
        env = "WARREN_CONSUMER_MAX_PER_CHANNEL",
        default_value_t = 0
    )]
    pub consumer_max_per_channel: usize,

    /// Most queues on the node, over all shards (0: no limit, RabbitMQ's cluster_queue_limit
    /// = infinity); queue.declare of a new queue past it is refused with 406.
    #[arg(long = "queue-max", env = "WARREN_QUEUE_MAX", default_value_t = 0)]
    pub queue_max: usize,

    /// Seconds a write to a client may make no progress (the client stopped reading and its
    /// socket buffers are full) before the connection is closed (RabbitMQ's send_timeout).
    #[arg(
        long = "writer-timeout",
        env = "WARREN_WRITER_TIMEOUT",
        default_value_t = 30
    )]
    pub writer_timeout_secs: u64,

    /// I/O backend: `uring` (io_uring), `epoll` (plain tokio, for hosts where io_uring is
    /// refused), or `auto` (io_uring when the kernel allows it, else epoll with one log line
    /// saying why).
    #[arg(long = "io", env = "WARREN_IO", value_enum, default_value = "auto")]
    pub io: IoChoice,

    /// The user created on a new data directory (RabbitMQ's `default_user`), with tag
    /// administrator; it may log in from loopback only while named `guest`.
    #[arg(
        long = "default-user",
        env = "WARREN_DEFAULT_USER",
        default_value = "guest"
    )]
    pub default_user: String,

    /// The default user's password (RabbitMQ's `default_pass`).
    #[arg(
        long = "default-pass",
        env = "WARREN_DEFAULT_PASS",
        default_value = "guest"
    )]
    pub default_pass: String,

    /// The vhost a new data directory starts with, instead of `/` (RabbitMQ's
    /// `default_vhost`); the default user gets full permissions there.
    #[arg(
        long = "default-vhost",
        env = "WARREN_DEFAULT_VHOST",
        default_value = "/"
    )]
    pub default_vhost: String,

    /// Failed logins one source address may make within `--login-failure-window` before every
    /// login from it is refused until the window ends (so guessing passwords is slow).
    #[arg(
        long = "login-failures-max",
        env = "WARREN_LOGIN_FAILURES_MAX",
        default_value_t = 10
    )]
    pub login_failures_max: u32,

    /// Seconds over which failed logins are counted per source address.
    #[arg(
        long = "login-failure-window",
        env = "WARREN_LOGIN_FAILURE_WINDOW",
        default_value_t = 60
    )]
    pub login_failure_window_secs: u64,

    /// A JSON definitions file loaded at every start, in the format RabbitMQ exports
    /// (`rabbitmqctl export_definitions`): its `policies` and `operator_policies` are set
    /// as `warren ctl set-policy` would set them; other sections are not loaded yet.
    #[arg(long = "definitions", env = "WARREN_DEFINITIONS")]
    pub definitions: Option<PathBuf>,

    /// Port of the AMQPS (TLS) listener, on the addresses of `--listen`; it listens only
    /// when `--tls-cert` and `--tls-key` are given (RabbitMQ's `listeners.ssl.default`).
    #[arg(long = "tls-port", env = "WARREN_TLS_PORT", default_value_t = 5671)]
    pub tls_port: u16,

    /// PEM file with the server's certificate chain, end-entity certificate first
    /// (`ssl_options.certfile`). Reloaded with the key on SIGHUP.
    #[arg(long = "tls-cert", env = "WARREN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file with the server's private key (`ssl_options.keyfile`).
    #[arg(long = "tls-key", env = "WARREN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM file with the CA certificates client certificates are verified against
    /// (`ssl_options.cacertfile`).
    #[arg(long = "tls-ca", env = "WARREN_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// Ask TLS clients for a certificate and verify it against `--tls-ca`
    /// (`ssl_options.verify = verify_peer`); a verified certificate allows EXTERNAL login.
    #[arg(long = "tls-verify-peer", env = "WARREN_TLS_VERIFY_PEER")]
    pub tls_verify_peer: bool,

    /// With `--tls-verify-peer`, refuse TLS clients that present no certificate
    /// (`ssl_options.fail_if_no_peer_cert = true`).
    #[arg(
        long = "tls-fail-if-no-peer-cert",
        env = "WARREN_TLS_FAIL_IF_NO_PEER_CERT",
        requires = "tls_verify_peer"
    )]
    pub tls_fail_if_no_peer_cert: bool,

    /// Which part of a client certificate names the user logging in with EXTERNAL
    /// (RabbitMQ's `ssl_cert_login_from`).
    #[arg(
        long = "ssl-cert-login-from",
        env = "WARREN_SSL_CERT_LOGIN_FROM",
        value_enum,
        default_value = "distinguished_name"
    )]
    pub ssl_cert_login_from: LoginFrom,

    /// Port of the management HTTP API and web UI (RabbitMQ's `management.tcp.port`); 0
    /// turns it off.
    #[arg(
        long = "management-port",
        env = "WARREN_MANAGEMENT_PORT",
        default_value_t = 15672
    )]
    pub management_port: u16,

    /// Address the management API listens on (`management.tcp.ip`).
    #[arg(
        long = "management-ip",
        env = "WARREN_MANAGEMENT_IP",
        default_value = "0.0.0.0"
    )]
    pub management_ip: std::net::IpAddr,

    /// Port of the management API over HTTPS (`management.ssl.port`), with the certificate
    /// and key of `--tls-cert` / `--tls-key`; 0 (the default) turns it off.
    #[arg(
        long = "management-tls-port",
        env = "WARREN_MANAGEMENT_TLS_PORT",
        default_value_t = 0
    )]
    pub management_tls_port: u16,

    /// Port of the Prometheus endpoint `/metrics` (`prometheus.tcp.port`); 0 turns it off.
    #[arg(
        long = "prometheus-port",
        env = "WARREN_PROMETHEUS_PORT",
        default_value_t = 15692
    )]
    pub prometheus_port: u16,

    /// Address the Prometheus endpoint listens on (`prometheus.tcp.ip`).
    #[arg(
        long = "prometheus-ip",
        env = "WARREN_PROMETHEUS_IP",
        default_value = "0.0.0.0"
    )]
    pub prometheus_ip: std::net::IpAddr,
    /// Log line format: `text` (RabbitMQ-style lines) or `json` (one object per line, for log
    /// shippers; rabbitmq.conf's `log.console.formatter`). Levels per module come from
    /// `WARREN_LOG` (or `RUST_LOG`), e.g. `info,warren::connection=warn`.
    #[arg(
        long = "log-format",
        env = "WARREN_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: crate::log::LogFormat,

    /// A file of `key = value` lines, keys named like the flags without `--` (for example
    /// `data-dir = /var/lib/warren`); flags and environment variables override it.
    #[arg(long = "config", env = "WARREN_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The memory high watermark: a fraction of physical memory or an absolute size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Watermark {
    Relative(f64),
    Absolute(u64),
}

impl Watermark {
    pub fn bytes(&self) -> u64 {
        match *self {
            Watermark::Relative(f) => (physical_memory() as f64 * f) as u64,
            Watermark::Absolute(b) => b,
        }
    }
}

/// Physical memory in bytes (from sysconf; 1 GiB if unknown).
pub fn physical_memory() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages > 0 && page > 0 {
        pages as u64 * page as u64
    } else {
        1 << 30
    }
}

/// `1234`, `64MiB`, `2GiB`, `50MB`, `512kB`: bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("expected a size such as 512MiB, got {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1000,
        "kib" => 1 << 10,
        "mb" | "m" => 1_000_000,
        "mib" => 1 << 20,
        "gb" | "g" => 1_000_000_000,
        "gib" => 1 << 30,
        "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

fn parse_watermark(s: &str) -> Result<Watermark, String> {
    if let Ok(f) = s.trim().parse::<f64>() {
        if f > 0.0 && f <= 1.0 {
            return Ok(Watermark::Relative(f));
        }
    }
    parse_bytes(s).map(Watermark::Absolute)
}

/// Settings a config file may hold: the long flags, without `--`.
const FILE_KEYS: &[&str] = &[
    "listen",
    "data-dir",
    "shards",
    "heartbeat",
    "frame-max",
    "channel-max",
    "max-message-size",
    "allow-remote-guest",
    "segment-size",
    "sync",
    "memory-budget",
    "memory-high-watermark",
    "disk-free-limit",
    "handshake-timeout",
    "connection-max",
    "consumer-max-per-channel",
    "queue-max",
    "writer-timeout",
    "definitions",
    "login-failures-max",
    "default-user",
    "default-pass",
    "default-vhost",
    "login-failure-window",
    "tls-port",
    "tls-cert",
    "tls-key",
    "tls-ca",
    "tls-verify-peer",
    "tls-fail-if-no-peer-cert",
    "ssl-cert-login-from",
    "management-port",
    "management-ip",
    "management-tls-port",
    "prometheus-port",
    "prometheus-ip",
    "log-format",
];

/// Reads the config file named by `--config FILE` / `--config=FILE` in `args` or by
/// `WARREN_CONFIG`, and exports each `key = value` as the environment variable of that flag
/// unless it is already set, so that flags, then the environment, then the file decide. Keys
/// are Warren's flags or rabbitmq.conf's (see `rabbitmq_conf`); several `listen` lines add up.
pub fn load_config_file(args: &[String]) -> Result<(), String> {
    let from_args = args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--config=").map(str::to_string).or_else(|| {
            (a == "--config")
                .then(|| args.get(i + 1).cloned())
                .flatten()
        })
    });
    let Some(path) = from_args.or_else(|| std::env::var("WARREN_CONFIG").ok()) else {
        return Ok(());
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read config file {path}: {e}"))?;
    let settings = parse_config_file(&text).map_err(|e| format!("{path}:{e}"))?;
    for (key, value) in settings {
        let var = format!("WARREN_{}", key.to_ascii_uppercase().replace('-', "_"));
        if std::env::var_os(&var).is_none() {
            // Called from main before any other thread exists.
            std::env::set_var(var, value);
        }
    }
    Ok(())
}

/// The (setting, value) pairs of a config file, in file order; `listen` lines joined.
fn parse_config_file(text: &str) -> Result<Vec<(&'static str, String)>, String> {
    let mut settings: Vec<(&'static str, String)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("{}: expected `key = value`, got {line:?}", n + 1));
        };
        let (key, value) = match rabbitmq_conf::translate(key.trim(), value.trim()) {
            Some(Ok(translated)) => translated,
            Some(Err(why)) => return Err(format!("{}: {why}", n + 1)),
            None => {
                let key = key.trim();
                let known = FILE_KEYS.iter().find(|k| **k == key);
                let Some(known) = known else {
                    return Err(format!("{}: unknown setting {key:?}", n + 1));
                };
                (*known, value.trim().to_string())
            }
        };
        match settings.iter_mut().find(|(k, _)| *k == key) {
            Some((_, joined)) if key == "listen" => {
                joined.push(',');
                joined.push_str(&value);
            }
            Some((_, old)) => *old = value,
            None => settings.push((key, value)),
        }
    }
    Ok(settings)
}

/// Where a broker with data directory `data_dir` listens for `warren ctl`.
pub fn ctl_socket(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("warren.sock")
}

impl Config {
    /// The memory budget for message bodies, in bytes.
    pub fn memory_budget_bytes(&self) -> u64 {
        if self.memory_budget > 0 {
            self.memory_budget
        } else {
            self.memory_high_watermark.bytes() / 2
        }
    }

    /// The TLS files and client verification, when `--tls-cert` is given.
    pub fn tls_files(&self) -> Option<CertFiles> {
        Some(CertFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            ca: self.tls_ca.clone(),
            verify_peer: self.tls_verify_peer,
            fail_if_no_peer_cert: self.tls_fail_if_no_peer_cert,
        })
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_bytes("1234"), Ok(1234));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("50MB"), Ok(50_000_000));
        assert_eq!(parse_bytes("2 GiB"), Ok(2 << 30));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5XB").is_err());
        assert_eq!(parse_watermark("0.4"), Ok(Watermark::Relative(0.4)));
        assert_eq!(parse_watermark("4GiB"), Ok(Watermark::Absolute(4 << 30)));
    }

    #[test]
    fn config_files_mix_warren_and_rabbitmq_keys() {
        let text = "# comment\nlisteners.tcp.a = 5673\nlisteners.tcp.b = 127.0.0.1:5674\n\
                    default_user = admin\nqueue-max = 10\ndefault_vhost = /\n";
        let settings = parse_config_file(text).expect("valid");
        assert_eq!(
            settings,
            vec![
                ("listen", "[::]:5673,127.0.0.1:5674".to_string()),
                ("default-user", "admin".to_string()),
                ("queue-max", "10".to_string()),
                ("default-vhost", "/".to_string()),
            ]
        );
        let unknown = parse_config_file("log.console.level = info\n");
        assert!(unknown.is_err_and(|e| e.contains("unknown setting \"log.console.level\"")));
    }

    #[test]
    fn the_format_is_chosen_with_log_format() {
        use clap::Parser;
        let parse = |args: &[&str]| Config::try_parse_from(args).map(|c| c.log_format);
        assert_eq!(
            parse(&["warren", "--log-format", "json"]).ok(),
            Some(crate::log::LogFormat::Json)
        );
        assert_eq!(
            parse(&["warren", "--log-format", "text"]).ok(),
            Some(crate::log::LogFormat::Text)
        );
        assert!(parse(&["warren", "--log-format", "xml"]).is_err());
        if std::env::var_os("WARREN_LOG_FORMAT").is_none() {
            assert_eq!(parse(&["warren"]).ok(), Some(crate::log::LogFormat::Text));
        }
    }
}
