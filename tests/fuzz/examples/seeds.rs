//! Writes the seed corpus, `corpus/<target>/seed-*`, with Warren's own encoders, in the input
//! layouts `src/lib.rs` describes. Run from tests/fuzz: `cargo run --example seeds`.
//! Seeds are small and few on purpose; libFuzzer grows its own corpus from them.

use std::fs;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use warren::message::Message;
use warren::protocol::constants::{FRAME_MIN_SIZE, PROTOCOL_HEADER};
use warren::protocol::frame::{
    body_frame_prefix, encode_body, encode_header, encode_heartbeat, encode_method,
};
use warren::protocol::method::{
    BasicAck, BasicConsume, BasicDeliver, BasicPublish, BasicQos, ConnectionStartOk,
    ConnectionTuneOk, ExchangeDeclare, QueueBind, QueueDeclare,
};
use warren::protocol::{BasicProperties, FieldTable, FieldValue, Method};
use warren::routing::ExchangeKind;
use warren::store::record::{self, BindingDef, DestName, Record};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A table with every field type, nested.
fn every_type() -> FieldTable {
    let mut inner = FieldTable::default();
    inner.insert("publisher_confirms", FieldValue::Bool(true));
    inner.insert("consumer_cancel_notify", FieldValue::Bool(false));
    let mut t = FieldTable::default();
    t.insert("t", FieldValue::Bool(true));
    t.insert("b", FieldValue::I8(-3));
    t.insert("B", FieldValue::U8(250));
    t.insert("s", FieldValue::I16(-300));
    t.insert("u", FieldValue::U16(60_000));
    t.insert("I", FieldValue::I32(-70_000));
    t.insert("i", FieldValue::U32(4_000_000_000));
    t.insert("l", FieldValue::I64(-1 << 40));
    t.insert("L", FieldValue::U64(1 << 63));
    t.insert("f", FieldValue::F32(1.5));
    t.insert("d", FieldValue::F64(-2.25));
    t.insert(
        "D",
        FieldValue::Decimal {
            scale: 2,
            value: 12345,
        },
    );
    t.insert("S", FieldValue::LongStr(b("long string")));
    t.insert(
        "A",
        FieldValue::Array(vec![
            FieldValue::I32(1),
            FieldValue::LongStr(b("two")),
            FieldValue::Array(vec![FieldValue::Void]),
        ]),
    );
    t.insert("T", FieldValue::Timestamp(1_700_000_000));
    t.insert("F", FieldValue::Table(inner));
    t.insert("V", FieldValue::Void);
    t.insert("x", FieldValue::Bytes(Bytes::from_static(b"\0\x01\xff")));
    t
}

fn client_properties() -> FieldTable {
    let mut caps = FieldTable::default();
    caps.insert("publisher_confirms", FieldValue::Bool(true));
    caps.insert("basic.nack", FieldValue::Bool(true));
    let mut t = FieldTable::default();
    t.insert("product", FieldValue::LongStr(b("pika")));
    t.insert("version", FieldValue::LongStr(b("1.3.2")));
    t.insert("capabilities", FieldValue::Table(caps));
    t
}

fn properties() -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert("x-match", FieldValue::LongStr(b("all")));
    headers.insert("n", FieldValue::I32(7));
    BasicProperties {
        content_type: Some(b("text/plain")),
        headers: Some(headers),
        delivery_mode: Some(2),
        priority: Some(5),
        correlation_id: Some(b("c-1")),
        reply_to: Some(b("amq.rabbitmq.reply-to")),
        expiration: Some(b("60000")),
        message_id: Some(b("m-1")),
        timestamp: Some(1_700_000_000),
        kind: Some(b("t")),
        user_id: Some(b("guest")),
        app_id: Some(b("app")),
        cluster_id: Some(b("")),
        ..BasicProperties::default()
    }
}

fn props_raw(p: &BasicProperties) -> Vec<u8> {
    let mut out = BytesMut::new();
    p.encode(&mut out);
    out.to_vec()
}

fn encode(m: Method) -> Vec<u8> {
    let mut out = BytesMut::new();
    m.encode(&mut out);
    out.to_vec()
}

