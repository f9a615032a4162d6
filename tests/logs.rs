//! The broker's log: `--log-format json` writes one JSON object per line (timestamp, level,
//! target, message, fields), the text format keeps RabbitMQ's console style, `WARREN_LOG`
//! chooses levels per module, and a connection's open and close are logged with what the
//! client said about itself (product, version, connection name) and the close reason.

mod support;

use std::time::{Duration, Instant};

use lapin::{Connection, ConnectionProperties};
use serde_json::Value;
use support::broker::{Broker, STARTUP_LINE};
use support::lapin_client::{close, within};
use support::raw::Client;
use support::run_async;

const TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a line the broker logs on its own time may take to appear.
const LOG_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects with lapin as guest, naming the connection `name`, and closes it with 200 "bye".
fn open_and_close(broker: &Broker, name: &str) {
    let url = broker.amqp_url();
    let name = name.to_string();
    run_async(TEST_TIMEOUT, async move {
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        let connection = within("a connection", Connection::connect(&url, properties))
            .await
            .unwrap_or_else(|e| panic!("expected a connection to {url}, got {e}"));
        close(connection, "the named connection").await;
    });
}

/// Every line of `output`, each of which must be a JSON object with the five keys.
fn json_lines(output: &str) -> Vec<Value> {
    output
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("expected a JSON line, got {line:?} ({e})"));
            for key in ["timestamp", "level", "target", "message", "fields"] {
                assert!(value.get(key).is_some(), "expected {key:?} in {line}");
            }
            value
        })
        .collect()
}

/// The one line whose message is `message`.
fn the_line<'a>(lines: &'a [Value], message: &str) -> &'a Value {
    let found: Vec<&Value> = lines.iter().filter(|l| l["message"] == message).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {message:?} line, got {lines:#?}"
    );
    found[0]
}

#[test]
fn json_lines_carry_the_connection_lifecycle() {
    let broker = Broker::start(&["--log-format", "json"]);
    if broker.is_external() {
        return; // an external broker's log is not ours to read
    }
    open_and_close(&broker, "logs-json");
    let (status, output) = broker.terminate();
    assert!(status.success(), "expected exit 0, got {status}:\n{output}");
    let lines = json_lines(&output);
    assert!(lines.iter().any(|l| l["message"]
        .as_str()
        .is_some_and(|m| m.contains(STARTUP_LINE))));

    let open = the_line(&lines, "accepting AMQP connection");
    assert_eq!(open["level"], "info");
    assert_eq!(open["target"], "warren::connection::lifecycle_log");
    let fields = &open["fields"];
    assert_eq!(fields["user"], "guest");
    assert_eq!(fields["vhost"], "/");
    assert_eq!(fields["client_product"], "lapin");
    assert!(fields["client_version"]
        .as_str()
        .is_some_and(|v| !v.is_empty()));
    assert_eq!(fields["connection_name"], "logs-json");
    assert!(fields["peer"]
        .as_str()
        .is_some_and(|p| p.starts_with("127.0.0.1:")));

    let closed = the_line(&lines, "closing AMQP connection at the client's request");
    assert_eq!(closed["fields"]["reply_code"], 200);
    assert_eq!(closed["fields"]["reply_text"], "bye");
    assert_eq!(closed["fields"]["connection_name"], "logs-json");
    assert_eq!(closed["fields"]["peer"], fields["peer"]);
}

/// `2026-11-28 10:00:00.123 [info] ...`
fn is_text_line(line: &str) -> bool {
    let b = line.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        r.into_iter()
            .all(|i| b.get(i).is_some_and(u8::is_ascii_digit))
    };
    digits(0..4)
        && b.get(10) == Some(&b' ')
        && b.get(19) == Some(&b'.')
        && digits(20..23)
        && ["info", "warning", "error"]
            .iter()
            .any(|level| line[23..].starts_with(&format!(" [{level}] ")))
}

#[test]
fn text_is_the_default_and_warren_log_sets_levels_per_module() {
    let broker = Broker::start_with(&[], |command| {
        command
            .env_remove("WARREN_LOG_FORMAT")
            .env("WARREN_LOG", "info,warren::connection=warn");
    });
    if broker.is_external() {
        return;
    }
    open_and_close(&broker, "logs-text");
    let (status, output) = broker.terminate();
    assert!(status.success(), "expected exit 0, got {status}:\n{output}");
    assert!(
        output.lines().all(is_text_line),
        "expected text lines, got:\n{output}"
    );
    assert!(
        output.contains(&format!("[info] {STARTUP_LINE}")),
        "{output}"
    );
    assert!(
        !output.contains("AMQP connection"),
        "expected warren::connection's info lines filtered out, got:\n{output}"
    );
}

#[test]
fn a_client_that_vanishes_is_logged_with_its_peer() {
    let mut broker = Broker::start_with(&[], |command| {
        command
            .env_remove("WARREN_LOG_FORMAT")
            .env_remove("WARREN_LOG");
    });
    if broker.is_external() {
        return;
    }
    let client = Client::connect_with_channel(broker.port());
    drop(client); // the socket closes without connection.close
    let deadline = Instant::now() + LOG_TIMEOUT;
    let line = loop {
        let output = broker.output();
        if let Some(line) = output
            .lines()
            .find(|l| l.contains("client unexpectedly closed TCP connection"))
        {
            break line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "expected the line, got:\n{output}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        line.contains("[warning]") && line.contains("peer=127.0.0.1:"),
        "{line}"
    );
    assert!(line.contains("user=guest"), "{line}");
}
