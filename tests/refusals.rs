//! Every refusal RabbitMQ 3.x makes for exchanges, queues, publishing,
//! consuming, confirms and transactions, with its reply code, followed by
//! proof that the broker keeps serving (a new channel or connection
//! works); and the routing, acknowledgement and confirm behaviours that
//! clients rely on. Written on a raw socket (tests/support/raw_amqp.rs) so
//! each test sees exactly which method and code the broker sends.

mod common;
#[path = "support/raw_amqp.rs"]
mod raw_amqp;

use common::Broker;
use raw_amqp::*;
use std::time::Duration;

const ACCESS_REFUSED: u16 = 403;
const NOT_FOUND: u16 = 404;
const RESOURCE_LOCKED: u16 = 405;
const PRECONDITION_FAILED: u16 = 406;
const COMMAND_INVALID: u16 = 503;
const NOT_IMPLEMENTED: u16 = 540;
const NO_ROUTE: u16 = 312;
const QUIET: Duration = Duration::from_millis(300);

/// Proves the broker still serves: a fresh channel on `client` declares a
/// queue, and a fresh connection does too.
fn assert_still_serving(broker: &Broker, client: &mut Client, channel: u16) {
    client.open_channel(channel);
    let queue = broker.queue_name("still-serving");
    client.queue_declare_with(channel, &queue, false, false, false, true);
    client.expect_declare_ok(channel);
    let mut fresh = Client::connect(broker.port());
    fresh.open_channel(1);
    fresh.queue_declare_with(1, &queue, false, false, false, true);
    fresh.expect_declare_ok(1);
    fresh.close();
}

fn assert_channel_refused(
    client: &mut Client,
    channel: u16,
    code: u16,
    failing: (u16, u16),
    what: &str,
) {
    let (got_code, class, method) = client.expect_channel_close(channel);
    assert_eq!(
        (got_code, (class, method)),
        (code, failing),
        "expected channel.close {code} for {what} (failing method {}.{}), got {got_code} for {class}.{method}",
        failing.0,
        failing.1
    );
}

fn assert_connection_refused(client: &mut Client, code: u16, failing: (u16, u16), what: &str) {
    let (got_code, class, method) = client.expect_connection_close();
    assert_eq!(
        (got_code, (class, method)),
        (code, failing),
        "expected connection.close {code} for {what} (failing method {}.{}), got {got_code} for {class}.{method}",
        failing.0,
        failing.1
    );
}

/// A connection with channel 1 open.
fn open(broker: &Broker) -> Client {
    let mut client = Client::connect(broker.port());
    client.open_channel(1);
    client
}

// ---------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------

#[test]
fn exchange_declare_with_amq_prefix_is_access_refused() {
    let broker = Broker::start(&[]);
    let mut client = open(&broker);
    client.exchange_declare_with(1, "amq.warren-test", "direct", false, false, false);
    assert_channel_refused(
        &mut client,
        1,
        ACCESS_REFUSED,
        EXCHANGE_DECLARE,
        "an amq.* name",
    );
    assert_still_serving(&broker, &mut client, 2);
    client.close();
}

#[test]
fn default_exchange_cannot_be_bound_unbound_or_deleted() {
    let broker = Broker::start(&[]);
    let mut client = open(&broker);
    let queue = broker.queue_name("default-bind");
    client.queue_declare_with(1, &queue, false, false, false, true);
    client.expect_declare_ok(1);

    client.queue_bind_with(1, &queue, "", "key", &[]);
    assert_channel_refused(
        &mut client,
        1,
        ACCESS_REFUSED,
        QUEUE_BIND,
        "queue.bind to the default exchange",
    );

    client.open_channel(2);
    client.queue_unbind_with(2, &queue, "", &queue);
    assert_channel_refused(
        &mut client,
        2,
        ACCESS_REFUSED,
        QUEUE_UNBIND,
        "queue.unbind from the default exchange",
    );

    client.open_channel(3);
    client.send(
        3,
        EXCHANGE_DELETE,
        Args::new().u16(0).short("").bits(&[false, false]),
    );
    assert_channel_refused(
        &mut client,
        3,
        ACCESS_REFUSED,
        EXCHANGE_DELETE,
        "exchange.delete of the default exchange",
    );

    // The default exchange still routes by queue name.
    client.open_channel(4);
    client.publish(4, "", &queue, "still routed");
    let (message, _) = client
        .get(4, &queue, true)
        .unwrap_or_else(|| panic!("expected the message in {queue}, got get-empty"));
    assert_eq!(
        message.body, "still routed",
        "expected the default exchange to still route"
    );
    assert_still_serving(&broker, &mut client, 5);
    client.close();
}

