//! Malformed input on a raw TCP connection: the broker answers with the
//! connection.close reply code RabbitMQ 3.10 uses, and keeps serving new
//! connections afterwards.
//!
//! No client library here: frames are written by hand so that each test
//! can break exactly one rule. Every expected code below was checked
//! against RabbitMQ 3.10.8; where RabbitMQ differs from the AMQP spec's
//! suggestion, the test follows RabbitMQ and says so.

mod common;

use common::Broker;
use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const IO_TIMEOUT: Duration = Duration::from_secs(5);
const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
const FRAME_END: u8 = 0xCE;
const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_HEARTBEAT: u8 = 8;
const FRAME_MAX_BYTES: u32 = 131_072;
const CHANNEL_MAX: u16 = 2047;

const FRAME_ERROR: u16 = 501;
const CHANNEL_ERROR: u16 = 504;
const UNEXPECTED_FRAME: u16 = 505;
const NOT_ALLOWED: u16 = 530;
const NOT_IMPLEMENTED: u16 = 540;

// ---------------------------------------------------------------------------
// Frame writing
// ---------------------------------------------------------------------------

fn frame_with_end(frame_type: u8, channel: u16, payload: &[u8], end: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.push(frame_type);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.push(end);
    out
}

fn frame(frame_type: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    frame_with_end(frame_type, channel, payload, FRAME_END)
}

fn method(channel: u16, class_id: u16, method_id: u16, args: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(args.len() + 4);
    payload.extend_from_slice(&class_id.to_be_bytes());
    payload.extend_from_slice(&method_id.to_be_bytes());
    payload.extend_from_slice(args);
    frame(FRAME_METHOD, channel, &payload)
}

fn short_str(s: &str) -> Vec<u8> {
    let mut out = vec![s.len() as u8];
    out.extend_from_slice(s.as_bytes());
    out
}

fn long_str(b: &[u8]) -> Vec<u8> {
    let mut out = (b.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(b);
    out
}

fn channel_open(channel: u16) -> Vec<u8> {
    method(channel, 20, 10, &short_str(""))
}

/// queue.declare(ticket 0, queue, no flags, empty arguments).
fn queue_declare(channel: u16, queue: &str) -> Vec<u8> {
    let mut args = vec![0, 0];
    args.extend(short_str(queue));
    args.push(0);
    args.extend_from_slice(&0u32.to_be_bytes());
    method(channel, 50, 10, &args)
}

fn send(stream: &mut TcpStream, bytes: &[u8]) {
    stream
        .write_all(bytes)
        .unwrap_or_else(|e| panic!("expected to write {} bytes, got {e}", bytes.len()));
}

// ---------------------------------------------------------------------------
// Frame reading
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Frame {
    frame_type: u8,
    channel: u16,
    payload: Vec<u8>,
}

impl Frame {
    fn class_method(&self) -> Option<(u16, u16)> {
        if self.frame_type != FRAME_METHOD || self.payload.len() < 4 {
            return None;
        }
        let class_id = u16::from_be_bytes([self.payload[0], self.payload[1]]);
        let method_id = u16::from_be_bytes([self.payload[2], self.payload[3]]);
        Some((class_id, method_id))
    }
}

/// Reads one frame; `Ok(None)` on a clean EOF before its first byte.
fn read_frame(stream: &mut TcpStream) -> io::Result<Option<Frame>> {
    let mut header = [0u8; 7];
    let mut filled = 0;
    while filled < header.len() {
        match stream.read(&mut header[filled..])? {
            0 if filled == 0 => return Ok(None),
            0 => {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "EOF inside a frame header",
                ))
            }
            n => filled += n,
        }
    }
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]);
    assert!(
        size <= FRAME_MAX_BYTES,
        "expected a frame of at most {FRAME_MAX_BYTES} bytes from the server, got {size}"
    );
    let mut rest = vec![0u8; size as usize + 1];
    stream.read_exact(&mut rest)?;
    let end = rest.pop().expect("frame end octet");
    assert_eq!(
        end, FRAME_END,
        "expected frame-end 0xCE from the server, got {end:#04x}"
    );
    Ok(Some(Frame {
        frame_type: header[0],
        channel: u16::from_be_bytes([header[1], header[2]]),
        payload: rest,
    }))
}

