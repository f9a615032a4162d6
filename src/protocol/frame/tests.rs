use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::protocol::method::BasicAck;

const HEARTBEAT: &[u8] = b"\x08\x00\x00\x00\x00\x00\x00\xce";

#[test]
fn heartbeat_known_bytes() {
    let mut out = BytesMut::new();
    encode_heartbeat(&mut out);
    assert_eq!(&out[..], HEARTBEAT);
    let frame = parse_frame(&mut out, FRAME_MIN_SIZE).unwrap().unwrap();
    assert_eq!(
        frame,
        Frame {
            kind: FRAME_HEARTBEAT,
            channel: 0,
            payload: Bytes::new()
        }
    );
    assert!(out.is_empty());
}

#[test]
fn incomplete_frame_consumes_nothing() {
    let mut whole = BytesMut::new();
    encode_method(
        &mut whole,
        3,
        &Method::from(BasicAck {
            delivery_tag: 9,
            multiple: true,
        }),
    );
    for cut in 0..whole.len() {
        let mut partial = BytesMut::from(&whole[..cut]);
        assert_eq!(
            parse_frame(&mut partial, FRAME_MIN_SIZE),
            Ok(None),
            "cut at {cut}"
        );
        assert_eq!(partial.len(), cut, "cut at {cut}: bytes were consumed");
    }
}

#[test]
fn two_frames_in_one_buffer_split_in_order() {
    let mut buf = BytesMut::new();
    encode_heartbeat(&mut buf);
    encode_body(&mut buf, 7, b"abc", FRAME_MIN_SIZE);
    buf.extend_from_slice(b"\x01\x00"); // start of a third frame
    assert_eq!(
        parse_frame(&mut buf, FRAME_MIN_SIZE).unwrap().unwrap().kind,
        FRAME_HEARTBEAT
    );
    let body = parse_frame(&mut buf, FRAME_MIN_SIZE).unwrap().unwrap();
    assert_eq!(
        (body.kind, body.channel, &body.payload[..]),
        (FRAME_BODY, 7, &b"abc"[..])
    );
    assert_eq!(parse_frame(&mut buf, FRAME_MIN_SIZE), Ok(None));
    assert_eq!(&buf[..], b"\x01\x00");
}

#[test]
fn too_large_is_refused_from_the_header_alone() {
    // Claims a 4 GiB - 1 payload; only the 7 header bytes are present.
    let mut buf = BytesMut::from(&b"\x03\x00\x01\xff\xff\xff\xff"[..]);
    let err = parse_frame(&mut buf, 131_072).unwrap_err();
    assert_eq!(
        err,
        FrameError::TooLarge {
            size: u32::MAX,
            frame_max: 131_072
        }
    );
    assert_eq!(
        err.to_string(),
        "frame of 4294967303 bytes exceeds the negotiated frame_max of 131072 bytes"
    );
    // A payload of exactly frame_max is fine, as RabbitMQ allows (rabbitpy and AMQPStorm send
    // such body frames); one more byte is not.
    let mut at_limit = BytesMut::from(&b"\x03\x00\x01\x00\x00\x10\x00"[..]); // 4096
    assert_eq!(parse_frame(&mut at_limit, 4096), Ok(None));
    let mut over = BytesMut::from(&b"\x03\x00\x01\x00\x00\x10\x01"[..]);
    assert_eq!(
        parse_frame(&mut over, 4096),
        Err(FrameError::TooLarge {
            size: 4097,
            frame_max: 4096
        })
    );
}

#[test]
fn bad_frame_end_is_reported_with_the_octet() {
    let mut buf = BytesMut::from(&b"\x08\x00\x00\x00\x00\x00\x00\x00"[..]);
    let err = parse_frame(&mut buf, FRAME_MIN_SIZE).unwrap_err();
    assert_eq!(err, FrameError::BadFrameEnd(0));
    assert_eq!(err.to_string(), "frame end octet was 0x00, expected 0xce");
}

