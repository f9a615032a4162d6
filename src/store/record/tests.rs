use super::*;
use crate::protocol::FieldValue;

fn message() -> Message {
    Message::new(
        Bytes::from_static(b"ex"),
        Bytes::from_static(b"key"),
        Bytes::from_static(b"\x10\x00\x02"),
        Bytes::from_static(b"hello"),
        true,
    )
}

#[test]
fn records_round_trip() {
    let mut args = FieldTable::default();
    args.insert("x-max-priority", FieldValue::I32(5));
    let defs = [
        Record::Queue {
            queue_id: 7,
            vhost: Bytes::from_static(b"/"),
            name: Bytes::from_static(b"q"),
            auto_delete: true,
            arguments: args.clone(),
        },
        Record::Exchange {
            vhost: Bytes::from_static(b"/"),
            name: Bytes::from_static(b"logs"),
            kind: ExchangeKind::Topic,
            auto_delete: false,
            internal: true,
            arguments: args,
        },
        Record::Bind(BindingDef {
            vhost: Bytes::from_static(b"/"),
            source: Bytes::from_static(b"logs"),
            dest: DestName::Queue(Bytes::from_static(b"q")),
            routing_key: Bytes::from_static(b"a.*"),
            arguments: FieldTable::default(),
        }),
    ];
    let mut out = BytesMut::new();
    let n = put_publish(&mut out, 7, 42, true, false, &message());
    assert_eq!(n, out.len());
    put_ack(&mut out, 7, 42);
    for d in &defs {
        put_def(&mut out, d);
    }
    let mut buf = out.freeze();
    let mut seen = Vec::new();
    loop {
        match next(&buf) {
            Next::Record(r, len) => {
                seen.push(r);
                buf = buf.slice(len..);
            }
            Next::End => break,
            Next::Torn => panic!("expected intact records"),
        }
    }
    assert_eq!(seen.len(), 5);
    match &seen[0] {
        Record::Publish {
            queue_id: 7,
            seq: 42,
            redelivered: true,
            transient: false,
            msg,
        } => {
            assert_eq!(&msg.body[..], b"hello");
            assert_eq!(&msg.routing_key[..], b"key");
            assert_eq!(&msg.properties[..], b"\x10\x00\x02");
        }
        other => panic!("expected the publish, got {other:?}"),
    }
    assert!(matches!(
        seen[1],
        Record::Ack {
            queue_id: 7,
            seq: 42
        }
    ));
    assert!(
        matches!(&seen[4], Record::Bind(b) if b == match &defs[2] { Record::Bind(b) => b, _ => unreachable!() })
    );
}

#[test]
fn policy_records_round_trip() {
    let mut definition = FieldTable::default();
    definition.insert("max-length", FieldValue::I64(10));
    let policy = PolicyDef {
        vhost: Bytes::from_static(b"/"),
        name: Bytes::from_static(b"cap"),
        operator: true,
        pattern: Bytes::from_static(b"^work\\."),
        apply_to: Bytes::from_static(b"queues"),
        priority: -3,
        definition,
    };
    let mut out = BytesMut::new();
    put_def(&mut out, &Record::Policy(policy.clone()));
    let gone = Record::PolicyGone {
        vhost: Bytes::from_static(b"/"),
        name: Bytes::from_static(b"cap"),
        operator: false,
    };
    put_def(&mut out, &gone);
    let user = UserDef {
        name: Bytes::from_static(b"alice"),
        password_hash: Bytes::from_static(b"\x01\x02\x03\x04digest"),
        hashing: Bytes::from_static(b"rabbit_password_hashing_sha256"),
        tags: Bytes::from_static(b"administrator,monitoring"),
    };
    put_def(&mut out, &Record::User(user.clone()));
    let permission = PermissionDef {
        user: Bytes::from_static(b"alice"),
        vhost: Bytes::from_static(b"/"),
        configure: Bytes::from_static(b"^alice-"),
        write: Bytes::from_static(b".*"),
        read: Bytes::new(),
    };
    put_def(&mut out, &Record::Permission(permission.clone()));
    let buf = out.freeze();
    let mut rest = buf.clone();
    for _ in 0..2 {
        let Next::Record(_, len) = next(&rest) else {
            panic!("expected a record");
        };
        rest = rest.slice(len..);
    }
    let Next::Record(Record::User(u), len) = next(&rest) else {
        panic!("expected the user");
    };
    assert_eq!(u, user);
    assert!(
        matches!(next(&rest.slice(len..)), Next::Record(Record::Permission(p), _) if p == permission)
    );
    let Next::Record(Record::Policy(read), len) = next(&buf) else {
        panic!("expected the policy");
    };
    assert_eq!(read, policy);
    assert!(matches!(
        next(&buf.slice(len..)),
        Next::Record(Record::PolicyGone { operator: false, ref name, .. }, _) if name == "cap"
    ));
}

