//! Malformed input on a raw TCP connection: the broker answers with the connection.close
//! reply code RabbitMQ 3.10 uses, and keeps serving new connections afterwards.
//!
//! No client library here: frames are written by hand (tests/support/raw.rs) so that each
//! test can break exactly one rule. Every expected code below was checked against RabbitMQ
//! 3.10.8; where RabbitMQ differs from the AMQP spec's suggestion, the test follows RabbitMQ
//! and says so.

mod support;

use std::time::{Duration, Instant};

use support::raw::*;
use support::Broker;

/// RabbitMQ's default channel_max.
const CHANNEL_MAX: u16 = 2047;

fn assert_closed_with(client: &mut Client, expected_code: u16, case: &str) {
    match client.connection_ending() {
        Ending::Close {
            reply_code,
            reply_text,
        } => assert_eq!(
            reply_code, expected_code,
            "{case}: expected connection.close {expected_code}, got {reply_code} ({reply_text})"
        ),
        other => panic!("{case}: expected connection.close {expected_code}, got {other:?}"),
    }
}

/// A fresh connection still completes a full handshake, opens a channel and closes cleanly.
fn assert_fresh_handshake(port: u16, case: &str) {
    let mut client = Client::connect_as(port, &format!("a fresh connection after {case}"));
    client.open_channel(1);
    client.close();
}

/// On a fresh broker and connection (with channel 1 open if `channel_open`), sends `bad`,
/// expects connection.close `code`, and checks that a new connection works.
fn assert_bad_input_closes_with(bad: &[u8], channel_open: bool, code: u16, case: &str) {
    let broker = Broker::start(&[]);
    let mut client = Client::connect(broker.port());
    if channel_open {
        client.open_channel(1);
    }
    // The broker may stop reading once it has seen enough: a failed write is no failure
    // (the connection.close it sends is what counts).
    let _ = client.try_write_all(bad);
    assert_closed_with(&mut client, code, case);
    assert_fresh_handshake(broker.port(), case);
}

#[test]
fn handshake_offers_rabbitmq_default_tuning() {
    let broker = Broker::start(&[]);
    let tune = Client::tcp(broker.port(), "the client").handshake(None);
    assert_eq!(
        tune,
        Tune {
            channel_max: CHANNEL_MAX,
            frame_max: FRAME_MAX,
            heartbeat: 60
        },
        "expected RabbitMQ's default connection.tune"
    );
}

#[test]
fn wrong_protocol_header_is_answered_with_the_supported_header_then_closed() {
    let broker = Broker::start(&[]);
    for header in [
        &b"AMQP\x01\x01\x00\x0a"[..],
        b"AMQP\x00\x00\x09\x02",
        b"GET / HTTP/1.1\r\n\r\n",
    ] {
        let mut client = Client::tcp(broker.port(), "the client");
        client.write_all(header);
        let (reply, ended) = client.read_until_closed();
        assert_eq!(
            reply,
            PROTOCOL_HEADER.to_vec(),
            "expected the server's protocol header in reply to {header:?}, got {reply:?}"
        );
        assert!(
            ended,
            "expected the connection closed after the header reply to {header:?}, got it open"
        );
    }
    assert_fresh_handshake(broker.port(), "wrong protocol header");
}

#[test]
fn frame_larger_than_frame_max_closes_with_frame_error() {
    // RabbitMQ tolerates up to frame_max payload bytes (a "fudge" of the 8 framing bytes), so
    // go well past it.
    let mut payload = vec![0, 10, 0, 10];
    payload.resize(200_000, b'x');
    let bad = frame(FRAME_METHOD, 0, &payload);
    assert_bad_input_closes_with(&bad, false, FRAME_ERROR, "frame larger than frame_max");
}

#[test]
fn huge_frame_size_is_refused_at_once_without_waiting_for_the_bytes() {
    let broker = Broker::start(&[]);
    let mut client = Client::connect(broker.port());
    let mut header = vec![FRAME_METHOD, 0, 0];
    header.extend_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
    header.extend_from_slice(b"abc");
    let sent_at = Instant::now();
    client.write_all(&header);
    assert_closed_with(&mut client, FRAME_ERROR, "frame size 0xFFFFFFF0");
    // Were the broker waiting for the 4 GiB announced, it would never answer; 2 s only tells
    // "at once" from "never".
    let waited = sent_at.elapsed();
    assert!(
        waited < Duration::from_secs(2),
        "expected the refusal within 2 s of the frame header, got {waited:?}"
    );
    assert_fresh_handshake(broker.port(), "frame size 0xFFFFFFF0");
}

#[test]
fn bad_frame_end_octet_closes_with_frame_error() {
    let bad = frame_with_end(FRAME_METHOD, 0, &[0, 20, 0, 10, 0], 0x00);
    assert_bad_input_closes_with(&bad, false, FRAME_ERROR, "frame-end 0x00");
}

