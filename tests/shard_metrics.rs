//! Warren's own `warren_shard_*` series on the Prometheus endpoint: after persistent messages
//! were published with confirms to a durable queue, every confirm waited for an fdatasync, so
//! the fsync histogram and the group-commit histogram have counted (before the confirm went
//! out), the group commits covered at least every message, and on io_uring the shard
//! submitted entries. The whole exposition must parse as Prometheus text (checked here by a
//! small parser of the text format, std only, as is the HTTP/1.0 client that fetches it).
//!
//! Warren only: an external broker (`WARREN_TEST_AMQP_PORT`) has no such series.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use lapin::publisher_confirm::Confirmation;
use lapin::BasicProperties;
use support::broker::free_port;
use support::lapin_client::{
    close, confirm_channel, connect, declare, publish_confirmed, publish_for_confirm, within,
};
use support::{run_async, Broker};

const TEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Published one by one, each confirm awaited: one group commit each, at least.
const ONE_BY_ONE: usize = 20;
/// Published back to back, confirms awaited after: group commits of many records.
const BURST: usize = 300;

/// One sample line: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET /metrics` over HTTP/1.0 (the server closes the connection after the answer).
fn scrape(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("expected to connect to the Prometheus port {port}, got {e}"));
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap_or_else(|e| panic!("expected to send the request, got {e}"));
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("expected the whole answer, got {e}"));
    let text = String::from_utf8(raw).unwrap_or_else(|e| panic!("expected UTF-8, got {e}"));
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("expected headers and a body, got {text:?}"));
    let status = head.split(' ').nth(1);
    assert_eq!(status, Some("200"), "expected 200 OK, got headers {head:?}");
    body.to_string()
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A sample value: a float, or Prometheus' `+Inf`, `-Inf`, `NaN`.
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// `name="value",...}` (after the `{`) up to the closing brace; the rest of the line after it.
fn parse_labels(mut rest: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after) = rest.split_once("=\"")?;
        if !is_metric_name(key) || key.contains(':') {
            return None;
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    _ => return None,
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// One sample line, or None when it is not valid text format.
fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = &line[..name_end];
    let (labels, rest) = match line[name_end..].strip_prefix('{') {
        Some(after) => parse_labels(after)?,
        None => (Vec::new(), &line[name_end..]),
    };
    let mut fields = rest.strip_prefix(' ')?.split(' ');
    let value = parse_value(fields.next()?)?;
    let timestamp_ok = fields.next().is_none_or(|t| t.parse::<i64>().is_ok());
    (is_metric_name(name) && timestamp_ok && fields.next().is_none()).then(|| Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The family a sample belongs to: a histogram's `_bucket`, `_sum` and `_count` belong to it.
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        (types.get(base).map(String::as_str) == Some("histogram")).then_some(base)
    })
}

/// Every line parsed as Prometheus text format 0.0.4: `# HELP`, `# TYPE` (once per family,
/// before its samples) or a sample of a declared family. Panics naming the first bad line.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let bad = |why: &str| panic!("line {}: {why}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    let kinds = ["counter", "gauge", "histogram", "summary", "untyped"];
                    if !is_metric_name(name) || !kinds.contains(&kind) {
                        bad("expected `# TYPE <name> <type>`");
                    }
                    if types.insert(name.to_string(), kind.to_string()).is_some() {
                        bad("expected one # TYPE per family");
                    }
                }
                (Some("HELP"), Some(name), _) if is_metric_name(name) => {}
                _ => {}
            }
            continue;
        }
        let Some(sample) = parse_sample(line) else {
            bad("expected a sample `name{labels} value`")
        };
        if family_of(&sample.name, &types).is_none() {
            bad("expected a # TYPE line for this sample's family before it");
        }
        samples.push(sample);
    }
    samples
}

/// The sum of `name` over every shard.
fn total(samples: &[Sample], name: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

/// Each shard's `_bucket` counts of `family` never decrease, and its `+Inf` bucket is its
/// `_count`.
fn check_histogram(samples: &[Sample], family: &str) {
    let bucket = format!("{family}_bucket");
    let count = format!("{family}_count");
    for c in samples.iter().filter(|s| s.name == count) {
        let shard = c.label("shard");
        let buckets: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.name == bucket && s.label("shard") == shard)
            .collect();
        let values: Vec<f64> = buckets.iter().map(|s| s.value).collect();
        assert!(
            values.windows(2).all(|w| w[0] <= w[1]),
            "expected cumulative buckets of {family} on shard {shard:?}, got {values:?}"
        );
        let last = buckets.last().and_then(|s| s.label("le"));
        assert_eq!(
            last,
            Some("+Inf"),
            "expected {family}'s last bucket le=+Inf"
        );
        assert_eq!(
            values.last().copied(),
            Some(c.value),
            "expected {family}'s +Inf bucket to equal its _count on shard {shard:?}"
        );
    }
}