fn expect_method(stream: &mut TcpStream, class_id: u16, method_id: u16, what: &str) -> Frame {
    let frame = read_frame(stream)
        .unwrap_or_else(|e| panic!("expected {what}, got read error {e}"))
        .unwrap_or_else(|| panic!("expected {what}, got EOF"));
    assert_eq!(
        frame.class_method(),
        Some((class_id, method_id)),
        "expected {what} ({class_id}.{method_id}), got {}",
        describe(&frame)
    );
    frame
}

/// A readable account of a frame for failure messages.
fn describe(frame: &Frame) -> String {
    let p = &frame.payload;
    match frame.class_method() {
        Some((10, 50)) | Some((20, 40)) if p.len() >= 7 => {
            let text_len = usize::from(p[6]);
            format!(
                "{}.close {} ({}) on channel {}",
                if p[1] == 10 { "connection" } else { "channel" },
                u16::from_be_bytes([p[4], p[5]]),
                String::from_utf8_lossy(&p[7..(7 + text_len).min(p.len())]),
                frame.channel
            )
        }
        Some((class_id, method_id)) => {
            format!("method {class_id}.{method_id} on channel {}", frame.channel)
        }
        None => format!("{frame:?}"),
    }
}

/// How a misbehaving connection ended.
#[derive(Debug, PartialEq)]
enum Ending {
    /// connection.close from the server.
    Close { reply_code: u16, reply_text: String },
    /// The server closed (or reset) the socket without connection.close.
    Dropped,
    /// Nothing happened within IO_TIMEOUT.
    StillOpen,
}

/// Reads past other frames (e.g. channel.open-ok) until connection.close,
/// EOF, reset or IO_TIMEOUT. On connection.close, answers close-ok.
fn connection_ending(stream: &mut TcpStream) -> Ending {
    loop {
        match read_frame(stream) {
            Ok(Some(frame)) if frame.class_method() == Some((10, 50)) => {
                let p = &frame.payload;
                assert!(
                    p.len() >= 7,
                    "expected connection.close arguments, got {p:?}"
                );
                let reply_code = u16::from_be_bytes([p[4], p[5]]);
                let text_len = usize::from(p[6]);
                let reply_text =
                    String::from_utf8_lossy(&p[7..(7 + text_len).min(p.len())]).into_owned();
                assert_eq!(
                    frame.channel, 0,
                    "expected connection.close on channel 0, got {}",
                    frame.channel
                );
                let _ = stream.write_all(&method(0, 10, 51, &[]));
                return Ending::Close {
                    reply_code,
                    reply_text,
                };
            }
            Ok(Some(_)) => continue,
            Ok(None) => return Ending::Dropped,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ending::StillOpen
            }
            Err(_) => return Ending::Dropped,
        }
    }
}

