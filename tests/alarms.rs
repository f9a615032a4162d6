//! Resource alarms: while free disk is under `--disk-free-limit` (or memory over its high
//! watermark), a connection that publishes gets `connection.blocked` with RabbitMQ's reason
//! and is no longer read; connections that only consume or declare carry on and are never
//! told. Driven with pika, which advertises the `connection.blocked` capability.

mod common;

use std::time::Duration;

use common::{run_python, Broker};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

fn check(args: &[&str], reason: &str) {
    let broker = Broker::start(args);
    if broker.is_external() {
        return; // the alarm cannot be forced on an external broker
    }
    let port = broker.port().to_string();
    let out = run_python("blocked_publisher.py", &[&port, "alarm-q"], SCRIPT_TIMEOUT);
    out.assert_success("blocked_publisher.py");
    assert_eq!(
        out.lines_with("blocked "),
        vec![format!("blocked {reason}")],
        "expected one connection.blocked with reason {reason:?}; stdout:\n{}",
        out.stdout
    );
    assert_eq!(
        out.lines_with("observer-events"),
        vec!["observer-events 0".to_string()],
        "expected no alarm notification to a connection that never published"
    );
    // The publish that got the connection blocked may land, as in RabbitMQ; the ten after it
    // must not be read while the alarm lasts.
    let depth = out.lines_with("depth ");
    assert!(
        depth == vec!["depth 0".to_string()] || depth == vec!["depth 1".to_string()],
        "expected at most the first publish to be queued, got {depth:?}"
    );
}

#[test]
fn disk_alarm_blocks_publishers_only() {
    check(&["--disk-free-limit", "1000000TB"], "low on disk");
}

#[test]
fn memory_alarm_blocks_publishers_only() {
    check(&["--memory-high-watermark", "1MiB"], "low on memory");
}