fn methods() -> Vec<Method> {
    let mut qargs = FieldTable::default();
    qargs.insert("x-max-length", FieldValue::I32(10));
    qargs.insert("x-queue-type", FieldValue::LongStr(b("classic")));
    vec![
        ConnectionStartOk {
            client_properties: client_properties(),
            mechanism: b("PLAIN"),
            response: Bytes::from_static(b"\0guest\0guest"),
            locale: b("en_US"),
        }
        .into(),
        ConnectionTuneOk {
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat: 60,
        }
        .into(),
        BasicPublish {
            exchange: b("amq.direct"),
            routing_key: b("key"),
            mandatory: true,
            ..Default::default()
        }
        .into(),
        QueueDeclare {
            queue: b("q"),
            durable: true,
            arguments: qargs,
            ..Default::default()
        }
        .into(),
        ExchangeDeclare {
            exchange: b("logs"),
            kind: b("topic"),
            durable: true,
            ..Default::default()
        }
        .into(),
        QueueBind {
            queue: b("q"),
            exchange: b("logs"),
            routing_key: b("a.*.c"),
            ..Default::default()
        }
        .into(),
        BasicConsume {
            queue: b("q"),
            consumer_tag: b("ctag"),
            no_ack: true,
            exclusive: true,
            ..Default::default()
        }
        .into(),
        BasicQos {
            prefetch_count: 10,
            ..Default::default()
        }
        .into(),
        BasicAck {
            delivery_tag: 42,
            multiple: true,
        }
        .into(),
        BasicDeliver {
            consumer_tag: b("ctag"),
            delivery_tag: 1,
            redelivered: true,
            exchange: b(""),
            routing_key: b("q"),
        }
        .into(),
    ]
}

fn message(body: &str) -> Message {
    Message::new(
        b("ex"),
        b("key"),
        Bytes::from(props_raw(&BasicProperties {
            delivery_mode: Some(2),
            ..Default::default()
        })),
        b(body),
        true,
    )
}

fn defs() -> Vec<Record> {
    let mut args = FieldTable::default();
    args.insert("x-max-priority", FieldValue::I32(5));
    vec![
        Record::Queue {
            queue_id: 7,
            name: b("q"),
            auto_delete: false,
            arguments: args.clone(),
        },
        Record::Queue {
            queue_id: 8,
            name: b("other"),
            auto_delete: true,
            arguments: FieldTable::default(),
        },
        Record::Exchange {
            name: b("logs"),
            kind: ExchangeKind::Topic,
            auto_delete: false,
            internal: false,
            arguments: args,
        },
        Record::Bind(BindingDef {
            source: b("logs"),
            dest: DestName::Queue(b("q")),
            routing_key: b("a.*"),
            arguments: FieldTable::default(),
        }),
        Record::Unbind(BindingDef {
            source: b("logs"),
            dest: DestName::Exchange(b("x2")),
            routing_key: b("#"),
            arguments: FieldTable::default(),
        }),
        Record::ExchangeGone { name: b("x2") },
        Record::QueueUnbound { name: b("other") },
        Record::QueueGone { queue_id: 8 },
    ]
}

fn segment() -> Vec<u8> {
    let mut seg = BytesMut::new();
    for seq in 1..=4u64 {
        record::put_publish(&mut seg, 7, seq, false, false, &message(&format!("m{seq}")));
    }
    record::put_publish(&mut seg, 7, 5, true, true, &message("transient"));
    record::put_publish(&mut seg, 8, 1, false, false, &message("other"));
    record::put_ack(&mut seg, 7, 2);
    seg.to_vec()
}

fn defs_log() -> Vec<u8> {
    let mut out = BytesMut::new();
    for d in &defs() {
        record::put_def(&mut out, d);
    }
    out.to_vec()
}

