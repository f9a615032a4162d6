use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::EnvFilter;

use super::*;

/// Everything the subscriber wrote, shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut out) = self.0.lock() {
            out.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8(bytes).expect("log output is UTF-8")
    }
}

/// What `log` printed through a subscriber like `init`'s, with `format` and `directives`.
fn capture(format: LogFormat, directives: &str, log: impl FnOnce()) -> String {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::builder().parse(directives).expect("valid"))
        .event_format(Lines { format })
        .with_writer(move || sink.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, log);
    captured.text()
}

#[test]
fn civil_dates() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(20_785), (2026, 11, 28));
    let t = Utc::from_unix(20_785 * 86_400 + 36_000 + 61, 7);
    assert_eq!(t.text(), "2026-11-28 10:01:01.007");
    assert_eq!(t.rfc3339(), "2026-11-28T10:01:01.007Z");
}

#[test]
fn control_characters_are_escaped() {
    assert_eq!(escape_controls("a\nb\x1b[31m"), "a\\x0ab\\x1b[31m");
    assert_eq!(escape_controls("plain 'q'"), "plain 'q'");
}

#[test]
fn warren_log_wins_over_rust_log_and_info_is_the_default() {
    let some = |s: &str| Some(s.to_string());
    assert_eq!(filter_directives(some("warn"), some("debug")), "warn");
    assert_eq!(filter_directives(None, some("debug")), "debug");
    assert_eq!(filter_directives(some("  "), some("debug")), "debug");
    assert_eq!(filter_directives(None, None), "info");
    assert!(EnvFilter::builder()
        .parse("info,warren::connection=warn")
        .is_ok());
    assert!(EnvFilter::builder().parse("info,warren=loud").is_err());
}

#[test]
fn text_lines_look_as_before_tracing() {
    let out = capture(LogFormat::Text, "info", || {
        crate::info!("Server startup complete; {} shard(s)", 2);
        crate::warn!(peer = "127.0.0.1:1", name = "a b", "closing\nnow");
    });
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    // `2026-11-28 10:00:00.123 [info] ...`: the date is 23 characters.
    assert_eq!(
        &lines[0][23..],
        " [info] Server startup complete; 2 shard(s)"
    );
    assert_eq!(lines[0].as_bytes()[10], b' ');
    assert_eq!(
        &lines[1][23..],
        " [warning] closing\\x0anow peer=127.0.0.1:1 name=\"a b\""
    );
}

#[test]
fn json_lines_are_one_object_each() {
    let out = capture(LogFormat::Json, "info", || {
        crate::info!(shard = 3_u64, user = "guest", "accepting AMQP connection");
        crate::error!("two\nlines {}", "\"quoted\"");
    });
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let first: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON");
    assert_eq!(first["level"], "info");
    assert_eq!(first["target"], "warren::log::tests");
    assert_eq!(first["message"], "accepting AMQP connection");
    assert_eq!(first["fields"]["shard"], 3);
    assert_eq!(first["fields"]["user"], "guest");
    let stamp = first["timestamp"].as_str().expect("a timestamp");
    assert!(stamp.len() == 24 && stamp.ends_with('Z') && &stamp[10..11] == "T");
    assert!(lines[0].starts_with("{\"timestamp\":"), "{}", lines[0]);
    let second: serde_json::Value = serde_json::from_str(lines[1]).expect("JSON");
    assert_eq!(second["level"], "error");
    assert_eq!(second["message"], "two\nlines \"quoted\"");
    assert_eq!(second["fields"], serde_json::json!({}));
}

#[test]
fn levels_are_chosen_per_module() {
    let out = capture(LogFormat::Text, "info,warren::log::tests=error", || {
        crate::info!("hidden");
        crate::warn!("hidden too");
        crate::error!("shown");
    });
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("[error] shown"));
    let out = capture(LogFormat::Text, "warn", || crate::info!("hidden"));
    assert!(out.is_empty(), "{out}");
}