#[test]
fn exchange_declare_with_unknown_type_is_a_command_invalid_connection_error() {
    let broker = Broker::start(&[]);
    let mut client = open(&broker);
    let exchange = broker.queue_name("unknown-type");
    client.exchange_declare_with(1, &exchange, "x-no-such-type", false, false, false);
    assert_connection_refused(
        &mut client,
        COMMAND_INVALID,
        EXCHANGE_DECLARE,
        "an unknown exchange type",
    );
    let mut fresh = open(&broker);
    assert_still_serving(&broker, &mut fresh, 2);
    fresh.close();
}

#[test]
fn exchange_redeclare_with_another_type_is_precondition_failed() {
    let broker = Broker::start(&[]);
    let mut client = open(&broker);
    let exchange = broker.queue_name("typed");
    client.exchange_declare(1, &exchange, "direct");
    client.exchange_declare_with(1, &exchange, "fanout", false, false, false);
    assert_channel_refused(
        &mut client,
        1,
        PRECONDITION_FAILED,
        EXCHANGE_DECLARE,
        "a redeclare as fanout",
    );
    client.open_channel(2);
    client.exchange_declare(2, &exchange, "direct");
    assert_still_serving(&broker, &mut client, 3);
    client.send(
        2,
        EXCHANGE_DELETE,
        Args::new().u16(0).short(&exchange).bits(&[false, false]),
    );
    client.expect(2, EXCHANGE_DELETE_OK);
    client.close();
}

#[test]
fn queue_redeclare_with_another_durable_flag_is_precondition_failed() {
    let broker = Broker::start(&[]);
    let mut client = open(&broker);
    let queue = broker.queue_name("durable-flag");
    client.queue_declare_with(1, &queue, false, false, false, false);
    client.expect_declare_ok(1);
    client.queue_declare_with(1, &queue, false, true, false, false);
    assert_channel_refused(
        &mut client,
        1,
        PRECONDITION_FAILED,
        QUEUE_DECLARE,
        "a redeclare as durable",
    );
    assert_still_serving(&broker, &mut client, 2);
    client.send(
        2,
        QUEUE_DELETE,
        Args::new()
            .u16(0)
            .short(&queue)
            .bits(&[false, false, false]),
    );
    client.expect(2, QUEUE_DELETE_OK);
    client.close();
}

#[test]
fn publish_to_a_missing_exchange_closes_the_channel_with_not_found() {
    let broker = Broker::start(&[]);
    let mut client = open(&broker);
    let exchange = broker.queue_name("no-such-exchange");
    client.publish(1, &exchange, "key", "lost");
    assert_channel_refused(
        &mut client,
        1,
        NOT_FOUND,
        BASIC_PUBLISH,
        "a publish to a missing exchange",
    );
    assert_still_serving(&broker, &mut client, 2);
    client.close();
}

#[test]
fn publish_to_an_internal_exchange_is_access_refused() {
    let broker = Broker::start(&[]);
    let mut client = open(&broker);
    let exchange = broker.queue_name("internal");
    client.exchange_declare_with(1, &exchange, "fanout", false, true, true);
    client.expect(1, EXCHANGE_DECLARE_OK);
    client.publish(1, &exchange, "", "not allowed");
    assert_channel_refused(
        &mut client,
        1,
        ACCESS_REFUSED,
        BASIC_PUBLISH,
        "a publish to an internal exchange",
    );
    assert_still_serving(&broker, &mut client, 2);
    client.close();
}

