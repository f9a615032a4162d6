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