fn assert_closed_with(stream: &mut TcpStream, expected_code: u16, case: &str) {
    match connection_ending(stream) {
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

// ---------------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------------

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("expected to connect to 127.0.0.1:{port}, got {e}"));
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// What connection.tune offered.
#[derive(Debug, PartialEq)]
struct Tune {
    channel_max: u16,
    frame_max: u32,
    heartbeat: u16,
}

/// Protocol header, start-ok (PLAIN guest/guest), tune-ok with
/// `channel_max` (0 = accept the server's), connection.open "/".
fn handshake_with(port: u16, channel_max: u16) -> (TcpStream, Tune) {
    let mut stream = connect(port);
    send(&mut stream, PROTOCOL_HEADER);
    expect_method(&mut stream, 10, 10, "connection.start");

    let mut start_ok = Vec::new();
    start_ok.extend_from_slice(&0u32.to_be_bytes()); // empty client-properties
    start_ok.extend(short_str("PLAIN"));
    start_ok.extend(long_str(b"\0guest\0guest"));
    start_ok.extend(short_str("en_US"));
    send(&mut stream, &method(0, 10, 11, &start_ok));

    let tune = expect_method(&mut stream, 10, 30, "connection.tune");
    let p = &tune.payload[4..];
    let tune = Tune {
        channel_max: u16::from_be_bytes([p[0], p[1]]),
        frame_max: u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
        heartbeat: u16::from_be_bytes([p[6], p[7]]),
    };
    let negotiated_channel_max = if channel_max == 0 {
        tune.channel_max
    } else {
        channel_max
    };
    let mut tune_ok = Vec::new();
    tune_ok.extend_from_slice(&negotiated_channel_max.to_be_bytes());
    tune_ok.extend_from_slice(&tune.frame_max.to_be_bytes());
    tune_ok.extend_from_slice(&0u16.to_be_bytes()); // no heartbeats
    send(&mut stream, &method(0, 10, 31, &tune_ok));

    let mut open = short_str("/");
    open.extend(short_str(""));
    open.push(0);
    send(&mut stream, &method(0, 10, 40, &open));
    expect_method(&mut stream, 10, 41, "connection.open-ok");
    (stream, tune)
}

fn handshake(port: u16) -> TcpStream {
    handshake_with(port, 0).0
}

/// A fresh connection still completes a full handshake and opens a channel.
fn assert_fresh_handshake(port: u16, case: &str) {
    let mut stream = handshake(port);
    send(&mut stream, &channel_open(1));
    let frame = read_frame(&mut stream)
        .unwrap_or_else(|e| {
            panic!("{case}: expected channel.open-ok on a fresh connection, got {e}")
        })
        .unwrap_or_else(|| {
            panic!("{case}: expected channel.open-ok on a fresh connection, got EOF")
        });
    assert_eq!(
        frame.class_method(),
        Some((20, 11)),
        "{case}: expected channel.open-ok on a fresh connection, got {}",
        describe(&frame)
    );
    let mut close = 200u16.to_be_bytes().to_vec();
    close.extend(short_str("bye"));
    close.extend_from_slice(&[0, 0, 0, 0]);
    send(&mut stream, &method(0, 10, 50, &close));
    expect_method(&mut stream, 10, 51, "connection.close-ok");
}

/// Handshakes, opens channel 1, sends `bad`, and expects `code`.
fn assert_bad_input_on_channel_closes_with(bad: &[u8], code: u16, case: &str) {
    let broker = Broker::start(&[]);
    let mut stream = handshake(broker.port());
    send(&mut stream, &channel_open(1));
    expect_method(&mut stream, 20, 11, "channel.open-ok");
    send(&mut stream, bad);
    assert_closed_with(&mut stream, code, case);
    assert_fresh_handshake(broker.port(), case);
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn handshake_offers_rabbitmq_default_tuning() {
    let broker = Broker::start(&[]);
    let (_stream, tune) = handshake_with(broker.port(), 0);
    assert_eq!(
        tune,
        Tune {
            channel_max: CHANNEL_MAX,
            frame_max: FRAME_MAX_BYTES,
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
        let mut stream = connect(broker.port());
        send(&mut stream, header);
        let mut reply = Vec::new();
        let mut buf = [0u8; 64];
        let ended = loop {
            match stream.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => reply.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break false
                }
                Err(_) => break true, // reset after the reply
            }
        };
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
    let broker = Broker::start(&[]);
    let mut stream = handshake(broker.port());
    // RabbitMQ tolerates up to frame_max payload bytes (a "fudge" of the
    // 8 framing bytes), so go well past it.
    let mut payload = vec![0, 10, 0, 10];
    payload.resize(200_000, b'x');
    // The server may stop reading once it saw the header: ignore write errors.
    let _ = stream.write_all(&frame(FRAME_METHOD, 0, &payload));
    assert_closed_with(&mut stream, FRAME_ERROR, "frame larger than frame_max");
    assert_fresh_handshake(broker.port(), "frame larger than frame_max");
}

#[test]
fn huge_frame_size_is_refused_at_once_without_waiting_for_the_bytes() {
    let broker = Broker::start(&[]);
    let mut stream = handshake(broker.port());
    let mut header = vec![FRAME_METHOD, 0, 0];
    header.extend_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
    header.extend_from_slice(b"abc");
    let sent_at = Instant::now();
    send(&mut stream, &header);
    assert_closed_with(&mut stream, FRAME_ERROR, "frame size 0xFFFFFFF0");
    let waited = sent_at.elapsed();
    assert!(
        waited < Duration::from_secs(2),
        "expected the refusal within 2 s of the frame header, got {waited:?}"
    );
    assert_fresh_handshake(broker.port(), "frame size 0xFFFFFFF0");
}

#[test]
fn bad_frame_end_octet_closes_with_frame_error() {
    let broker = Broker::start(&[]);
    let mut stream = handshake(broker.port());
    send(
        &mut stream,
        &frame_with_end(FRAME_METHOD, 0, &[0, 20, 0, 10, 0], 0x00),
    );
    assert_closed_with(&mut stream, FRAME_ERROR, "frame-end 0x00");
    assert_fresh_handshake(broker.port(), "frame-end 0x00");
}

#[test]
fn unknown_frame_type_closes_with_frame_error() {
    let broker = Broker::start(&[]);
    let mut stream = handshake(broker.port());
    send(&mut stream, &frame(9, 0, b"abcd"));
    assert_closed_with(&mut stream, FRAME_ERROR, "frame type 9");
    assert_fresh_handshake(broker.port(), "frame type 9");
}

#[test]
fn method_on_a_channel_that_is_not_open_closes_with_channel_error() {
    let broker = Broker::start(&[]);
    let mut stream = handshake(broker.port());
    send(&mut stream, &queue_declare(1, "never-declared"));
    assert_closed_with(
        &mut stream,
        CHANNEL_ERROR,
        "queue.declare on unopened channel 1",
    );
    assert_fresh_handshake(broker.port(), "queue.declare on unopened channel 1");
}

/// The spec's answer is 540 NOT_IMPLEMENTED. RabbitMQ 3.10 differs: its
/// reader crashes on `{unknown_method_id, {99, 10}}` and drops the socket
/// without any connection.close. Both endings are accepted; any other
/// reply code, or leaving the connection open, is not.
#[test]
fn unknown_class_or_method_ends_the_connection() {
    let broker = Broker::start(&[]);
    let cases: [(&str, Vec<u8>); 2] = [
        ("unknown class 99 on channel 0", method(0, 99, 10, &[])),
        (
            "unknown method basic.99 on channel 1",
            method(1, 60, 99, &[]),
        ),
    ];
    for (case, bad) in cases {
        let mut stream = handshake(broker.port());
        send(&mut stream, &channel_open(1));
        expect_method(&mut stream, 20, 11, "channel.open-ok");
        send(&mut stream, &bad);
        match connection_ending(&mut stream) {
            Ending::Close { reply_code, .. } if reply_code == NOT_IMPLEMENTED => {}
            Ending::Dropped => {}
            other => panic!("{case}: expected connection.close {NOT_IMPLEMENTED} (or a dropped socket as RabbitMQ 3.10 does), got {other:?}"),
        }
        assert_fresh_handshake(broker.port(), case);
    }
}

/// The list we started from said 502 SYNTAX_ERROR; RabbitMQ 3.10 answers
/// 501 FRAME_ERROR ("cannot decode ...") for method arguments cut short.
#[test]
fn truncated_method_arguments_close_with_frame_error() {
    // queue.declare whose queue-name claims 5 bytes but carries 2, and
    // nothing after it.
    let bad = method(1, 50, 10, &[0, 0, 5, b'a', b'b']);
    assert_bad_input_on_channel_closes_with(&bad, FRAME_ERROR, "truncated queue.declare");
}

#[test]
fn content_body_without_a_header_closes_with_unexpected_frame() {
    let bad = frame(FRAME_BODY, 1, b"hello");
    assert_bad_input_on_channel_closes_with(&bad, UNEXPECTED_FRAME, "body frame without header");
}

#[test]
fn content_header_without_a_publish_closes_with_unexpected_frame() {
    let mut header = Vec::new();
    header.extend_from_slice(&60u16.to_be_bytes()); // class basic
    header.extend_from_slice(&0u16.to_be_bytes()); // weight
    header.extend_from_slice(&5u64.to_be_bytes()); // body size
    header.extend_from_slice(&0u16.to_be_bytes()); // no properties
    let bad = frame(FRAME_HEADER, 1, &header);
    assert_bad_input_on_channel_closes_with(
        &bad,
        UNEXPECTED_FRAME,
        "header frame without basic.publish",
    );
}

/// The list we started from said 501 FRAME_ERROR; RabbitMQ 3.10 answers
/// 505 UNEXPECTED_FRAME for a heartbeat on any channel but 0, open or not.
#[test]
fn heartbeat_on_a_non_zero_channel_closes_with_unexpected_frame() {
    assert_bad_input_on_channel_closes_with(
        &frame(FRAME_HEARTBEAT, 1, &[]),
        UNEXPECTED_FRAME,
        "heartbeat on open channel 1",
    );

    let broker = Broker::start(&[]);
    let mut stream = handshake(broker.port());
    send(&mut stream, &frame(FRAME_HEARTBEAT, 5, &[]));
    assert_closed_with(
        &mut stream,
        UNEXPECTED_FRAME,
        "heartbeat on unopened channel 5",
    );
    assert_fresh_handshake(broker.port(), "heartbeat on unopened channel 5");
}

/// RabbitMQ 3.10 does not refuse a channel *number* above channel_max: it
/// limits how many channels are open at once (see the next test). So
/// channel.open on 2048 and 65535 with channel_max 2047 succeeds.
#[test]
fn channel_number_above_channel_max_is_accepted_like_rabbitmq() {
    let broker = Broker::start(&[]);
    let mut stream = handshake(broker.port());
    for channel in [CHANNEL_MAX + 1, u16::MAX] {
        send(&mut stream, &channel_open(channel));
        let frame = expect_method(&mut stream, 20, 11, "channel.open-ok");
        assert_eq!(
            frame.channel, channel,
            "expected channel.open-ok on {channel}, got {}",
            frame.channel
        );
        let mut close = 200u16.to_be_bytes().to_vec();
        close.extend(short_str("bye"));
        close.extend_from_slice(&[0, 0, 0, 0]);
        send(&mut stream, &method(channel, 20, 40, &close));
        let frame = expect_method(&mut stream, 20, 41, "channel.close-ok");
        assert_eq!(
            frame.channel, channel,
            "expected channel.close-ok on {channel}, got {}",
            frame.channel
        );
    }
    assert_fresh_handshake(broker.port(), "channel above channel_max");
}

/// With channel_max 1 negotiated in tune-ok, a second open channel is
/// refused: RabbitMQ closes the connection with 530 NOT_ALLOWED ("number of
/// channels opened (1) has reached the negotiated channel_max (1)").
#[test]
fn opening_more_channels_than_channel_max_closes_with_not_allowed() {
    let broker = Broker::start(&[]);
    let (mut stream, _) = handshake_with(broker.port(), 1);
    send(&mut stream, &channel_open(1));
    expect_method(&mut stream, 20, 11, "channel.open-ok");
    send(&mut stream, &channel_open(2));
    assert_closed_with(
        &mut stream,
        NOT_ALLOWED,
        "second channel with channel_max 1",
    );
    assert_fresh_handshake(broker.port(), "second channel with channel_max 1");
}