#[test]
fn publish_with_immediate_is_not_implemented() {
    let broker = Broker::start(&[]);
    let mut client = open(&broker);
    let queue = broker.queue_name("immediate");
    client.queue_declare_with(1, &queue, false, false, false, true);
    client.expect_declare_ok(1);
    client.publish_with(1, "", &queue, false, true, None, "immediate");
    assert_connection_refused(
        &mut client,
        NOT_IMPLEMENTED,
        BASIC_PUBLISH,
        "immediate=true",
    );
    let mut fresh = open(&broker);
    assert_still_serving(&broker, &mut fresh, 2);
    fresh.close();
}

#[test]
fn exclusive_queue_is_resource_locked_for_another_connection() {
    let broker = Broker::start(&[]);
    let mut owner = open(&broker);
    let queue = broker.queue_name("exclusive");
    owner.queue_declare_with(1, &queue, false, false, true, false);
    owner.expect_declare_ok(1);

    let mut other = open(&broker);
    other.consume_with(1, &queue, false, false);
    assert_channel_refused(
        &mut other,
        1,
        RESOURCE_LOCKED,
        BASIC_CONSUME,
        "basic.consume on another connection's exclusive queue",
    );
    other.open_channel(2);
    other.queue_declare_with(2, &queue, true, false, false, false);
    assert_channel_refused(
        &mut other,
        2,
        RESOURCE_LOCKED,
        QUEUE_DECLARE,
        "a passive declare of another connection's exclusive queue",
    );
    assert_still_serving(&broker, &mut other, 3);

    // The owner still uses it.
    owner.publish(1, "", &queue, "mine");
    let (message, _) = owner
        .get(1, &queue, true)
        .unwrap_or_else(|| panic!("expected the owner to get its message, got get-empty"));
    assert_eq!(message.body, "mine", "expected the owner's message");
    owner.close();
    other.close();
}

#[test]
fn ack_of_an_unknown_delivery_tag_is_precondition_failed() {
    let broker = Broker::start(&[]);
    let mut client = open(&broker);
    client.ack(1, 42, false);
    assert_channel_refused(
        &mut client,
        1,
        PRECONDITION_FAILED,
        BASIC_ACK,
        "basic.ack of unknown delivery tag 42",
    );
    assert_still_serving(&broker, &mut client, 2);
    client.close();
}

#[test]
fn confirm_select_on_a_transactional_channel_is_precondition_failed() {
    let broker = Broker::start(&[]);
    let mut client = open(&broker);
    client.tx_select(1);
    client.send(1, CONFIRM_SELECT, Args::new().bits(&[false]));
    assert_channel_refused(
        &mut client,
        1,
        PRECONDITION_FAILED,
        CONFIRM_SELECT,
        "confirm.select after tx.select",
    );
    assert_still_serving(&broker, &mut client, 2);
    client.close();
}

#[test]
fn tx_select_on_a_confirm_channel_is_precondition_failed() {
    let broker = Broker::start(&[]);
    let mut client = open(&broker);
    client.confirm_select(1);
    client.send(1, TX_SELECT, Args::new());
    assert_channel_refused(
        &mut client,
        1,
        PRECONDITION_FAILED,
        TX_SELECT,
        "tx.select after confirm.select",
    );
    assert_still_serving(&broker, &mut client, 2);
    client.close();
}

#[test]
fn passive_declare_of_a_missing_queue_is_not_found() {
    let broker = Broker::start(&[]);
    let mut client = open(&broker);
    let queue = broker.queue_name("no-such-queue");
    client.queue_declare_with(1, &queue, true, false, false, false);
    assert_channel_refused(
        &mut client,
        1,
        NOT_FOUND,
        QUEUE_DECLARE,
        "a passive declare of a missing queue",
    );
    assert_still_serving(&broker, &mut client, 2);
    client.close();
}

