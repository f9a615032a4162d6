//! RabbitMQ queue features that applications rely on without plugins: priority queues
//! (`x-max-priority`), message TTL (`x-message-ttl` and the `expiration` property), and
//! publisher confirms for bursts (which Warren folds into `multiple` acks).

mod support;

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use support::lapin_client::{
    bodies, confirm_select, connect_channel, declare_queue, get_all, publish, publish_for_confirm,
    table,
};
use support::{run_async, Broker};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// queue.declare with `arguments`; returns the queue's message count.
async fn declare(channel: &Channel, queue: &str, arguments: FieldTable) -> u32 {
    declare_queue(channel, queue, QueueDeclareOptions::default(), arguments)
        .await
        .message_count()
}

async fn get_bodies(channel: &Channel, queue: &str) -> Vec<String> {
    bodies(&get_all(channel, queue).await)
}

#[test]
fn priority_queue_delivers_higher_priority_first_and_fifo_within_a_priority() {
    run_async(TEST_TIMEOUT, async {
        let broker = Broker::start(&[]);
        let (_connection, channel) = connect_channel(&broker.amqp_url()).await;
        let queue = broker.queue_name("priorities");
        declare(
            &channel,
            &queue,
            table(&[("x-max-priority", AMQPValue::LongInt(10))]),
        )
        .await;
        for (body, priority) in [
            ("p1", 1),
            ("p5-a", 5),
            ("p3", 3),
            ("p9", 9),
            ("p0", 0),
            ("p5-b", 5),
        ] {
            let properties = BasicProperties::default().with_priority(priority);
            publish(&channel, "", &queue, body.as_bytes(), properties).await;
        }
        assert_eq!(
            get_bodies(&channel, &queue).await,
            vec!["p9", "p5-a", "p5-b", "p3", "p1", "p0"],
            "expected highest priority first, publish order within one priority"
        );
    });
}

#[test]
fn expired_messages_are_never_delivered() {
    run_async(TEST_TIMEOUT, async {
        let broker = Broker::start(&[]);
        let (_connection, channel) = connect_channel(&broker.amqp_url()).await;
        let ttl = || table(&[("x-message-ttl", AMQPValue::LongInt(100))]);
        let queue_ttl = broker.queue_name("queue-ttl");
        declare(&channel, &queue_ttl, ttl()).await;
        let plain = BasicProperties::default;
        publish(&channel, "", &queue_ttl, b"short-lived", plain()).await;
        let per_message = broker.queue_name("message-ttl");
        declare(&channel, &per_message, FieldTable::default()).await;
        let expiring = plain().with_expiration(ShortString::from("100"));
        publish(&channel, "", &per_message, b"expiring", expiring).await;
        publish(&channel, "", &per_message, b"lasting", plain()).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            declare(&channel, &queue_ttl, ttl()).await,
            0,
            "expected the queue-TTL message gone after 400 ms"
        );
        assert_eq!(
            get_bodies(&channel, &queue_ttl).await,
            Vec::<String>::new(),
            "expected nothing to get from the queue with x-message-ttl=100 after 400 ms"
        );
        assert_eq!(
            get_bodies(&channel, &per_message).await,
            vec!["lasting"],
            "expected the message with expiration=100 gone and the other kept"
        );
    });
}

#[test]
fn every_publish_of_a_confirm_burst_is_acked_once() {
    run_async(TEST_TIMEOUT, async {
        let broker = Broker::start(&[]);
        let (_connection, channel) = connect_channel(&broker.amqp_url()).await;
        confirm_select(&channel).await;
        let queue = broker.queue_name("confirm-burst");
        declare(&channel, &queue, FieldTable::default()).await;
        let mut confirms = Vec::new();
        for i in 0..500 {
            let body = format!("m{i}");
            let confirm = publish_for_confirm(
                &channel,
                "",
                &queue,
                body.as_bytes(),
                BasicProperties::default(),
            )
            .await;
            confirms.push(confirm);
        }
        for (i, confirm) in confirms.into_iter().enumerate() {
            let confirmation = confirm
                .await
                .unwrap_or_else(|e| panic!("expected confirm #{i}, got {e}"));
            assert!(
                confirmation.is_ack(),
                "expected publish #{i} acked, got {confirmation:?}"
            );
        }
        assert_eq!(
            declare(&channel, &queue, FieldTable::default()).await,
            500,
            "expected all 500 queued"
        );
    });
}

#[test]
fn an_expiration_too_far_to_reach_never_expires_the_message() {
    run_async(TEST_TIMEOUT, async {
        let broker = Broker::start(&[]);
        let (_connection, channel) = connect_channel(&broker.amqp_url()).await;
        let queue = broker.queue_name("far-expiration");
        declare(&channel, &queue, FieldTable::default()).await;
        // u64::MAX milliseconds from now does not fit the clock: it must mean "never", not
        // wrap around to "already expired" (or panic).
        let properties =
            BasicProperties::default().with_expiration(ShortString::from(u64::MAX.to_string()));
        publish(&channel, "", &queue, b"far", properties).await;
        assert_eq!(
            get_bodies(&channel, &queue).await,
            vec!["far"],
            "expected the message with a far expiration to stay"
        );
    });
}
