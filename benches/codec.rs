//! Hot-path codec costs, per message.
//!
//! Budget: at 1 M msg/s a core has 1 µs per message for everything; the codec
//! should take a small fraction of it. `publish_parse` is what a connection
//! does for each published message (three frames, method, header);
//! `deliver_encode` is what it does for each delivery.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use warren::protocol::frame::{encode_body, encode_header, encode_method};
use warren::protocol::method::{BasicDeliver, BasicPublish};
use warren::protocol::{
    parse_frame, BasicProperties, ContentHeader, FieldTable, FieldValue, Method,
};

const FRAME_MAX: u32 = 131_072;
const BODY: &[u8; 16] = b"0123456789abcdef";

fn properties_raw() -> Bytes {
    let mut out = BytesMut::new();
    BasicProperties {
        content_type: Some(Bytes::from_static(b"application/octet-stream")),
        delivery_mode: Some(2),
        ..Default::default()
    }
    .encode(&mut out);
    out.freeze()
}

fn publish_wire() -> Vec<u8> {
    let mut out = BytesMut::new();
    let publish = Method::BasicPublish(BasicPublish {
        exchange: Bytes::from_static(b"amq.direct"),
        routing_key: Bytes::from_static(b"orders.created"),
        ..Default::default()
    });
    encode_method(&mut out, 1, &publish);
    encode_header(&mut out, 1, BODY.len() as u64, &properties_raw());
    encode_body(&mut out, 1, BODY, FRAME_MAX);
    out.to_vec()
}

/// client-properties roughly as the Java/pika clients send them.
fn client_properties() -> Bytes {
    let mut caps = FieldTable::default();
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
    ] {
        caps.insert(cap, FieldValue::Bool(true));
    }
    let s = |v: &'static str| FieldValue::LongStr(Bytes::from_static(v.as_bytes()));
    let mut t = FieldTable::default();
    t.insert("product", s("RabbitMQ"));
    t.insert("version", s("5.20.0"));
    t.insert("platform", s("Java"));
    t.insert("copyright", s("Copyright (c) 2007-2023 Broadcom Inc."));
    t.insert("information", s("Licensed under the MPL."));
    t.insert("capabilities", FieldValue::Table(caps));
    t.insert("connection_name", s("orders-service-1"));
    let mut out = BytesMut::new();
    t.encode(&mut out);
    out.freeze()
}

fn codec(c: &mut Criterion) {
    let wire = publish_wire();
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));

    let mut buf = BytesMut::with_capacity(4096);
    group.bench_function("publish_parse", |b| {
        b.iter(|| {
            // Stands in for the socket read that fills the buffer.
            buf.extend_from_slice(&wire);
            let method = parse_frame(&mut buf, FRAME_MAX).unwrap().unwrap();
            let header = parse_frame(&mut buf, FRAME_MAX).unwrap().unwrap();
            let body = parse_frame(&mut buf, FRAME_MAX).unwrap().unwrap();
            let method = Method::decode(method.payload).unwrap();
            let header = ContentHeader::decode(header.payload).unwrap();
            black_box((method, header, body.payload))
        })
    });

    let raw = properties_raw();
    let deliver = Method::BasicDeliver(BasicDeliver {
        consumer_tag: Bytes::from_static(b"amq.ctag-3sTQeCpvQqFv1pBHgbTnZw"),
        delivery_tag: 42,
        redelivered: false,
        exchange: Bytes::from_static(b"amq.direct"),
        routing_key: Bytes::from_static(b"orders.created"),
    });
    let mut out = BytesMut::with_capacity(4096);
    group.bench_function("deliver_encode", |b| {
        b.iter(|| {
            out.clear();
            encode_method(&mut out, 1, black_box(&deliver));
            encode_header(&mut out, 1, BODY.len() as u64, black_box(&raw));
            encode_body(&mut out, 1, black_box(BODY), FRAME_MAX);
            black_box(out.len())
        })
    });

    let props = client_properties();
    group.bench_function("client_properties_decode", |b| {
        b.iter(|| {
            let mut buf = black_box(&props).clone();
            black_box(FieldTable::decode(&mut buf).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