#[test]
fn exclusive_consume_on_a_queue_with_a_consumer_is_access_refused() {
    let broker = Broker::start(&[]);
    let mut client = open(&broker);
    let queue = broker.queue_name("busy");
    client.queue_declare_with(1, &queue, false, false, false, true);
    client.expect_declare_ok(1);
    client.consume(1, &queue, true, false);
    client.open_channel(2);
    client.consume_with(2, &queue, true, true);
    assert_channel_refused(
        &mut client,
        2,
        ACCESS_REFUSED,
        BASIC_CONSUME,
        "an exclusive consume on a queue with a consumer",
    );
    assert_still_serving(&broker, &mut client, 3);
    client.close();
}

#[test]
fn unbinding_or_deleting_what_does_not_exist_succeeds() {
    let broker = Broker::start(&[]);
    let mut client = open(&broker);
    let queue = broker.queue_name("unbound");
    let exchange = broker.queue_name("unbound-x");
    client.queue_declare_with(1, &queue, false, false, false, true);
    client.expect_declare_ok(1);
    client.exchange_declare(1, &exchange, "direct");

    client.queue_unbind_with(1, &queue, &exchange, "never-bound");
    client.expect(1, QUEUE_UNBIND_OK);
    let args = Args::new()
        .u16(0)
        .short(&exchange)
        .short("amq.fanout")
        .short("never-bound")
        .bits(&[false])
        .table(&[]);
    client.send(1, EXCHANGE_UNBIND, args);
    client.expect(1, EXCHANGE_UNBIND_OK);

    let missing_queue = broker.queue_name("never-declared");
    client.send(
        1,
        QUEUE_DELETE,
        Args::new()
            .u16(0)
            .short(&missing_queue)
            .bits(&[false, false, false]),
    );
    let ok = client.expect(1, QUEUE_DELETE_OK);
    assert_eq!(
        ok.reader().u32(),
        0,
        "expected message_count 0 for a missing queue"
    );
    let missing_exchange = broker.queue_name("never-declared-x");
    client.send(
        1,
        EXCHANGE_DELETE,
        Args::new()
            .u16(0)
            .short(&missing_exchange)
            .bits(&[false, false]),
    );
    client.expect(1, EXCHANGE_DELETE_OK);

    client.send(
        1,
        EXCHANGE_DELETE,
        Args::new().u16(0).short(&exchange).bits(&[false, false]),
    );
    client.expect(1, EXCHANGE_DELETE_OK);
    client.close();
}

// ---------------------------------------------------------------------------
// Behaviours
// ---------------------------------------------------------------------------

fn declare_auto_delete_free(client: &mut Client, queue: &str) {
    client.queue_declare_with(1, queue, false, false, false, false);
    client.expect_declare_ok(1);
}

fn delete_queue(client: &mut Client, queue: &str) {
    client.send(
        1,
        QUEUE_DELETE,
        Args::new().u16(0).short(queue).bits(&[false, false, false]),
    );
    client.expect(1, QUEUE_DELETE_OK);
}

/// Gets every message in `queue` (no-ack) as bodies.
fn get_all(client: &mut Client, queue: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    while let Some((message, _)) = client.get(1, queue, true) {
        bodies.push(message.body);
        assert!(
            bodies.len() <= 100,
            "expected a bounded queue, got {bodies:?}"
        );
    }
    bodies
}

#[test]
fn mandatory_unroutable_publish_is_returned_with_no_route_then_confirmed() {
    let broker = Broker::start(&[]);
    let mut client = open(&broker);
    client.confirm_select(1);
    let key = broker.queue_name("nobody-bound");
    client.publish_with(1, "amq.direct", &key, true, false, None, "returned");

    let returned = client.recv();
    assert_eq!(
        returned.id,
        BASIC_RETURN,
        "expected basic.return first, got {}",
        returned.describe()
    );
    let mut r = returned.reader();
    let (code, text, exchange, routing_key) = (r.u16(), r.short(), r.short(), r.short());
    assert_eq!(
        (code, text.as_str(), exchange.as_str(), routing_key.as_str()),
        (NO_ROUTE, "NO_ROUTE", "amq.direct", key.as_str()),
        "expected basic.return 312 NO_ROUTE with the exchange and routing key"
    );
    assert_eq!(
        returned.body.as_deref(),
        Some(&b"returned"[..]),
        "expected the returned body"
    );

    let ack = client.expect(1, BASIC_ACK);
    let mut r = ack.reader();
    assert_eq!(
        (r.u64(), r.u8() & 1),
        (1, 0),
        "expected basic.ack for delivery tag 1, not multiple"
    );

    // Not mandatory: silently dropped, still confirmed.
    client.publish(1, "amq.direct", &key, "dropped");
    let ack = client.expect(1, BASIC_ACK);
    assert_eq!(
        ack.reader().u64(),
        2,
        "expected basic.ack for delivery tag 2"
    );
    client.close();
}

