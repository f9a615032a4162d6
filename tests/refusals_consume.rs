//! What RabbitMQ 3.x refuses when consuming and acknowledging (an unknown delivery tag, an
//! exclusive consume on a queue with a consumer), with its reply code, followed by proof that
//! the broker keeps serving; and the acknowledgement behaviours clients rely on: reject, nack
//! and recover drop or requeue exactly what they name, requeued messages come back in their
//! original order flagged redelivered, and basic.get counts what is left. Written on a raw
//! socket (tests/support/raw.rs) so each test sees exactly which method and code the broker
//! sends.

mod support;

use support::raw::*;

#[test]
fn ack_of_an_unknown_delivery_tag_is_precondition_failed() {
    let what = "basic.ack of unknown delivery tag 42";
    assert_channel_refusal(1, PRECONDITION_FAILED, BASIC_ACK, what, |_, client| {
        client.ack(1, 42, false);
    });
}

#[test]
fn exclusive_consume_on_a_queue_with_a_consumer_is_access_refused() {
    let what = "an exclusive consume on a queue with a consumer";
    assert_channel_refusal(2, ACCESS_REFUSED, BASIC_CONSUME, what, |broker, client| {
        let queue = broker.queue_name("busy");
        client.queue_declare_as(1, &queue, QueueFlags::AUTO_DELETE);
        client.consume(1, &queue, true, false);
        client.open_channel(2);
        client.consume_with(2, &queue, true, true);
    });
}

#[test]
fn reject_and_nack_drop_or_requeue_and_requeued_come_back_redelivered_in_order() {
    let (_broker, mut client, queue) = broker_with_queue("nacked");
    for i in 1..=6 {
        client.publish(1, "", &queue, &format!("m{i}"));
    }
    let mut tags = Vec::new();
    for i in 1..=6 {
        let (message, count) = client
            .get(1, &queue, false)
            .unwrap_or_else(|| panic!("expected m{i}, got get-empty"));
        assert_eq!(
            (message.body.as_str(), message.redelivered, count),
            (format!("m{i}").as_str(), false, 6 - i),
            "expected m{i}, first delivery, {} left",
            6 - i
        );
        tags.push(message.delivery_tag);
    }
    client.reject(1, tags[0], false); // m1 dropped
    client.nack(1, tags[1], false, false); // m2 dropped
    client.reject(1, tags[4], true); // m5 requeued
    client.nack(1, tags[3], true, true); // m3, m4 requeued (m1, m2 already settled)
    client.ack(1, tags[5], false); // m6 done

    let mut again = Vec::new();
    while let Some((message, _)) = client.get(1, &queue, false) {
        again.push((message.body.clone(), message.redelivered));
        client.ack(1, message.delivery_tag, false);
        assert!(again.len() <= 10, "expected a bounded queue, got {again:?}");
    }
    assert_eq!(
        again,
        vec![
            ("m3".to_string(), true),
            ("m4".to_string(), true),
            ("m5".to_string(), true)
        ],
        "expected m3, m4, m5 back in their original order with redelivered=true, m1/m2 dropped, m6 acked"
    );
    client.queue_delete(1, &queue);
    client.close();
}

#[test]
fn nack_multiple_requeue_of_all_puts_them_back_in_original_order() {
    let (_broker, mut client, queue) = broker_with_queue("nack-all");
    client.qos(1, 10);
    for i in 1..=4 {
        client.publish(1, "", &queue, &format!("m{i}"));
    }
    let tag = client.consume(1, &queue, false, false);
    let mut last = 0;
    for i in 1..=4 {
        let (message, _) = client.expect_delivery();
        assert_eq!(
            (message.body.as_str(), message.redelivered),
            (format!("m{i}").as_str(), false),
            "expected m{i} delivered in publish order, for the first time"
        );
        last = message.delivery_tag;
    }
    client.cancel(1, &tag);
    client.nack(1, last, true, true);
    let mut again = Vec::new();
    while let Some((message, _)) = client.get(1, &queue, true) {
        again.push((message.body, message.redelivered));
        assert!(again.len() <= 10, "expected a bounded queue, got {again:?}");
    }
    let expected: Vec<(String, bool)> = (1..=4).map(|i| (format!("m{i}"), true)).collect();
    assert_eq!(
        again, expected,
        "expected all four back in original order with redelivered=true"
    );
    client.queue_delete(1, &queue);
    client.close();
}

#[test]
fn basic_get_reports_message_count_and_get_empty() {
    let (_broker, mut client, queue) = broker_with_queue("got");
    assert!(
        client.get(1, &queue, true).is_none(),
        "expected get-empty on an empty queue, got a message"
    );
    for i in 1..=3 {
        client.publish(1, "", &queue, &format!("m{i}"));
    }
    for (i, left) in [(1, 2), (2, 1), (3, 0)] {
        let (message, count) = client
            .get(1, &queue, true)
            .unwrap_or_else(|| panic!("expected m{i}, got get-empty"));
        assert_eq!(
            (
                message.body.as_str(),
                count,
                message.exchange.as_str(),
                message.routing_key.as_str()
            ),
            (format!("m{i}").as_str(), left, "", queue.as_str()),
            "expected get-ok for m{i} with message_count {left}"
        );
    }
    assert!(
        client.get(1, &queue, true).is_none(),
        "expected get-empty after three gets, got a message"
    );
    client.queue_delete(1, &queue);
    client.close();
}

#[test]
fn basic_recover_requeue_redelivers_unacked_in_order() {
    let (_broker, mut client, queue) = broker_with_queue("recovered");
    client.publish(1, "", &queue, "a");
    client.publish(1, "", &queue, "b");
    let tag = client.consume(1, &queue, false, false);
    for body in ["a", "b"] {
        let (message, _) = client.expect_delivery();
        assert_eq!(
            (message.body.as_str(), message.redelivered),
            (body, false),
            "expected {body} delivered in publish order, for the first time"
        );
    }
    client.send(1, BASIC_RECOVER, Args::new().bits(&[true]));
    let mut got = Vec::new();
    let mut recover_ok = false;
    while got.len() < 2 || !recover_ok {
        let incoming = client.recv();
        if incoming.id == BASIC_RECOVER_OK {
            recover_ok = true;
            continue;
        }
        let (message, _) = Message::from_deliver(&incoming);
        got.push((message.body, message.redelivered));
        client.ack(1, message.delivery_tag, false);
    }
    assert_eq!(
        got,
        vec![("a".to_string(), true), ("b".to_string(), true)],
        "expected a and b redelivered in order with redelivered=true"
    );
    client.expect_nothing(QUIET_PERIOD, "both messages acked");
    client.cancel(1, &tag);
    client.queue_delete(1, &queue);
    client.close();
}
