//! Frames reach the broker split and merged arbitrarily by TCP: a frame may arrive over many
//! reads, and one read may hold many frames. Both must be reassembled exactly.

mod support;

use std::time::{Duration, Instant};

use support::raw::{broker_with_queue, Client};

/// How long the broker may take to route a large burst (reached only when something is lost).
const BURST_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn publish_split_into_seven_byte_pieces_is_reassembled() {
    let (_broker, mut client, queue) = broker_with_queue("split-frames");
    let body: String = (0..300u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let bytes = Client::publish_bytes(1, "", &queue, body.as_bytes());
    client.write_in_chunks(&bytes, 7, Duration::from_millis(1));
    let (message, _) = client
        .get(1, &queue, true)
        .unwrap_or_else(|| panic!("expected the split publish in {queue}, got get-empty"));
    assert_eq!(
        message.body, body,
        "expected the body published in 7-byte pieces back intact"
    );
}

#[test]
fn thousands_of_publishes_in_one_write_all_arrive() {
    let (_broker, mut client, queue) = broker_with_queue("merged-frames");
    let mut bytes = Vec::new();
    for i in 0..2000u32 {
        bytes.extend(Client::publish_bytes(
            1,
            "",
            &queue,
            format!("m{i}").as_bytes(),
        ));
    }
    // Odd-sized pieces, so frame boundaries fall everywhere within the reads.
    client.write_in_chunks(&bytes, 65_537, Duration::from_millis(1));
    // The publishes are routed asynchronously: wait (generously) until all are queued.
    let deadline = Instant::now() + BURST_TIMEOUT;
    let mut count = client.queue_declare(1, &queue).1;
    while count < 2000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        count = client.queue_declare(1, &queue).1;
    }
    assert_eq!(
        count, 2000,
        "expected all 2000 messages of one big write in {queue}"
    );
    for i in 0..2000u32 {
        let (message, _) = client
            .get(1, &queue, true)
            .unwrap_or_else(|| panic!("expected message m{i}, got get-empty"));
        assert_eq!(message.body, format!("m{i}"), "expected publish order kept");
    }
}