async fn publish_persistent(url: &str, queue: &str) -> lapin::Connection {
    let connection = connect(url).await;
    let channel = confirm_channel(&connection).await;
    declare(&channel, queue, true).await;
    let persistent = || BasicProperties::default().with_delivery_mode(2);
    for i in 0..ONE_BY_ONE {
        let body = format!("one-by-one {i}");
        publish_confirmed(&channel, "", queue, false, body.as_bytes(), persistent()).await;
    }
    let mut confirms = Vec::with_capacity(BURST);
    for i in 0..BURST {
        let body = format!("burst {i}");
        confirms
            .push(publish_for_confirm(&channel, "", queue, body.as_bytes(), persistent()).await);
    }
    for confirm in confirms {
        let confirmation = within("a publisher confirm", confirm).await;
        assert!(
            matches!(confirmation, Ok(Confirmation::Ack(_))),
            "expected basic.ack, got {confirmation:?}"
        );
    }
    connection
}

#[test]
fn confirmed_persistent_publishes_show_in_fsync_and_group_commit_series() {
    let port = free_port();
    let mut broker = Broker::start(&["--prometheus-port", &port.to_string()]);
    if broker.is_external() {
        eprintln!("skipped: an external broker has no warren_shard_* series");
        return;
    }
    let on_uring = broker.output().contains("shard(s) on io_uring");
    let url = broker.amqp_url();
    let text = run_async_value(async move {
        let connection = publish_persistent(&url, "shard-metrics-durable").await;
        // Scraped while the connection is open, off the runtime's workers.
        let text = tokio::task::spawn_blocking(move || scrape(port))
            .await
            .unwrap_or_else(|e| panic!("expected the scrape to finish, got {e}"));
        close(connection, "the publisher").await;
        text
    });
    let samples = parse_exposition(&text);
    check_series(&samples, on_uring, &text);
}

/// The assertions on the scraped series (see the module doc).
fn check_series(samples: &[Sample], on_uring: bool, text: &str) {
    let fsyncs = total(samples, "warren_shard_fsync_seconds_count");
    let commits = total(samples, "warren_shard_group_commit_records_count");
    let committed = total(samples, "warren_shard_group_commit_records_sum");
    let sqes = total(samples, "warren_shard_io_uring_sqes_submitted_total");
    let submits = total(samples, "warren_shard_io_uring_submit_calls_total");
    let messages = (ONE_BY_ONE + BURST) as f64;
    eprintln!(
        "io_uring: {on_uring}; {fsyncs} fdatasyncs, {commits} group commits of {committed} \
         records, {sqes} entries in {submits} submits"
    );
    assert!(
        fsyncs > 0.0,
        "expected fdatasyncs counted, got {fsyncs}:\n{text}"
    );
    assert!(
        commits > 0.0,
        "expected group commits counted, got {commits}"
    );
    assert!(
        committed >= messages,
        "expected group commits to cover at least the {messages} confirmed messages, got {committed} records"
    );
    assert!(
        commits < messages,
        "expected the burst to share group commits: {commits} commits for {messages} messages"
    );
    if on_uring {
        assert!(
            sqes > 0.0 && submits > 0.0,
            "expected io_uring submissions on io_uring, got {sqes} entries in {submits} calls"
        );
        assert!(sqes >= submits, "expected at least one entry per submitting call, got {sqes} entries in {submits} calls");
    } else {
        assert_eq!(
            (sqes, submits),
            (0.0, 0.0),
            "expected no io_uring submissions on epoll"
        );
    }
    assert!(
        total(samples, "warren_shard_queues") >= 1.0,
        "expected the durable queue counted"
    );
    assert!(
        total(samples, "warren_shard_connections") >= 1.0,
        "expected the open connection counted"
    );
    for gauge in [
        "warren_shard_ring_depth_messages",
        "warren_shard_ring_overflow_messages",
    ] {
        assert!(
            samples.iter().any(|s| s.name == gauge),
            "expected {gauge} samples"
        );
    }
    check_histogram(samples, "warren_shard_fsync_seconds");
    check_histogram(samples, "warren_shard_group_commit_records");
}

/// [`run_async`] for a body that returns a value.
fn run_async_value<T: Send + 'static>(body: impl std::future::Future<Output = T>) -> T {
    let mut out = None;
    run_async(TEST_TIMEOUT, async {
        out = Some(body.await);
    });
    out.unwrap_or_else(|| panic!("expected the test body to finish"))
}

#[test]
fn the_exposition_checker_refuses_what_prometheus_would() {
    let ok = "# TYPE a_seconds histogram\n# HELP a_seconds x y\na_seconds_bucket{shard=\"0\",le=\"+Inf\"} 2\na_seconds_sum{shard=\"0\"} 0.5\na_seconds_count{shard=\"0\"} 2\n";
    assert_eq!(parse_exposition(ok).len(), 3);
    for bad in [
        "no_type 1\n",
        "# TYPE b gauge\nb{shard=\"0} 1\n",
        "# TYPE b gauge\nb{shard=\"0\"} one\n",
        "# TYPE b gauge\nb 1 2 3\n",
        "# TYPE b sometype\n",
    ] {
        let refused = std::panic::catch_unwind(|| parse_exposition(bad)).is_err();
        assert!(refused, "expected {bad:?} to be refused");
    }
}
