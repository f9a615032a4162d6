use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::protocol::frame::{encode_method, parse_frame};
use crate::protocol::table::{FieldTable, FieldValue};

fn encoded(method: &Method) -> Bytes {
    let mut out = BytesMut::new();
    method.encode(&mut out);
    out.freeze()
}

/// connection.start as a RabbitMQ 3.13 broker sends it (frame included),
/// built byte by byte from the spec, independently of our encoder.
const RABBITMQ_CONNECTION_START: &[u8] =
    b"\x01\x00\x00\x00\x00\x01\xdc\x00\x0a\x00\x0a\x00\x09\x00\x00\x01\xb7\x0ccapabilitiesF\
      \x00\x00\x00\xc7\x12publisher_confirmst\x01\x1aexchange_exchange_bindingst\x01\x0abasic.\
      nackt\x01\x16consumer_cancel_notifyt\x01\x12connection.blockedt\x01\x13consumer_prioriti\
      est\x01\x1cauthentication_failure_closet\x01\x10per_consumer_qost\x01\x0fdirect_reply_to\
      t\x01\x0ccluster_nameS\x00\x00\x00\x0drabbit@broker\x09copyrightS\x00\x00\x00<Copyright \
      (c) 2007-2024 Broadcom Inc and/or its subsidiaries\x0binformationS\x00\x00\x00\x1cSee ht\
      tps://www.rabbitmq.com\x08platformS\x00\x00\x00\x11Erlang/OTP 26.2.5\x07productS\x00\x00\
      \x00\x08RabbitMQ\x07versionS\x00\x00\x00\x063.13.7\x00\x00\x00\x0eAMQPLAIN PLAIN\x00\x00\
      \x00\x05en_US\xce";

#[test]
fn decodes_connection_start_as_rabbitmq_sends_it() {
    let mut wire = BytesMut::from(RABBITMQ_CONNECTION_START);
    let frame = parse_frame(&mut wire, 131_072)
        .expect("valid frame")
        .expect("complete frame");
    assert_eq!((frame.kind, frame.channel), (1, 0));
    assert!(wire.is_empty(), "the whole frame must be consumed");
    let payload = frame.payload.clone();
    let Method::ConnectionStart(start) = Method::decode(frame.payload).expect("decodes") else {
        panic!("expected connection.start");
    };
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    assert_eq!(&start.mechanisms[..], b"AMQPLAIN PLAIN");
    assert_eq!(&start.locales[..], b"en_US");
    let props = &start.server_properties;
    assert_eq!(props.len(), 7);
    assert_eq!(
        props.get("product").and_then(FieldValue::as_bytes),
        Some(&b"RabbitMQ"[..])
    );
    let caps = props
        .get("capabilities")
        .and_then(FieldValue::as_table)
        .expect("capabilities is a nested table");
    assert_eq!(
        caps.get("basic.nack").and_then(FieldValue::as_bool),
        Some(true)
    );
    assert_eq!(
        caps.get("per_consumer_qos").and_then(FieldValue::as_bool),
        Some(true)
    );
    // Re-encoding gives back RabbitMQ's bytes exactly.
    let again = encoded(&Method::ConnectionStart(start));
    assert_eq!(
        again, payload,
        "re-encoded connection.start differs from the wire bytes"
    );
}

#[test]
fn basic_publish_known_bytes() {
    // channel 1, exchange "", routing key "hello", mandatory=false, immediate=false
    let wire: &[u8] = b"\x01\x00\x01\x00\x00\x00\x0e\x00\x3c\x00\x28\x00\x00\x00\x05hello\x00\xce";
    let mut buf = BytesMut::from(wire);
    let frame = parse_frame(&mut buf, 4096).unwrap().unwrap();
    assert_eq!(peek_ids(&frame.payload), Some((60, 40)));
    let method = Method::decode(frame.payload).unwrap();
    let expected = Method::BasicPublish(BasicPublish {
        ticket: 0,
        exchange: Bytes::new(),
        routing_key: Bytes::from_static(b"hello"),
        mandatory: false,
        immediate: false,
    });
    assert_eq!(method, expected);
    assert!(method.has_content());
    assert_eq!(method.name(), "basic.publish");

    let mut out = BytesMut::new();
    encode_method(&mut out, 1, &expected);
    assert_eq!(&out[..], wire);
}

#[test]
fn publish_strings_share_the_frame_memory() {
    let payload = encoded(&Method::BasicPublish(BasicPublish {
        exchange: Bytes::from_static(b"amq.topic"),
        routing_key: Bytes::from_static(b"a.b.c"),
        ..Default::default()
    }));
    let range = payload.as_ptr_range();
    let Ok(Method::BasicPublish(p)) = Method::decode(payload.clone()) else {
        panic!("expected basic.publish");
    };
    assert!(range.contains(&p.exchange.as_ptr()), "exchange was copied");
    assert!(
        range.contains(&p.routing_key.as_ptr()),
        "routing key was copied"
    );
}

#[test]
fn bits_pack_per_spec_in_queue_declare() {
    let m = Method::QueueDeclare(QueueDeclare {
        queue: Bytes::from_static(b"q"),
        durable: true,
        auto_delete: true,
        ..Default::default()
    });
    // ids, ticket, "q", bits (durable=bit1, auto-delete=bit3), empty table
    assert_eq!(
        &encoded(&m)[..],
        b"\x00\x32\x00\x0a\x00\x00\x01q\x0a\x00\x00\x00\x00"
    );
}