#[test]
fn reject_and_nack_drop_or_requeue_and_requeued_come_back_redelivered_in_order() {
    let broker = Broker::start(&[]);
    let mut client = open(&broker);
    let queue = broker.queue_name("nacked");
    declare_auto_delete_free(&mut client, &queue);
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
    delete_queue(&mut client, &queue);
    client.close();
}

#[test]
fn nack_multiple_requeue_of_all_puts_them_back_in_original_order() {
    let broker = Broker::start(&[]);
    let mut client = open(&broker);
    let queue = broker.queue_name("nack-all");
    declare_auto_delete_free(&mut client, &queue);
    client.send(1, BASIC_QOS, Args::new().u32(0).u16(10).bits(&[false]));
    client.expect(1, BASIC_QOS_OK);
    for i in 1..=4 {
        client.publish(1, "", &queue, &format!("m{i}"));
    }
    let tag = client.consume(1, &queue, false, false);
    let mut last = 0;
    for i in 1..=4 {
        let message = Message::from_deliver(&client.recv());
        assert_eq!(
            (message.body.as_str(), message.redelivered),
            (format!("m{i}").as_str(), false)
        );
        last = message.delivery_tag;
    }
    client.send(1, BASIC_CANCEL, Args::new().short(&tag).bits(&[false]));
    client.expect(1, BASIC_CANCEL_OK);
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
    delete_queue(&mut client, &queue);
    client.close();
}

#[test]
fn basic_get_reports_message_count_and_get_empty() {
    let broker = Broker::start(&[]);
    let mut client = open(&broker);
    let queue = broker.queue_name("got");
    declare_auto_delete_free(&mut client, &queue);
    assert!(
        client.get(1, &queue, true).is_none(),
        "expected get-empty on an empty queue"
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
        "expected get-empty after three gets"
    );
    delete_queue(&mut client, &queue);
    client.close();
}

#[test]
fn basic_recover_requeue_redelivers_unacked_in_order() {
    let broker = Broker::start(&[]);
    let mut client = open(&broker);
    let queue = broker.queue_name("recovered");
    declare_auto_delete_free(&mut client, &queue);
    client.publish(1, "", &queue, "a");
    client.publish(1, "", &queue, "b");
    let tag = client.consume(1, &queue, false, false);
    for body in ["a", "b"] {
        let message = Message::from_deliver(&client.recv());
        assert_eq!((message.body.as_str(), message.redelivered), (body, false));
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
        let message = Message::from_deliver(&incoming);
        got.push((message.body, message.redelivered));
        client.ack(1, message.delivery_tag, false);
    }
    assert_eq!(
        got,
        vec![("a".to_string(), true), ("b".to_string(), true)],
        "expected a and b redelivered in order with redelivered=true"
    );
    client.expect_nothing(QUIET, "both messages acked");
    client.send(1, BASIC_CANCEL, Args::new().short(&tag).bits(&[false]));
    client.expect(1, BASIC_CANCEL_OK);
    delete_queue(&mut client, &queue);
    client.close();
}