#[test]
fn unknown_frame_type_is_refused_from_the_header() {
    // 'A' of "AMQP": a protocol header arriving where a frame was expected.
    let mut buf = BytesMut::from(&b"AMQP\x00\x00\x09\x01"[..]);
    assert_eq!(
        parse_frame(&mut buf, FRAME_MIN_SIZE),
        Err(FrameError::UnknownType(b'A'))
    );
    let mut buf = BytesMut::from(&b"\x04\x00\x00\x00\x00\x00\x00"[..]);
    let err = parse_frame(&mut buf, FRAME_MIN_SIZE).unwrap_err();
    assert_eq!(err.to_string(), "unknown frame type 4");
}

#[test]
fn header_frame_known_bytes() {
    let mut out = BytesMut::new();
    encode_header(&mut out, 1, 16, b"\x90\x00\x0atext/plain\x02");
    assert_eq!(
        &out[..],
        &b"\x02\x00\x01\x00\x00\x00\x1a\x00\x3c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10\
           \x90\x00\x0atext/plain\x02\xce"[..]
    );
}

#[test]
fn body_splits_at_frame_max() {
    let body: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    let mut out = BytesMut::new();
    encode_body(&mut out, 2, &body, 4096);
    let mut sizes = Vec::new();
    let mut joined = Vec::new();
    while let Some(frame) = parse_frame(&mut out, 4096).unwrap() {
        assert_eq!((frame.kind, frame.channel), (FRAME_BODY, 2));
        sizes.push(frame.payload.len());
        joined.extend_from_slice(&frame.payload);
    }
    assert_eq!(sizes, [4088, 4088, 1824]);
    assert_eq!(joined, body);
    assert!(out.is_empty());

    encode_body(&mut out, 2, b"", 4096);
    assert!(out.is_empty(), "an empty body has no body frames");
}

#[test]
fn body_frame_prefix_matches_encode_body() {
    let mut whole = BytesMut::new();
    encode_body(&mut whole, 5, b"0123456789abcdef", FRAME_MIN_SIZE);
    let mut parts = BytesMut::new();
    body_frame_prefix(&mut parts, 5, 16);
    parts.extend_from_slice(b"0123456789abcdef");
    parts.extend_from_slice(&[FRAME_END]);
    assert_eq!(whole, parts);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        frame_max in prop_oneof![Just(0u32), Just(4096), Just(u32::MAX), any::<u32>()],
    ) {
        let mut buf = BytesMut::from(&bytes[..]);
        // Keep parsing until an error or an incomplete frame; each Ok(Some)
        // must consume at least the 8 framing bytes.
        loop {
            let before = buf.len();
            match parse_frame(&mut buf, frame_max) {
                Ok(Some(frame)) => prop_assert_eq!(before - buf.len(), frame.payload.len() + 8),
                Ok(None) => { prop_assert_eq!(buf.len(), before); break }
                Err(_) => { prop_assert_eq!(buf.len(), before); break }
            }
        }
    }

    #[test]
    fn any_body_round_trips_through_frames(
        body in proptest::collection::vec(any::<u8>(), 0..20_000),
        frame_max in 4096u32..10_000,
    ) {
        let mut out = BytesMut::new();
        encode_body(&mut out, 1, &body, frame_max);
        let mut joined = Vec::new();
        while let Some(frame) = parse_frame(&mut out, frame_max).unwrap() {
            prop_assert!(frame.payload.len() + 8 <= frame_max as usize);
            prop_assert!(!frame.payload.is_empty());
            joined.extend_from_slice(&frame.payload);
        }
        prop_assert_eq!(joined, body);
    }
}

#[test]
fn encode_deliver_writes_what_the_generic_encoder_writes() {
    use crate::protocol::method::BasicDeliver;
    let mut generic = BytesMut::new();
    let deliver = BasicDeliver {
        consumer_tag: Bytes::from_static(b"amq.ctag-1"),
        delivery_tag: 0x0102_0304_0506_0708,
        redelivered: true,
        exchange: Bytes::from_static(b"logs"),
        routing_key: Bytes::from_static(b"kern.critical"),
    };
    encode_method(&mut generic, 7, &Method::BasicDeliver(deliver));
    let mut direct = BytesMut::new();
    let fields = DeliverFields {
        consumer_tag: b"amq.ctag-1",
        delivery_tag: 0x0102_0304_0506_0708,
        redelivered: true,
        exchange: b"logs",
        routing_key: b"kern.critical",
    };
    encode_deliver(&mut direct, 7, &fields);
    assert_eq!(direct, generic);
}