#[test]
fn unknown_frame_type_closes_with_frame_error() {
    let bad = frame(9, 0, b"abcd");
    assert_bad_input_closes_with(&bad, false, FRAME_ERROR, "frame type 9");
}

#[test]
fn method_on_a_channel_that_is_not_open_closes_with_channel_error() {
    let declare = queue_declare_args("never-declared", QueueFlags::PLAIN);
    let bad = method_frame(1, QUEUE_DECLARE, declare);
    let case = "queue.declare on unopened channel 1";
    assert_bad_input_closes_with(&bad, false, CHANNEL_ERROR, case);
}

/// The spec's answer is 540 NOT_IMPLEMENTED. RabbitMQ 3.10 differs: its reader crashes on
/// `{unknown_method_id, {99, 10}}` and drops the socket without any connection.close. Both
/// endings are accepted; any other reply code, or leaving the connection open, is not.
#[test]
fn unknown_class_or_method_ends_the_connection() {
    let broker = Broker::start(&[]);
    let cases = [
        ("unknown class 99 on channel 0", 0, (99, 10)),
        ("unknown method basic.99 on channel 1", 1, (60, 99)),
    ];
    for (case, channel, id) in cases {
        let mut client = Client::connect_with_channel(broker.port());
        client.send(channel, id, Args::new());
        match client.connection_ending() {
            Ending::Close { reply_code, .. } if reply_code == NOT_IMPLEMENTED => {}
            Ending::Dropped => {}
            other => panic!("{case}: expected connection.close {NOT_IMPLEMENTED} (or a dropped socket as RabbitMQ 3.10 does), got {other:?}"),
        }
        assert_fresh_handshake(broker.port(), case);
    }
}

/// The list we started from said 502 SYNTAX_ERROR; RabbitMQ 3.10 answers 501 FRAME_ERROR
/// ("cannot decode ...") for method arguments cut short.
#[test]
fn truncated_method_arguments_close_with_frame_error() {
    // queue.declare whose queue-name claims 5 bytes but carries 2, and nothing after it.
    let bad = method_frame(1, QUEUE_DECLARE, Args(vec![0, 0, 5, b'a', b'b']));
    assert_bad_input_closes_with(&bad, true, FRAME_ERROR, "truncated queue.declare");
}

#[test]
fn content_body_without_a_header_closes_with_unexpected_frame() {
    let bad = frame(FRAME_BODY, 1, b"hello");
    let case = "body frame without header";
    assert_bad_input_closes_with(&bad, true, UNEXPECTED_FRAME, case);
}

#[test]
fn content_header_without_a_publish_closes_with_unexpected_frame() {
    let bad = frame(FRAME_HEADER, 1, &content_header(5, None));
    let case = "header frame without basic.publish";
    assert_bad_input_closes_with(&bad, true, UNEXPECTED_FRAME, case);
}

/// The list we started from said 501 FRAME_ERROR; RabbitMQ 3.10 answers 505
/// UNEXPECTED_FRAME for a heartbeat on any channel but 0, open or not.
#[test]
fn heartbeat_on_a_non_zero_channel_closes_with_unexpected_frame() {
    let on_open = frame(FRAME_HEARTBEAT, 1, &[]);
    assert_bad_input_closes_with(
        &on_open,
        true,
        UNEXPECTED_FRAME,
        "heartbeat on open channel 1",
    );
    let on_unopened = frame(FRAME_HEARTBEAT, 5, &[]);
    let case = "heartbeat on unopened channel 5";
    assert_bad_input_closes_with(&on_unopened, false, UNEXPECTED_FRAME, case);
}

/// RabbitMQ 3.10 does not refuse a channel *number* above channel_max: it limits how many
/// channels are open at once (see the next test). So channel.open on 2048 and 65535 with
/// channel_max 2047 succeeds (and the replies come on that channel).
#[test]
fn channel_number_above_channel_max_is_accepted_like_rabbitmq() {
    let broker = Broker::start(&[]);
    let mut client = Client::connect(broker.port());
    for channel in [CHANNEL_MAX + 1, u16::MAX] {
        client.open_channel(channel);
        client.close_channel(channel);
    }
    assert_fresh_handshake(broker.port(), "channel above channel_max");
}

/// With channel_max 1 negotiated in tune-ok, a second open channel is refused: RabbitMQ
/// closes the connection with 530 NOT_ALLOWED ("number of channels opened (1) has reached
/// the negotiated channel_max (1)").
#[test]
fn opening_more_channels_than_channel_max_closes_with_not_allowed() {
    let broker = Broker::start(&[]);
    let mut client = Client::tcp(broker.port(), "the client");
    client.handshake(Some(1));
    client.open_channel(1);
    client.send(2, CHANNEL_OPEN, Args::new().short(""));
    assert_closed_with(
        &mut client,
        NOT_ALLOWED,
        "second channel with channel_max 1",
    );
    assert_fresh_handshake(broker.port(), "second channel with channel_max 1");
}
