//! `warren ctl trace [-p VHOST]`: while it runs, every publish and delivery (consumer or
//! basic.get) in the vhost comes out as one JSON line naming the exchange, routing key,
//! queue, consumer tag, connection, user and channel; other vhosts are not traced; when it
//! stops, tracing is off again (list_vhosts' `tracing` column says so). Warren only (the
//! trace streams over the control socket).

mod support;

use std::process::Output;
use std::time::{Duration, Instant};

use lapin::BasicProperties;
use serde_json::Value;
use support::broker::{amqp_url, warren_command};
use support::lapin_client::*;
use support::process::{Pipe, Process};
use support::{run_async, unique_suffix, Broker};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);
const LINE_TIMEOUT: Duration = Duration::from_secs(10);

fn ctl(broker: &Broker, args: &[&str]) -> Output {
    let dir = broker.data_dir().expect("a broker of our own");
    let mut command = warren_command(&["ctl", "--data-dir"]);
    command.arg(dir).args(args).env_remove("WARREN_API");
    command.output().expect("warren ctl runs")
}

fn ctl_ok(broker: &Broker, args: &[&str]) -> String {
    let output = ctl(broker, args);
    assert!(
        output.status.success(),
        "expected ctl {args:?} to succeed, got {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `warren ctl trace ARGS`, once it said tracing is on.
fn start_trace(broker: &Broker, args: &[&str]) -> Process {
    let dir = broker.data_dir().expect("a broker of our own");
    let mut command = warren_command(&["ctl", "--data-dir"]);
    command.arg(dir).arg("trace").args(args);
    let mut trace = Process::spawn(command, "warren ctl trace").expect("warren ctl trace runs");
    if let Err(e) = trace.wait_for_line(Some(Pipe::Stderr), "Tracing vhost", LINE_TIMEOUT) {
        panic!("expected the trace to start, got {e}:\n{}", trace.output());
    }
    trace
}

/// Waits for a line on the trace's stdout holding every one of `needles`; it as JSON.
fn wait_event(trace: &mut Process, needles: &[&str]) -> Value {
    let deadline = Instant::now() + LINE_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = trace
            .wait_for_line(Some(Pipe::Stdout), needles[0], left)
            .unwrap_or_else(|e| {
                panic!(
                    "expected a trace line with {needles:?}, got {e}:\n{}",
                    trace.output()
                )
            });
        if needles.iter().all(|n| line.contains(n)) {
            return serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("expected a JSON line, got {line:?} ({e})"));
        }
    }
}