#[test]
fn topic_hash_matches_zero_words() {
    let broker = Broker::start(&[]);
    let mut client = open(&broker);
    let queue = broker.queue_name("hash");
    declare_auto_delete_free(&mut client, &queue);
    let exchange = broker.queue_name("topics");
    client.exchange_declare(1, &exchange, "topic");
    client.queue_bind(1, &queue, &exchange, "a.#.b");
    client.queue_bind(1, &queue, &exchange, "#.z");
    for key in ["a.b", "a.x.y.b", "a.bb", "z", "y.z", "a", "a.b.c", "zz"] {
        client.publish(1, &exchange, key, key);
    }
    assert_eq!(
        get_all(&mut client, &queue),
        vec!["a.b", "a.x.y.b", "z", "y.z"],
        "expected a.#.b and #.z to match with # as zero or more words"
    );
    delete_queue(&mut client, &queue);
    client.send(
        1,
        EXCHANGE_DELETE,
        Args::new().u16(0).short(&exchange).bits(&[false, false]),
    );
    client.expect(1, EXCHANGE_DELETE_OK);
    client.close();
}

#[test]
fn headers_exchange_x_match_all_and_any() {
    let broker = Broker::start(&[]);
    let mut client = open(&broker);
    let all = broker.queue_name("headers-all");
    let any = broker.queue_name("headers-any");
    declare_auto_delete_free(&mut client, &all);
    declare_auto_delete_free(&mut client, &any);
    client.queue_bind_with(
        1,
        &all,
        "amq.headers",
        "",
        &[
            ("x-match", s("all")),
            ("format", s("pdf")),
            ("type", s("report")),
        ],
    );
    client.expect(1, QUEUE_BIND_OK);
    client.queue_bind_with(
        1,
        &any,
        "amq.headers",
        "",
        &[
            ("x-match", s("any")),
            ("format", s("pdf")),
            ("type", s("report")),
        ],
    );
    client.expect(1, QUEUE_BIND_OK);

    let both: &[(&str, Value)] = &[
        ("format", s("pdf")),
        ("type", s("report")),
        ("extra", s("x")),
    ];
    let format_only: &[(&str, Value)] = &[("format", s("pdf"))];
    let type_only: &[(&str, Value)] = &[("type", s("report")), ("format", s("zip"))];
    let neither: &[(&str, Value)] = &[("format", s("zip"))];
    for (headers, body) in [
        (both, "both"),
        (format_only, "format"),
        (type_only, "type"),
        (neither, "neither"),
    ] {
        client.publish_with(
            1,
            "amq.headers",
            "ignored",
            false,
            false,
            Some(headers),
            body,
        );
    }
    client.publish(1, "amq.headers", "ignored", "no headers");
    assert_eq!(
        get_all(&mut client, &all),
        vec!["both"],
        "expected x-match=all to need every header"
    );
    assert_eq!(
        get_all(&mut client, &any),
        vec!["both", "format", "type"],
        "expected x-match=any to need one matching header"
    );
    delete_queue(&mut client, &all);
    delete_queue(&mut client, &any);
    client.close();
}

#[test]
fn exchange_to_exchange_cycle_delivers_once_per_queue() {
    let broker = Broker::start(&[]);
    let mut client = open(&broker);
    let a = broker.queue_name("e2e-a");
    let b = broker.queue_name("e2e-b");
    let qa = broker.queue_name("e2e-qa");
    let qb = broker.queue_name("e2e-qb");
    client.exchange_declare(1, &a, "fanout");
    client.exchange_declare(1, &b, "fanout");
    client.exchange_bind(1, &b, &a, "");
    client.exchange_bind(1, &a, &b, "");
    declare_auto_delete_free(&mut client, &qa);
    declare_auto_delete_free(&mut client, &qb);
    client.queue_bind(1, &qa, &a, "");
    client.queue_bind(1, &qb, &b, "");
    client.queue_bind(1, &qb, &a, "");

    client.publish(1, &a, "", "via a");
    client.publish(1, &b, "", "via b");
    assert_eq!(
        get_all(&mut client, &qa),
        vec!["via a", "via b"],
        "expected each message once in qa"
    );
    assert_eq!(
        get_all(&mut client, &qb),
        vec!["via a", "via b"],
        "expected each message once in qb"
    );
    delete_queue(&mut client, &qa);
    delete_queue(&mut client, &qb);
    for exchange in [&a, &b] {
        client.send(
            1,
            EXCHANGE_DELETE,
            Args::new().u16(0).short(exchange).bits(&[false, false]),
        );
        client.expect(1, EXCHANGE_DELETE_OK);
    }
    client.close();
}

