//! Peers that try to make the broker hold memory or sockets: what they claim is never what
//! the broker allocates, and other clients carry on.

mod support;

use support::broker::Broker;
use support::raw::*;

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
    let mut other = Client::connect_with_channel(broker.port());
    other.queue_declare(1, "still-serving");
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
    let mut broker = Broker::start(&["--handshake-timeout", "1"]);
    if broker.is_external() {
        return;
    }
    let mut silent = Client::tcp(broker.port(), "silent peer");
    let mut half = Client::tcp(broker.port(), "peer that stops after the protocol header");
    half.write_all(PROTOCOL_HEADER);
    // Meanwhile a well-behaved client is served as usual.
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
    let mut stuck = Client::connect_with_channel(broker.port());
    stuck.queue_declare(1, "to-stuck");
    stuck.consume(1, "to-stuck", true, false);
    // The stuck consumer never reads again; 64 KiB messages fill its socket buffers.
    let mut publisher = Client::connect_with_channel(broker.port());
    let body = vec![b'x'; 64 * 1024];
    for _ in 0..400 {
        publisher.write_all(&Client::publish_bytes(1, "", "to-stuck", &body));
    }
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