#[test]
fn a_torn_or_corrupt_tail_is_detected() {
    let mut out = BytesMut::new();
    put_publish(&mut out, 1, 1, false, false, &message());
    let whole = out.len();
    put_publish(&mut out, 1, 2, false, false, &message());
    let bytes = out.freeze();
    // Cut in the middle of the second record.
    let torn = bytes.slice(..whole + 5);
    let Next::Record(_, len) = next(&torn) else {
        panic!("expected the first record intact");
    };
    assert!(matches!(next(&torn.slice(len..)), Next::Torn));
    // Flip a byte of the second record's body.
    let mut corrupt = BytesMut::from(&bytes[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xFF;
    let corrupt = corrupt.freeze();
    assert!(matches!(next(&corrupt.slice(whole..)), Next::Torn));
    // A claimed length of 4 GiB is a torn tail, not an allocation.
    let huge = Bytes::from_static(b"\xff\xff\xff\xff\0\0\0\0\x01");
    assert!(matches!(next(&huge), Next::Torn));
}

#[test]
fn bytes_after_a_records_fields_make_it_corrupt() {
    let mut out = BytesMut::new();
    put_ack(&mut out, 1, 2);
    let mut framed = BytesMut::new();
    let body = &out[HEADER_BYTES..];
    frame(&mut framed, |b| {
        b.extend_from_slice(body);
        b.extend_from_slice(b"extra");
    });
    assert!(matches!(next(&framed.freeze()), Next::Torn));
}

#[test]
fn a_seq_no_queue_can_reach_is_corrupt() {
    let mut out = BytesMut::new();
    put_publish(&mut out, 1, MAX_SEQ, false, false, &message());
    assert!(matches!(next(&out.split().freeze()), Next::Record(..)));
    put_publish(&mut out, 1, MAX_SEQ + 1, false, false, &message());
    assert!(
        matches!(next(&out.split().freeze()), Next::Torn),
        "a publish with seq past MAX_SEQ must read as corrupt"
    );
    put_ack(&mut out, 1, u64::MAX);
    assert!(
        matches!(next(&out.split().freeze()), Next::Torn),
        "an ack with seq past MAX_SEQ must read as corrupt"
    );
}

/// Every record of a resource in a vhost other than `/` carries it; records of `/` are the
/// bytes they were before vhosts existed (no vhost field), and read back as `/`.
#[test]
fn vhost_records_round_trip_and_default_vhost_records_keep_their_old_bytes() {
    let v = |s: &'static str| Bytes::from_static(s.as_bytes());
    let in_vhost = |vhost: &'static str| {
        vec![
            Record::Queue {
                queue_id: 1,
                vhost: v(vhost),
                name: v("q"),
                auto_delete: false,
                arguments: FieldTable::default(),
            },
            Record::Exchange {
                vhost: v(vhost),
                name: v("x"),
                kind: ExchangeKind::Direct,
                auto_delete: false,
                internal: false,
                arguments: FieldTable::default(),
            },
            Record::ExchangeGone {
                vhost: v(vhost),
                name: v("x"),
            },
            Record::Bind(BindingDef {
                vhost: v(vhost),
                source: v("x"),
                dest: DestName::Queue(v("q")),
                routing_key: v("k"),
                arguments: FieldTable::default(),
            }),
            Record::QueueUnbound {
                vhost: v(vhost),
                name: v("q"),
            },
            Record::Vhost(VhostDef {
                name: v(vhost),
                description: v("for tests"),
                tags: v("a,b"),
            }),
            Record::VhostGone { name: v(vhost) },
        ]
    };
    for vhost in ["/", "team-a"] {
        for record in in_vhost(vhost) {
            let mut out = BytesMut::new();
            let len = put_def(&mut out, &record);
            let Next::Record(back, read) = next(&out.freeze()) else {
                panic!("expected {record:?} to read back");
            };
            assert_eq!(read, len);
            assert_eq!(format!("{back:?}"), format!("{record:?}"));
        }
    }
    // A queue record of `/` ends with its arguments, as before: 8 header bytes, kind, id,
    // name, flags, an empty table.
    let mut out = BytesMut::new();
    let len = put_def(&mut out, &in_vhost("/")[0]);
    assert_eq!(len, 8 + 1 + 8 + 2 + 1 + 4);
}