#[test]
fn every_method_round_trips_with_defaults_and_has_unique_ids() {
    let all = all_defaults();
    assert_eq!(all.len(), 66, "method count changed");
    let mut seen = std::collections::HashSet::new();
    for m in &all {
        assert!(
            seen.insert((m.class_id(), m.method_id())),
            "duplicate ids for {}",
            m.name()
        );
        let bytes = encoded(m);
        assert_eq!(peek_ids(&bytes), Some((m.class_id(), m.method_id())));
        assert_eq!(method_name(m.class_id(), m.method_id()), Some(m.name()));
        assert_eq!(Method::decode(bytes).as_ref(), Ok(m), "{}", m.name());
        let class = class_name(m.class_id()).expect("class known");
        assert!(
            m.name().starts_with(class),
            "{} not in class {class}",
            m.name()
        );
    }
}

#[test]
fn content_methods_are_exactly_the_four() {
    let with_content: Vec<_> = all_defaults()
        .into_iter()
        .filter(Method::has_content)
        .map(|m| m.name())
        .collect();
    assert_eq!(
        with_content,
        [
            "basic.publish",
            "basic.return",
            "basic.deliver",
            "basic.get-ok"
        ]
    );
}

#[test]
fn unknown_method_reports_its_ids() {
    let err = Method::decode(Bytes::from_static(b"\x00\x3c\x00\x63")).unwrap_err();
    assert_eq!(
        err,
        MethodError::Unknown {
            class_id: 60,
            method_id: 99
        }
    );
    assert_eq!(err.to_string(), "unknown method 60/99");
    assert_eq!(err.reply_code(), 540);
    assert_eq!(
        Method::decode(Bytes::from_static(b"\x00\xff\x00\x0a")),
        Err(MethodError::Unknown {
            class_id: 255,
            method_id: 10
        })
    );
}

#[test]
fn every_truncation_of_every_method_is_a_syntax_error() {
    let mut table = FieldTable::default();
    table.insert("x-max-length", FieldValue::I32(10));
    let samples = [
        Method::QueueDeclare(QueueDeclare {
            queue: Bytes::from_static(b"orders"),
            arguments: table.clone(),
            ..Default::default()
        }),
        Method::ConnectionStartOk(ConnectionStartOk {
            client_properties: table,
            mechanism: Bytes::from_static(b"PLAIN"),
            response: Bytes::from_static(b"\0guest\0guest"),
            locale: Bytes::from_static(b"en_US"),
        }),
        Method::BasicDeliver(BasicDeliver {
            consumer_tag: Bytes::from_static(b"ctag"),
            delivery_tag: 1,
            ..Default::default()
        }),
    ];
    for m in samples.iter().chain(all_defaults().iter()) {
        let bytes = encoded(m);
        for cut in 0..bytes.len() {
            let result = Method::decode(bytes.slice(..cut));
            assert!(
                matches!(result, Err(MethodError::Syntax(_))),
                "{} cut at {cut}/{}: expected a syntax error, got {result:?}",
                m.name(),
                bytes.len()
            );
        }
    }
}

#[test]
fn trailing_bytes_are_a_syntax_error() {
    let mut out = BytesMut::new();
    Method::from(BasicAck {
        delivery_tag: 1,
        multiple: false,
    })
    .encode(&mut out);
    out.extend_from_slice(b"\x00");
    assert!(matches!(
        Method::decode(out.freeze()),
        Err(MethodError::Syntax(_))
    ));
}

#[test]
fn peek_ids_needs_four_bytes() {
    assert_eq!(peek_ids(b"\x00\x3c\x00"), None);
    assert_eq!(peek_ids(b"\x00\x3c\x00\x28rest"), Some((60, 40)));
}

#[test]
fn overlong_reply_text_is_truncated_not_corrupting() {
    let m = Method::ConnectionClose(ConnectionClose {
        reply_code: 541,
        reply_text: Bytes::from(vec![b'e'; 300]),
        class_id: 0,
        method_id: 0,
    });
    let Ok(Method::ConnectionClose(back)) = Method::decode(encoded(&m)) else {
        panic!("truncated close must still decode");
    };
    assert_eq!(back.reply_text.len(), 255);
    assert_eq!(back.method_id, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn any_method_round_trips(m in arb_method()) {
        let bytes = encoded(&m);
        prop_assert_eq!(Method::decode(bytes), Ok(m));
    }

    #[test]
    fn any_method_round_trips_through_a_frame(m in arb_method(), channel in any::<u16>()) {
        let mut out = BytesMut::new();
        encode_method(&mut out, channel, &m);
        let frame = parse_frame(&mut out, u32::MAX).unwrap().unwrap();
        prop_assert_eq!(frame.channel, channel);
        prop_assert_eq!(Method::decode(frame.payload), Ok(m));
        prop_assert!(out.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic_decode(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Method::decode(Bytes::from(bytes));
    }

    #[test]
    fn known_ids_with_arbitrary_arguments_never_panic(
        pick in 0usize..66,
        args in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let all = all_defaults();
        let m = &all[pick % all.len()];
        let mut payload = BytesMut::new();
        payload.extend_from_slice(&m.class_id().to_be_bytes());
        payload.extend_from_slice(&m.method_id().to_be_bytes());
        payload.extend_from_slice(&args);
        let _ = Method::decode(payload.freeze());
    }
}