/// The vhost's `tracing` column, once it is `expected` (or what it is after a while).
fn tracing_column(broker: &Broker, vhost: &str, expected: &str) -> String {
    let deadline = Instant::now() + LINE_TIMEOUT;
    loop {
        let listing = ctl_ok(broker, &["list_vhosts", "name", "tracing"]);
        let value = listing
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{vhost}\t")))
            .unwrap_or("no such vhost")
            .to_string();
        if value == expected || Instant::now() > deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn publishes_and_deliveries_of_the_vhost_are_traced_until_the_caller_hangs_up() {
    let broker = Broker::start(&[]);
    if broker.data_dir().is_none() {
        eprintln!("skipped: trace is Warren's own");
        return;
    }
    let other = format!("trace-other-{}", unique_suffix());
    ctl_ok(&broker, &["add_vhost", &other]);
    ctl_ok(
        &broker,
        &["set_permissions", "-p", &other, "guest", ".*", ".*", ".*"],
    );
    assert_eq!(tracing_column(&broker, "/", "false"), "false");
    let mut trace = start_trace(&broker, &[]);
    // The control socket still answers while a trace runs.
    assert_eq!(tracing_column(&broker, "/", "true"), "true");
    assert_eq!(tracing_column(&broker, &other, "false"), "false");

    let queue = format!("traced-{}", unique_suffix());
    run_async(
        TEST_TIMEOUT,
        publish_get_consume(broker.port(), &other, &queue),
    );
    check_events(&mut trace, &queue);

    assert!(trace.terminate(), "expected the trace still running");
    let output = trace.finish(LINE_TIMEOUT);
    assert!(
        !output.stdout.contains("untraced-queue") && !output.stdout.contains(&other),
        "expected nothing of vhost {other} traced, got:\n{}",
        output.stdout
    );
    for line in output.stdout.lines() {
        let event: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("expected JSON lines only on stdout, got {line:?} ({e})"));
        assert_eq!(event["vhost"], "/", "got {line}");
    }
    assert_eq!(
        tracing_column(&broker, "/", "false"),
        "false",
        "expected tracing off once the caller hung up"
    );
}

#[test]
fn a_trace_of_a_missing_vhost_is_refused() {
    let broker = Broker::start(&[]);
    if broker.data_dir().is_none() {
        return;
    }
    let refused = ctl(&broker, &["trace", "-p", "no-such-vhost"]);
    assert_eq!(refused.status.code(), Some(1));
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(
        text.contains("vhost 'no-such-vhost' does not exist"),
        "expected the missing vhost named, got: {text}"
    );
}

/// In vhost `other` a publish (never traced); in `/` a publish to `queue`, a basic.get, a
/// publish consumed by `trace-tag`, and an unroutable publish.
async fn publish_get_consume(port: u16, other: &str, queue: &str) {
    // First, in the other vhost: never traced.
    let elsewhere = connect_to(port, "guest", "guest", other)
        .await
        .expect("a connection to the other vhost");
    let channel = confirm_channel(&elsewhere).await;
    declare(&channel, "untraced-queue", false).await;
    let none = BasicProperties::default();
    publish_confirmed(&channel, "", "untraced-queue", false, b"x", none).await;
    close_quietly(elsewhere).await;

    let connection = connect(&amqp_url(port)).await;
    let channel = confirm_channel(&connection).await;
    declare(&channel, queue, false).await;
    let properties = BasicProperties::default()
        .with_content_type("text/plain".into())
        .with_delivery_mode(2);
    publish_confirmed(&channel, "", queue, false, b"hello", properties).await;
    get_eventually(&channel, queue).await;
    let none = BasicProperties::default();
    publish_confirmed(&channel, "", queue, false, b"again", none).await;
    let mut deliveries = consume(&channel, queue, "trace-tag", true).await;
    deliveries.next("the consumer's delivery").await;
    // Unroutable: traced as routed to no queue.
    let none = BasicProperties::default();
    publish_confirmed(&channel, "amq.direct", "nowhere", false, b"?", none).await;
    close_quietly(connection).await;
}

/// The events of [`publish_get_consume`] on `queue`, in the order they happened.
fn check_events(trace: &mut Process, queue: &str) {
    let published = wait_event(trace, &["\"type\":\"publish\"", queue, "\"body_bytes\":5,"]);
    assert_eq!(published["exchange"], "");
    assert_eq!(published["routing_key"], queue);
    assert_eq!(published["vhost"], "/");
    assert_eq!(published["body_bytes"], 5);
    assert_eq!(published["routed_queues"], 1);
    assert_eq!(published["properties"]["content_type"], "text/plain");
    assert_eq!(published["properties"]["delivery_mode"], 2);
    assert_eq!(published["user"], "guest");
    assert_eq!(published["channel"], 1);
    let connection = published["connection"].as_str().unwrap_or_default();
    assert!(
        connection.contains(" -> 127.0.0.1:"),
        "expected the connection named as list_connections names it, got {published}"
    );
    let got = wait_event(trace, &["\"type\":\"get\"", queue]);
    assert_eq!(got["queue"], queue);
    assert_eq!(got["redelivered"], false);
    let delivered = wait_event(trace, &["\"type\":\"deliver\"", queue]);
    assert_eq!(delivered["consumer_tag"], "trace-tag");
    assert_eq!(delivered["routing_key"], queue);
    let unroutable = wait_event(trace, &["\"type\":\"publish\"", "amq.direct"]);
    assert_eq!(unroutable["routing_key"], "nowhere");
    assert_eq!(unroutable["routed_queues"], 0);
}