/// One file of a recover input: `[what, len: u16, bytes]`.
fn file(out: &mut Vec<u8>, what: u8, bytes: &[u8]) {
    out.push(what);
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Record bodies of `stream` (framed records) in the `[len: u8, body]` layout, for records
/// of at most 255 bytes.
fn unframed(stream: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= stream.len() {
        let len = u32::from_be_bytes(stream[at..at + 4].try_into().expect("4 bytes")) as usize;
        let body = &stream[at + 8..at + 8 + len];
        if let Ok(n) = u8::try_from(len) {
            out.push(n);
            out.extend_from_slice(body);
        }
        at += 8 + len;
    }
    out
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut seeds: Vec<(&str, String, Vec<u8>)> = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        seeds.push((target, name.to_string(), bytes));
    };

    // frame: [frame-max selector, chunk seed, stream]
    let mut session = BytesMut::new();
    session.extend_from_slice(PROTOCOL_HEADER);
    for m in methods().into_iter().take(2) {
        encode_method(&mut session, 0, &m);
    }
    let mut with_header = vec![0u8, 3];
    with_header.extend_from_slice(&session);
    add("frame", "handshake", with_header);

    let mut publish = BytesMut::new();
    encode_method(&mut publish, 1, &methods()[2]);
    encode_header(&mut publish, 1, 300, &props_raw(&properties()));
    encode_body(&mut publish, 1, &[b'x'; 300], FRAME_MIN_SIZE);
    encode_heartbeat(&mut publish);
    add(
        "frame",
        "publish",
        [vec![0u8, 0x85], publish.to_vec()].concat(),
    );
    // frame-max 64: a body in 56-byte frames
    let mut small = BytesMut::new();
    encode_header(&mut small, 1, 100, &[0x10, 0, 1]);
    for chunk in [0x5au8; 100].chunks(56) {
        body_frame_prefix(&mut small, 1, chunk.len() as u32);
        small.extend_from_slice(chunk);
        small.extend_from_slice(&[0xce]);
    }
    add(
        "frame",
        "small-frames",
        [vec![2u8, 0x02], small.to_vec()].concat(),
    );
    let mut big = BytesMut::new();
    encode_method(&mut big, 3, &methods()[2]);
    encode_header(&mut big, 3, 5000, &[0x10, 0, 2]);
    encode_body(&mut big, 3, &[7u8; 5000], 131_072);
    add(
        "frame",
        "big-body",
        [vec![1u8, 0x07], big.to_vec()].concat(),
    );
    let mut deliver = BytesMut::new();
    encode_method(&mut deliver, 2, &methods()[9]);
    encode_header(&mut deliver, 2, 0, &[0, 0]);
    add(
        "frame",
        "deliver-empty",
        [vec![0u8, 0], deliver.to_vec()].concat(),
    );

    // method: a method payload
    for (i, m) in methods().into_iter().enumerate() {
        add("method", &format!("{i:02}-{}", m.name()), encode(m));
    }

    // table: a table, then anything
    let mut t = BytesMut::new();
    every_type().encode(&mut t);
    add("table", "every-type", t.to_vec());
    let mut t = BytesMut::new();
    client_properties().encode(&mut t);
    add("table", "client-properties", t.to_vec());
    add("table", "empty", vec![0, 0, 0, 0]);

    // properties: [mode, property list] (even) or [mode, header payload] (odd)
    add(
        "properties",
        "all",
        [vec![0u8], props_raw(&properties())].concat(),
    );
    add("properties", "persistent", vec![0, 0x10, 0, 2]);
    add("properties", "none", vec![0, 0, 0]);
    let mut header = vec![1u8, 0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    header.extend_from_slice(&props_raw(&properties()));
    add("properties", "content-header", header);

    // record: [mode, file bytes (even) or [len, body]... (odd)]
    add("record", "segment", [vec![0u8], segment()].concat());
    add("record", "defs", [vec![0u8], defs_log()].concat());
    add(
        "record",
        "defs-framed",
        [vec![1u8], unframed(&defs_log())].concat(),
    );

    // recover: [shards, segment size, budget, files...]
    let mut dir = vec![1u8, 0, 3];
    file(&mut dir, 0x00, &defs_log());
    file(&mut dir, 0x01, &segment());
    add("recover", "one-shard", dir);
    let mut dir = vec![2u8, 0, 1];
    file(&mut dir, 0x30, &defs_log());
    file(&mut dir, 0x35, &segment());
    file(&mut dir, 0x12, &segment()[..100]);
    add("recover", "four-to-three-shards", dir);
    let mut dir = vec![0u8, 1, 3];
    file(&mut dir, 0x40, &unframed(&defs_log()));
    file(&mut dir, 0x41, &unframed(&segment()));
    add("recover", "framed", dir);

    for (target, name, bytes) in seeds {
        let dir = root.join(target);
        fs::create_dir_all(&dir).expect("corpus dir");
        fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
    }
}
