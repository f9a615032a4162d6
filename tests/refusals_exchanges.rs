//! What RabbitMQ 3.x refuses around exchanges, with its reply code, followed by proof that the
//! broker keeps serving (a new channel and a new connection work); and the deletes and unbinds
//! of things that do not exist, which it lets pass. Written on a raw socket
//! (tests/support/raw.rs) so each test sees exactly which method and code the broker sends.

mod support;

use support::raw::*;
use support::Broker;

#[test]
fn exchange_declare_with_amq_prefix_is_access_refused() {
    let what = "an amq.* name";
    assert_channel_refusal(1, ACCESS_REFUSED, EXCHANGE_DECLARE, what, |_, client| {
        client.exchange_declare_with(1, "amq.warren-test", "direct", ExchangeFlags::PLAIN);
    });
}

#[test]
fn default_exchange_cannot_be_bound_unbound_or_deleted() {
    let broker = Broker::start(&[]);
    let mut client = Client::connect_with_channel(broker.port());
    let queue = broker.queue_name("default-bind");
    client.queue_declare_as(1, &queue, QueueFlags::AUTO_DELETE);

    client.queue_bind_with(1, &queue, "", "key", &[]);
    client.expect_channel_refused(
        1,
        ACCESS_REFUSED,
        QUEUE_BIND,
        "queue.bind to the default exchange",
    );

    client.open_channel(2);
    client.queue_unbind_with(2, &queue, "", &queue);
    client.expect_channel_refused(
        2,
        ACCESS_REFUSED,
        QUEUE_UNBIND,
        "queue.unbind from the default exchange",
    );

    client.open_channel(3);
    client.exchange_delete_with(3, "");
    client.expect_channel_refused(
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
    let what = "an unknown exchange type";
    assert_connection_refusal(COMMAND_INVALID, EXCHANGE_DECLARE, what, |broker, client| {
        let exchange = broker.queue_name("unknown-type");
        client.exchange_declare_with(1, &exchange, "x-no-such-type", ExchangeFlags::PLAIN);
    });
}

#[test]
fn exchange_redeclare_with_another_type_is_precondition_failed() {
    let what = "a redeclare as fanout";
    let (_broker, mut client, exchange) = expect_channel_refusal(
        1,
        PRECONDITION_FAILED,
        EXCHANGE_DECLARE,
        what,
        |broker, client| {
            let exchange = broker.queue_name("typed");
            client.exchange_declare(1, &exchange, "direct");
            client.exchange_declare_with(1, &exchange, "fanout", ExchangeFlags::PLAIN);
            exchange
        },
    );
    // The exchange kept its type.
    client.open_channel(3);
    client.exchange_declare(3, &exchange, "direct");
    client.exchange_delete(3, &exchange);
    client.close();
}

#[test]
fn unbinding_or_deleting_what_does_not_exist_succeeds() {
    let broker = Broker::start(&[]);
    let mut client = Client::connect_with_channel(broker.port());
    let queue = broker.queue_name("unbound");
    let exchange = broker.queue_name("unbound-x");
    client.queue_declare_as(1, &queue, QueueFlags::AUTO_DELETE);
    client.exchange_declare(1, &exchange, "direct");

    client.queue_unbind_with(1, &queue, &exchange, "never-bound");
    client.expect(1, QUEUE_UNBIND_OK);
    client.exchange_unbind(1, &exchange, "amq.fanout", "never-bound");

    let missing_queue = broker.queue_name("never-declared");
    assert_eq!(
        client.queue_delete(1, &missing_queue),
        0,
        "expected queue.delete-ok with message_count 0 for a missing queue"
    );
    let missing_exchange = broker.queue_name("never-declared-x");
    client.exchange_delete(1, &missing_exchange);

    client.exchange_delete(1, &exchange);
    client.close();
}
