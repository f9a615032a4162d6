//! What RabbitMQ 3.x refuses when publishing (a missing or internal exchange, `immediate`) and
//! when mixing confirm and transaction modes, with its reply code, followed by proof that the
//! broker keeps serving; and what a publisher relies on: unroutable mandatory messages come
//! back with basic.return before their confirm, and every publish is confirmed exactly once.
//! Written on a raw socket (tests/support/raw.rs) so each test sees exactly which method and
//! code the broker sends.

mod support;

use support::raw::*;
use support::Broker;

#[test]
fn publish_to_a_missing_exchange_closes_the_channel_with_not_found() {
    let what = "a publish to a missing exchange";
    assert_channel_refusal(1, NOT_FOUND, BASIC_PUBLISH, what, |broker, client| {
        let exchange = broker.queue_name("no-such-exchange");
        client.publish(1, &exchange, "key", "lost");
    });
}

#[test]
fn publish_to_an_internal_exchange_is_access_refused() {
    let what = "a publish to an internal exchange";
    assert_channel_refusal(1, ACCESS_REFUSED, BASIC_PUBLISH, what, |broker, client| {
        let exchange = broker.queue_name("internal");
        client.exchange_declare_with(
            1,
            &exchange,
            "fanout",
            ExchangeFlags::AUTO_DELETE | ExchangeFlags::INTERNAL,
        );
        client.expect(1, EXCHANGE_DECLARE_OK);
        client.publish(1, &exchange, "", "not allowed");
    });
}

#[test]
fn publish_with_immediate_is_not_implemented() {
    let what = "immediate=true";
    assert_connection_refusal(NOT_IMPLEMENTED, BASIC_PUBLISH, what, |broker, client| {
        let queue = broker.queue_name("immediate");
        client.queue_declare_as(1, &queue, QueueFlags::AUTO_DELETE);
        client.publish_with(1, "", &queue, PublishFlags::IMMEDIATE, None, "immediate");
    });
}

#[test]
fn confirm_select_on_a_transactional_channel_is_precondition_failed() {
    let what = "confirm.select after tx.select";
    assert_channel_refusal(1, PRECONDITION_FAILED, CONFIRM_SELECT, what, |_, client| {
        client.tx_select(1);
        client.send(1, CONFIRM_SELECT, Args::new().bits(&[false]));
    });
}

#[test]
fn tx_select_on_a_confirm_channel_is_precondition_failed() {
    let what = "tx.select after confirm.select";
    assert_channel_refusal(1, PRECONDITION_FAILED, TX_SELECT, what, |_, client| {
        client.confirm_select(1);
        client.send(1, TX_SELECT, Args::new());
    });
}

#[test]
fn mandatory_unroutable_publish_is_returned_with_no_route_then_confirmed() {
    let broker = Broker::start(&[]);
    let mut client = Client::connect_with_channel(broker.port());
    client.confirm_select(1);
    let key = broker.queue_name("nobody-bound");
    client.publish_with(
        1,
        "amq.direct",
        &key,
        PublishFlags::MANDATORY,
        None,
        "returned",
    );

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
        returned.body_text(),
        "returned",
        "expected the returned body"
    );

    let ack = client.expect(1, BASIC_ACK).ack_args();
    assert_eq!(
        ack,
        (1, false),
        "expected basic.ack for delivery tag 1, not multiple"
    );

    // Not mandatory: silently dropped, still confirmed.
    client.publish(1, "amq.direct", &key, "dropped");
    let (tag, _) = client.expect(1, BASIC_ACK).ack_args();
    assert_eq!(tag, 2, "expected basic.ack for delivery tag 2");
    client.close();
}

#[test]
fn confirms_cover_every_publish_once_and_multiple_acks_cover_a_prefix() {
    let (_broker, mut client, queue) = broker_with_queue("confirmed");
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
        let (tag, multiple) = ack.ack_args();
        acks.push((tag, multiple));
        assert!(tag <= COUNT, "expected tags up to {COUNT}, got {tag}");
        if multiple {
            assert!(
                tag > confirmed,
                "expected a multiple ack past {confirmed}, got {tag} ({acks:?})"
            );
        } else {
            assert_eq!(
                tag,
                confirmed + 1,
                "expected single acks in order, got {acks:?}"
            );
        }
        confirmed = tag;
    }
    client.expect_nothing(QUIET_PERIOD, "every publish was confirmed once");
    let (_, messages, _) = client.queue_declare_as(1, &queue, QueueFlags::PASSIVE);
    assert_eq!(
        messages, COUNT as u32,
        "expected every confirmed message in the queue"
    );
    client.queue_delete(1, &queue);
    client.close();
}