#[test]
fn deleting_a_consumed_queue_sends_basic_cancel_to_the_consumer() {
    let broker = Broker::start(&[]);
    let mut consumer = open(&broker);
    let queue = broker.queue_name("cancelled");
    declare_auto_delete_free(&mut consumer, &queue);
    let tag = consumer.consume(1, &queue, true, false);

    let mut other = open(&broker);
    delete_queue(&mut other, &queue);
    let cancel = consumer.expect(1, BASIC_CANCEL);
    assert_eq!(
        cancel.reader().short(),
        tag,
        "expected basic.cancel for the consumer's tag"
    );
    consumer.expect_nothing(QUIET, "the consumer is gone");
    assert_still_serving(&broker, &mut consumer, 2);
    consumer.close();
    other.close();
}

#[test]
fn auto_delete_queue_goes_when_its_last_consumer_cancels() {
    let broker = Broker::start(&[]);
    let mut client = open(&broker);
    let queue = broker.queue_name("auto-delete");
    client.queue_declare_with(1, &queue, false, false, false, true);
    client.expect_declare_ok(1);
    let first = client.consume(1, &queue, true, false);
    let second = client.consume(1, &queue, true, false);
    client.send(1, BASIC_CANCEL, Args::new().short(&first).bits(&[false]));
    client.expect(1, BASIC_CANCEL_OK);
    client.queue_declare_with(1, &queue, true, false, false, false);
    let (_, _, consumers) = client.expect_declare_ok(1);
    assert_eq!(
        consumers, 1,
        "expected the queue to stay while one consumer is left"
    );
    client.send(1, BASIC_CANCEL, Args::new().short(&second).bits(&[false]));
    client.expect(1, BASIC_CANCEL_OK);
    client.queue_declare_with(1, &queue, true, false, false, false);
    assert_channel_refused(
        &mut client,
        1,
        NOT_FOUND,
        QUEUE_DECLARE,
        "a passive declare after the last consumer cancelled",
    );
    client.close();
}

#[test]
fn confirms_cover_every_publish_once_and_multiple_acks_cover_a_prefix() {
    let broker = Broker::start(&[]);
    let mut client = open(&broker);
    let queue = broker.queue_name("confirmed");
    declare_auto_delete_free(&mut client, &queue);
    client.confirm_select(1);
    const COUNT: u64 = 200;
    for i in 1..=COUNT {
        client.publish(1, "", &queue, &format!("m{i}"));
    }
    let mut confirmed = 0u64;
    let mut acks = Vec::new();
    while confirmed < COUNT {
        let ack = client.recv();
        assert_eq!(
            ack.id,
            BASIC_ACK,
            "expected only basic.ack, got {} after {acks:?}",
            ack.describe()
        );
        let mut r = ack.reader();
        let (tag, multiple) = (r.u64(), r.u8() & 1 == 1);
        acks.push((tag, multiple));
        assert!(tag <= COUNT, "expected tags up to {COUNT}, got {tag}");
        if multiple {
            assert!(
                tag > confirmed,
                "expected a multiple ack past {confirmed}, got {tag} ({acks:?})"
            );
            confirmed = tag;
        } else {
            assert_eq!(
                tag,
                confirmed + 1,
                "expected single acks in order, got {acks:?}"
            );
            confirmed = tag;
        }
    }
    client.expect_nothing(QUIET, "every publish was confirmed once");
    client.queue_declare_with(1, &queue, true, false, false, false);
    let (_, messages, _) = client.expect_declare_ok(1);
    assert_eq!(
        messages, COUNT as u32,
        "expected every confirmed message in the queue"
    );
    delete_queue(&mut client, &queue);
    client.close();
}
