//! What RabbitMQ 3.x refuses around queues (redeclaring with other flags, another
//! connection's exclusive queue, a passive declare of a missing queue), with its reply code,
//! followed by proof that the broker keeps serving; and the ends of a queue's life that
//! clients see: auto-delete after the last consumer, basic.cancel when a consumed queue is
//! deleted. Written on a raw socket (tests/support/raw.rs) so each test sees exactly which
//! method and code the broker sends.

mod support;

use support::raw::*;
use support::Broker;

#[test]
fn queue_redeclare_with_another_durable_flag_is_precondition_failed() {
    let what = "a redeclare as durable";
    let (_broker, mut client, queue) = expect_channel_refusal(
        1,
        PRECONDITION_FAILED,
        QUEUE_DECLARE,
        what,
        |broker, client| {
            let queue = broker.queue_name("durable-flag");
            client.queue_declare(1, &queue);
            client.queue_declare_with(1, &queue, QueueFlags::DURABLE);
            queue
        },
    );
    client.queue_delete(2, &queue);
    client.close();
}

#[test]
fn exclusive_queue_is_resource_locked_for_another_connection() {
    let broker = Broker::start(&[]);
    let mut owner = Client::connect_as(broker.port(), "the owner");
    owner.open_channel(1);
    let queue = broker.queue_name("exclusive");
    owner.queue_declare_as(1, &queue, QueueFlags::EXCLUSIVE);

    let mut other = Client::connect_as(broker.port(), "the other connection");
    other.open_channel(1);
    other.consume_with(1, &queue, false, false);
    other.expect_channel_refused(
        1,
        RESOURCE_LOCKED,
        BASIC_CONSUME,
        "basic.consume on another connection's exclusive queue",
    );
    other.open_channel(2);
    other.queue_declare_with(2, &queue, QueueFlags::PASSIVE);
    other.expect_channel_refused(
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
fn passive_declare_of_a_missing_queue_is_not_found() {
    let what = "a passive declare of a missing queue";
    assert_channel_refusal(1, NOT_FOUND, QUEUE_DECLARE, what, |broker, client| {
        let queue = broker.queue_name("no-such-queue");
        client.queue_declare_with(1, &queue, QueueFlags::PASSIVE);
    });
}

#[test]
fn deleting_a_consumed_queue_sends_basic_cancel_to_the_consumer() {
    let broker = Broker::start(&[]);
    let mut consumer = Client::connect_as(broker.port(), "the consumer");
    consumer.open_channel(1);
    let queue = broker.queue_name("cancelled");
    consumer.queue_declare(1, &queue);
    let tag = consumer.consume(1, &queue, true, false);

    let mut other = Client::connect_with_channel(broker.port());
    other.queue_delete(1, &queue);
    let cancel = consumer.expect(1, BASIC_CANCEL);
    let cancelled = cancel.reader().short();
    assert_eq!(
        cancelled, tag,
        "expected basic.cancel for the consumer's tag {tag:?}, got it for {cancelled:?}"
    );
    consumer.expect_nothing(QUIET_PERIOD, "the consumer is gone");
    assert_still_serving(&broker, &mut consumer, 2);
    consumer.close();
    other.close();
}

#[test]
fn auto_delete_queue_goes_when_its_last_consumer_cancels() {
    let broker = Broker::start(&[]);
    let mut client = Client::connect_with_channel(broker.port());
    let queue = broker.queue_name("auto-delete");
    client.queue_declare_as(1, &queue, QueueFlags::AUTO_DELETE);
    let first = client.consume(1, &queue, true, false);
    let second = client.consume(1, &queue, true, false);
    client.cancel(1, &first);
    let (_, _, consumers) = client.queue_declare_as(1, &queue, QueueFlags::PASSIVE);
    assert_eq!(
        consumers, 1,
        "expected the queue to stay while one consumer is left, with that consumer"
    );
    client.cancel(1, &second);
    client.queue_declare_with(1, &queue, QueueFlags::PASSIVE);
    client.expect_channel_refused(
        1,
        NOT_FOUND,
        QUEUE_DECLARE,
        "a passive declare after the last consumer cancelled",
    );
    client.close();
}
