//! Logging through `tracing`: the crate's `info!`, `warn!` and `error!` forward to tracing's
//! macros, so every event carries a level and a target (the module that logged it) and may
//! carry structured fields (`crate::info!(peer = %addr, "...")`).
//!
//! One line per event on stdout, in one of two formats (`--log-format`):
//!
//! * `text`, the default, RabbitMQ's console style as before tracing:
//!   `2026-11-28 10:00:00.123 [info] message key=value ...` (UTC);
//! * `json`, one object per line for log shippers:
//!   `{"timestamp":"2026-11-28T10:00:00.123Z","level":"info","target":"warren::server",
//!   "message":"...","fields":{...}}`.
//!
//! Levels are chosen per module with an `EnvFilter` from `WARREN_LOG`, else `RUST_LOG`, else
//! `info` (`WARREN_LOG=info,warren::connection=warn`). A disabled event costs the macro's
//! level check (an atomic load against the global maximum) and nothing else: its arguments
//! are never formatted. Logging is not on the message path either way.

use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// The macros below name tracing through this path, so that they work wherever `warren` is
/// used, whether or not the user depends on tracing itself.
#[doc(hidden)]
pub use tracing;

/// The environment variable with the level directives (EnvFilter syntax).
pub const FILTER_ENV: &str = "WARREN_LOG";
/// Read when `WARREN_LOG` is unset, as most Rust programs do.
pub const FALLBACK_FILTER_ENV: &str = "RUST_LOG";
/// The directives when neither is set.
pub const DEFAULT_FILTER: &str = "info";

/// How each log line is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-11-28 10:00:00.123 [info] message key=value`
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the process-wide subscriber: levels from the environment, lines in `format` on
/// stdout. Errs on directives the filter cannot parse, so that a typo in `WARREN_LOG` is
/// seen at start rather than silently logging nothing.
pub fn init(format: LogFormat) -> Result<(), String> {
    let filter = filter_from_env()?;
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .event_format(Lines { format })
        .with_writer(std::io::stdout)
        .finish();
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|e| format!("cannot install the logger: {e}"))
}

/// The filter named by `WARREN_LOG`, else `RUST_LOG`, else `info`.
fn filter_from_env() -> Result<EnvFilter, String> {
    let own = std::env::var(FILTER_ENV).ok();
    let fallback = std::env::var(FALLBACK_FILTER_ENV).ok();
    let directives = filter_directives(own, fallback);
    EnvFilter::builder()
        .parse(&directives)
        .map_err(|e| format!("{FILTER_ENV} (or {FALLBACK_FILTER_ENV}) = {directives:?}: {e}"))
}

/// The first of `warren_log` and `rust_log` that is set and not blank, else `info`.
fn filter_directives(warren_log: Option<String>, rust_log: Option<String>) -> String {
    [warren_log, rust_log]
        .into_iter()
        .flatten()
        .find(|d| !d.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_FILTER.to_string())
}

/// The event formatter for both formats: the subscriber hands it each enabled event.
pub struct Lines {
    pub format: LogFormat,
}

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let now = Utc::now();
        let meta = event.metadata();
        let line = match self.format {
            LogFormat::Text => text_line(&now, meta.level(), &fields),
            LogFormat::Json => json_line(&now, meta.level(), meta.target(), &fields),
        };
        writeln!(writer, "{line}")
    }
}

/// RabbitMQ's level names (`warning`, not `warn`), in both formats.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// An event's message and its other fields, in the order they were given.
#[derive(Default)]
struct Fields {
    message: String,
    others: Vec<(&'static str, serde_json::Value)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.others.push((field.name(), value.into()));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.others.push((field.name(), value.into()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.others.push((field.name(), value.into()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.others.push((field.name(), value.into()));
    }

    /// `%x` fields and the formatted message arrive here; their Debug is their Display.
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.others
                .push((field.name(), format!("{value:?}").into()));
        }
    }
}

/// `2026-11-28 10:00:00.123 [info] message key=value ...`. What a client sent (queue names,
/// reasons) may hold newlines or escape sequences: one event stays one line, and nothing a
/// client sends reaches the terminal raw.
fn text_line(now: &Utc, level: &Level, fields: &Fields) -> String {
    let mut line = format!(
        "{} [{}] {}",
        now.text(),
        level_name(level),
        escape_controls(&fields.message)
    );
    for (name, value) in &fields.others {
        let _ = write!(line, " {name}={}", text_value(value));
    }
    line
}

/// A field's value in a text line: bare when that reads unambiguously, else quoted.
fn text_value(value: &serde_json::Value) -> String {
    let serde_json::Value::String(s) = value else {
        return value.to_string();
    };
    let bare = !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c == '"' || c == '=');
    if bare {
        escape_controls(s).into_owned()
    } else {
        let quoted = s.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{}\"", escape_controls(&quoted))
    }
}

/// One JSON object; serde_json escapes control characters, so it stays one line.
fn json_line(now: &Utc, level: &Level, target: &str, fields: &Fields) -> String {
    let others: serde_json::Map<String, serde_json::Value> = fields
        .others
        .iter()
        .map(|(name, value)| ((*name).to_string(), value.clone()))
        .collect();
    // Written by hand rather than through a Map so that the keys keep this order.
    format!(
        "{{\"timestamp\":\"{}\",\"level\":\"{}\",\"target\":{},\"message\":{},\"fields\":{}}}",
        now.rfc3339(),
        level_name(level),
        serde_json::Value::from(target),
        serde_json::Value::from(fields.message.as_str()),
        serde_json::Value::Object(others)
    )
}

/// `text` with every control character written as `\xNN`.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A UTC wall-clock time to the millisecond, without a date crate.
struct Utc {
    year: i64,
    month: u32,
    day: u32,
    secs_of_day: u64,
    millis: u32,
}

impl Utc {
    fn now() -> Utc {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Utc::from_unix(now.as_secs(), now.subsec_millis())
    }

    fn from_unix(secs: u64, millis: u32) -> Utc {
        let (days, secs_of_day) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(days as i64);
        Utc {
            year,
            month,
            day,
            secs_of_day,
            millis,
        }
    }

    /// `2026-11-28 10:00:00.123`, as the text format always printed it.
    fn text(&self) -> String {
        self.with_separator(' ', "")
    }

    /// `2026-11-28T10:00:00.123Z`
    fn rfc3339(&self) -> String {
        self.with_separator('T', "Z")
    }

    fn with_separator(&self, between: char, zone: &str) -> String {
        let rem = self.secs_of_day;
        format!(
            "{:04}-{:02}-{:02}{between}{:02}:{:02}:{:02}.{:03}{zone}",
            self.year,
            self.month,
            self.day,
            rem / 3600,
            (rem / 60) % 60,
            rem % 60,
            self.millis
        )
    }
}

/// Milliseconds since the epoch as the management API writes times, RabbitMQ's way:
/// `2026-12-08T00:05:05.703+00:00`.
pub fn api_time(ms: u64) -> String {
    Utc::from_unix(ms / 1000, (ms % 1000) as u32).with_separator('T', "+00:00")
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// An info-level event (tracing's `info!`: format arguments, and optional fields first).
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::tracing::info!($($arg)*) };
}

/// A warning (tracing's `warn!`; printed as `[warning]`, as RabbitMQ does).
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::tracing::warn!($($arg)*) };
}

/// An error (tracing's `error!`).
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::tracing::error!($($arg)*) };
}

#[cfg(test)]
mod tests;
