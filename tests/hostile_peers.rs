//! Peers that try to make the broker hold memory or sockets: what they claim is never what
//! the broker allocates, they are closed with a logged reason, and other clients carry on:
//! each test runs a round trip of messages on a well-behaved connection while the hostile
//! peer is there, and prints its rate beside one measured before (printed, never asserted:
//! timings do not decide a test).

mod support;

use support::broker::Broker;
use support::raw::*;

const ROUND_TRIP: usize = 5_000;

/// Publishes `n` messages to `queue` and consumes them back on one raw connection, checking
/// each arrives in order; returns messages per second.
fn round_trips(port: u16, queue: &str, n: usize) -> f64 {
    let mut client = Client::connect_with_channel(port);
    client.queue_declare(1, queue);
    client.consume(1, queue, true, false);
    let started = std::time::Instant::now();
    let mut bytes = Vec::new();
    for i in 0..n {
        bytes.extend(Client::publish_bytes(
            1,
            "",
            queue,
            i.to_string().as_bytes(),
        ));
    }
    client.write_all(&bytes);
    for i in 0..n {
        let delivery = client.expect(1, BASIC_DELIVER);
        assert_eq!(
            delivery.body.as_deref(),
            Some(i.to_string().as_bytes()),
            "message {i} of the well-behaved client's round trip"
        );
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Runs the round trip before (`baseline`) and now, and prints both rates.
fn report_throughput(what: &str, baseline: f64, port: u16) {
    let during = round_trips(port, &format!("witness-during-{what}"), ROUND_TRIP);
    eprintln!(
        "{what}: a well-behaved client's round trip ran at {during:.0} msg/s beside it \
         ({baseline:.0} msg/s before it came)"
    );
}

/// A /proc/PID/status field in bytes (VmSize: what the process allocated, resident or not).
fn status_bytes(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with(field))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

#[test]
fn a_peer_claiming_huge_bodies_on_every_channel_gets_only_what_it_sent_allocated() {
    let broker = Broker::start(&[]);
    let Some(pid) = broker.pid() else {
        return; // an external broker: nothing to measure
    };
    let baseline = round_trips(broker.port(), "witness-before", ROUND_TRIP);
    let mut peer = Client::connect(broker.port());
    let before = status_bytes(pid, "VmSize:");
    const CHANNELS: u16 = 2000;
    const CLAIMED: u64 = 128 * 1024 * 1024; // the default max-message-size
    let mut bytes = Vec::new();
    for channel in 1..=CHANNELS {
        bytes.extend(method_frame(channel, CHANNEL_OPEN, Args::new().short("")));
        let args = Args::new().u16(0).short("").short("nowhere").u8(0);
        bytes.extend(method_frame(channel, BASIC_PUBLISH, args));
        bytes.extend(frame(FRAME_HEADER, channel, &content_header(CLAIMED, None)));
        bytes.extend(frame(FRAME_BODY, channel, b"0123456789"));
        bytes.extend(frame(FRAME_BODY, channel, b"0123456789"));
    }
    peer.write_all(&bytes);
    // Every channel.open answered means every frame before it was handled.
    for _ in 1..=CHANNELS {
        let reply = peer.recv();
        assert_eq!(
            reply.id,
            CHANNEL_OPEN_OK,
            "expected channel.open-ok, got {}",
            reply.describe()
        );
    }
    let grown = status_bytes(pid, "VmSize:").saturating_sub(before);
    assert!(
        grown < 2 << 30,
        "expected the broker to allocate what arrived (a few bytes per channel), not the \
         {CLAIMED} bytes each header claimed: it grew by {grown} bytes over {CHANNELS} channels"
    );
    report_throughput("huge body claims", baseline, broker.port());
}

/// A claim past `--max-message-size` (2^31 bytes on every one of 2047 channels) closes each
/// channel with 406 and RabbitMQ's wording, logged; nothing of the claim is allocated.
#[test]
fn a_peer_claiming_2_31_byte_bodies_on_2047_channels_gets_each_channel_closed() {
    let mut broker = Broker::start(&[]);
    let Some(pid) = broker.pid() else {
        return;
    };
    let baseline = round_trips(broker.port(), "witness-before", ROUND_TRIP);
    let mut peer = Client::connect(broker.port());
    let before = status_bytes(pid, "VmSize:");
    const CHANNELS: u16 = 2047;
    const CLAIMED: u64 = 1 << 31;
    let mut bytes = Vec::new();
    for channel in 1..=CHANNELS {
        bytes.extend(method_frame(channel, CHANNEL_OPEN, Args::new().short("")));
        let args = Args::new().u16(0).short("").short("nowhere").u8(0);
        bytes.extend(method_frame(channel, BASIC_PUBLISH, args));
        bytes.extend(frame(FRAME_HEADER, channel, &content_header(CLAIMED, None)));
        bytes.extend(frame(FRAME_BODY, channel, b"0123456789"));
    }
    peer.write_all(&bytes);
    report_throughput("2^31-byte claims", baseline, broker.port());
    for channel in 1..=CHANNELS {
        peer.expect(channel, CHANNEL_OPEN_OK);
        let (code, text, class, method) = peer.expect(channel, CHANNEL_CLOSE).close_reason();
        assert_eq!(
            (code, text.as_str(), (class, method)),
            (
                406,
                "PRECONDITION_FAILED - message size 2147483648 is larger than configured max size 134217728",
                BASIC_PUBLISH
            ),
            "channel {channel}"
        );
    }
    let grown = status_bytes(pid, "VmSize:").saturating_sub(before);
    assert!(
        grown < 2 << 30,
        "expected nothing of the claims allocated, the broker grew by {grown} bytes"
    );
    let output = wait_for_log(
        &mut broker,
        "larger than configured max size",
        std::time::Duration::from_secs(5),
    );
    assert!(
        output.contains("channel 2047: PRECONDITION_FAILED - message size 2147483648"),
        "expected a log line per refused channel, got:\n{output}"
    );
}

/// Waits (bounded) until the broker's output holds `needle`.
fn wait_for_log(broker: &mut Broker, needle: &str, within: std::time::Duration) -> String {
    let deadline = std::time::Instant::now() + within;
    loop {
        let output = broker.output();
        if output.contains(needle) || std::time::Instant::now() > deadline {
            return output;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_peer_that_connects_and_sends_nothing_is_closed_at_the_handshake_timeout() {
    let mut broker = Broker::start(&["--handshake-timeout", "2"]);
    if broker.is_external() {
        return;
    }
    let baseline = round_trips(broker.port(), "witness-before", ROUND_TRIP);
    let mut silent = Client::tcp(broker.port(), "silent peer");
    let mut half = Client::tcp(broker.port(), "peer that stops after the protocol header");
    half.write_all(PROTOCOL_HEADER);
    // Meanwhile a well-behaved client is served as usual.
    report_throughput("silent peers", baseline, broker.port());
    let mut other = Client::connect_with_channel(broker.port());
    other.queue_declare(1, "served");
    for (peer, what) in [(&mut silent, "silent"), (&mut half, "half-open")] {
        let (_, ended) = peer.read_until_closed();
        assert!(
            ended,
            "expected the {what} peer's socket closed by the handshake timeout"
        );
    }
    let output = wait_for_log(
        &mut broker,
        "handshake timeout",
        std::time::Duration::from_secs(5),
    );
    assert!(
        output.matches("handshake timeout").count() >= 2,
        "expected a log line naming the handshake timeout per peer, got:\n{output}"
    );
    other.publish(1, "", "served", "still here");
    assert_eq!(other.get_all(1, "served"), vec!["still here".to_string()]);
}

#[test]
fn past_connection_max_a_new_connection_is_closed_at_once() {
    let mut broker = Broker::start(&["--connection-max", "3"]);
    if broker.is_external() {
        return;
    }
    let mut open: Vec<Client> = (0..3)
        .map(|_| Client::connect_with_channel(broker.port()))
        .collect();
    let mut refused = Client::tcp(broker.port(), "fourth connection");
    refused.write_all(PROTOCOL_HEADER);
    let (bytes, ended) = refused.read_until_closed();
    assert!(
        ended && bytes.is_empty(),
        "expected the fourth connection closed without a handshake, got {} bytes",
        bytes.len()
    );
    let output = wait_for_log(
        &mut broker,
        "connection_max",
        std::time::Duration::from_secs(5),
    );
    assert!(
        output.contains("connection_max (3) reached"),
        "expected a log line naming connection_max, got:\n{output}"
    );
    // One goes, one more may come.
    drop(open.pop());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut next = Client::tcp(broker.port(), "after one closed");
        next.write_all(PROTOCOL_HEADER);
        if next.recv_within(std::time::Duration::from_secs(2)).is_ok() {
            break; // connection.start: admitted
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected a connection once one closed"
        );
    }
    open[0].queue_declare(1, "still-open");
}

#[test]
fn a_consumer_that_never_reads_is_closed_at_the_writer_timeout() {
    let mut broker = Broker::start(&["--writer-timeout", "2"]);
    if broker.is_external() {
        return;
    }
    let baseline = round_trips(broker.port(), "witness-before", ROUND_TRIP);
    let mut stuck = Client::connect_with_channel(broker.port());
    stuck.queue_declare(1, "to-stuck");
    stuck.consume(1, "to-stuck", true, false);
    // The stuck consumer never reads again; 64 KiB messages fill its socket buffers.
    let mut publisher = Client::connect_with_channel(broker.port());
    let body = vec![b'x'; 64 * 1024];
    for _ in 0..400 {
        publisher.write_all(&Client::publish_bytes(1, "", "to-stuck", &body));
    }
    report_throughput("a consumer that stopped reading", baseline, broker.port());
    let output = wait_for_log(
        &mut broker,
        "writer timeout",
        std::time::Duration::from_secs(30),
    );
    assert!(
        output.contains("read nothing for 2 s (writer timeout)"),
        "expected the non-reading consumer closed with a logged reason, got:\n{output}"
    );
    // Others carry on.
    publisher.queue_declare(1, "after-stuck");
    publisher.publish(1, "", "after-stuck", "fine");
    assert_eq!(
        publisher.get_all(1, "after-stuck"),
        vec!["fine".to_string()]
    );
}
