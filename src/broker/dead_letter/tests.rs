//! The `x-death` header and cycle detection, as RabbitMQ builds and applies them.

use bytes::{Bytes, BytesMut};

use super::*;

fn message(exchange: &str, routing_key: &str, props: BasicProperties) -> Message {
    let mut raw = BytesMut::new();
    props.encode(&mut raw);
    Message::new(
        Bytes::copy_from_slice(exchange.as_bytes()),
        Bytes::copy_from_slice(routing_key.as_bytes()),
        raw.freeze(),
        Bytes::from_static(b"body"),
        true,
    )
}

fn dead(msg: Message, reason: Reason, queue: &str, exchange: &str, rk: Option<&str>) -> Message {
    DeadLetter {
        msg,
        reason,
        vhost: Bytes::from_static(b"/"),
        queue: Bytes::copy_from_slice(queue.as_bytes()),
        target: Target {
            exchange: Bytes::copy_from_slice(exchange.as_bytes()),
            routing_key: rk.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        },
    }
    .republish(1_700_000_000)
}

fn headers(msg: &Message) -> FieldTable {
    BasicProperties::decode_bytes(msg.properties.clone())
        .expect("properties")
        .headers
        .expect("headers")
}

fn deaths(msg: &Message) -> Vec<FieldTable> {
    match headers(msg).get("x-death") {
        Some(FieldValue::Array(items)) => items
            .iter()
            .map(|d| d.as_table().expect("a table").clone())
            .collect(),
        other => panic!("expected an x-death array, got {other:?}"),
    }
}

fn str_of<'a>(t: &'a FieldTable, key: &str) -> &'a [u8] {
    t.get(key).and_then(FieldValue::as_bytes).unwrap_or(b"")
}

#[test]
fn a_first_death_records_everything_and_moves_the_expiration() {
    let props = BasicProperties {
        expiration: Some(Bytes::from_static(b"60000")),
        ..BasicProperties::default()
    };
    let out = dead(
        message("work", "task", props),
        Reason::Expired,
        "q",
        "dlx",
        None,
    );
    assert_eq!(
        (&out.exchange[..], &out.routing_key[..]),
        (&b"dlx"[..], &b"task"[..])
    );
    assert_eq!(&out.body[..], b"body");
    let decoded = BasicProperties::decode_bytes(out.properties.clone()).expect("properties");
    assert_eq!(decoded.expiration, None, "expiration is removed");
    let d = deaths(&out);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].get("count"), Some(&FieldValue::I64(1)));
    assert_eq!(str_of(&d[0], "reason"), b"expired");
    assert_eq!(str_of(&d[0], "queue"), b"q");
    assert_eq!(str_of(&d[0], "exchange"), b"work");
    assert_eq!(str_of(&d[0], "original-expiration"), b"60000");
    assert_eq!(
        d[0].get("time"),
        Some(&FieldValue::Timestamp(1_700_000_000))
    );
    assert_eq!(
        d[0].get("routing-keys"),
        Some(&FieldValue::Array(vec![FieldValue::LongStr(
            Bytes::from_static(b"task")
        )]))
    );
    let h = headers(&out);
    for (key, value) in [
        ("reason", &b"expired"[..]),
        ("queue", b"q"),
        ("exchange", b"work"),
    ] {
        assert_eq!(str_of(&h, &format!("x-first-death-{key}")), value);
        assert_eq!(str_of(&h, &format!("x-last-death-{key}")), value);
    }
}

#[test]
fn a_repeated_death_counts_up_and_moves_first_while_first_death_stays() {
    let msg = message("work", "task", BasicProperties::default());
    let once = dead(msg, Reason::Rejected, "work-q", "retry", Some("delay"));
    assert_eq!(&once.routing_key[..], b"delay");
    let back = dead(once, Reason::Expired, "delay-q", "work", Some("task"));
    let again = dead(back, Reason::Rejected, "work-q", "retry", Some("delay"));
    // The second rejection in work-q came from exchange "work", like the first.
    let d = deaths(&again);
    assert_eq!(d.len(), 2);
    assert_eq!(
        (str_of(&d[0], "queue"), str_of(&d[0], "reason")),
        (&b"work-q"[..], &b"rejected"[..])
    );
    assert_eq!(d[0].get("count"), Some(&FieldValue::I64(2)));
    assert_eq!(str_of(&d[1], "queue"), b"delay-q");
    assert_eq!(d[1].get("count"), Some(&FieldValue::I64(1)));
    let h = headers(&again);
    assert_eq!(str_of(&h, "x-first-death-reason"), b"rejected");
    assert_eq!(str_of(&h, "x-last-death-queue"), b"work-q");
}

#[test]
fn only_a_cycle_without_a_rejection_is_one() {
    let msg = message("", "a", BasicProperties::default());
    let from_a = dead(msg, Reason::Expired, "a", "", Some("b"));
    assert!(!is_cycle(b"b", &from_a), "b never saw it");
    assert!(is_cycle(b"a", &from_a), "a expired it and gets it back");
    let from_b = dead(from_a, Reason::Expired, "b", "", Some("a"));
    assert!(is_cycle(b"a", &from_b));
    let rejected = dead(
        message("", "a", BasicProperties::default()),
        Reason::Rejected,
        "a",
        "",
        Some("b"),
    );
    let expired = dead(rejected, Reason::Expired, "b", "", Some("a"));
    assert!(
        !is_cycle(b"a", &expired),
        "a client rejected it in a: a retry loop, not a cycle"
    );
    let plain = message("", "a", BasicProperties::default());
    assert!(!is_cycle(b"a", &plain));
}
