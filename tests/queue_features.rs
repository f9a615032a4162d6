//! RabbitMQ queue features that applications rely on without plugins: priority queues
//! (`x-max-priority`), message TTL (`x-message-ttl` and the `expiration` property), and
//! publisher confirms for bursts (which Warren folds into `multiple` acks).

mod common;

use std::time::Duration;

use common::Broker;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

fn run<F: std::future::Future<Output = ()>>(body: F) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        tokio::time::timeout(TEST_TIMEOUT, body)
            .await
            .unwrap_or_else(|_| panic!("expected the test to finish within {TEST_TIMEOUT:?}"));
    });
}

async fn channel(broker: &Broker) -> (Connection, Channel) {
    let connection = Connection::connect(&broker.amqp_url(), ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("expected a connection, got {e}"));
    let channel = connection
        .create_channel()
        .await
        .unwrap_or_else(|e| panic!("expected channel.open-ok, got {e}"));
    (connection, channel)
}

async fn declare(channel: &Channel, queue: &str, arguments: FieldTable) -> u32 {
    channel
        .queue_declare(queue, QueueDeclareOptions::default(), arguments)
        .await
        .unwrap_or_else(|e| panic!("expected queue.declare-ok for {queue}, got {e}"))
        .message_count()
}

async fn publish(channel: &Channel, queue: &str, body: &str, properties: BasicProperties) {
    channel
        .basic_publish(
            "",
            queue,
            BasicPublishOptions::default(),
            body.as_bytes(),
            properties,
        )
        .await
        .unwrap_or_else(|e| panic!("expected basic.publish to be sent, got {e}"));
}

async fn get_all(channel: &Channel, queue: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    while let Some(message) = channel
        .basic_get(queue, BasicGetOptions { no_ack: true })
        .await
        .unwrap_or_else(|e| panic!("expected basic.get-ok or get-empty, got {e}"))
    {
        bodies.push(String::from_utf8_lossy(&message.delivery.data).into_owned());
    }
    bodies
}

fn args(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in entries {
        table.insert(ShortString::from(*key), value.clone());
    }
    table
}

#[test]
fn priority_queue_delivers_higher_priority_first_and_fifo_within_a_priority() {
    run(async {
        let broker = Broker::start(&[]);
        let (_connection, channel) = channel(&broker).await;
        let queue = broker.queue_name("priorities");
        declare(
            &channel,
            &queue,
            args(&[("x-max-priority", AMQPValue::LongInt(10))]),
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
            publish(
                &channel,
                &queue,
                body,
                BasicProperties::default().with_priority(priority),
            )
            .await;
        }
        let got = get_all(&channel, &queue).await;
        assert_eq!(
            got,
            vec!["p9", "p5-a", "p5-b", "p3", "p1", "p0"],
            "expected highest priority first, publish order within one priority"
        );
    });
}

#[test]
fn expired_messages_are_never_delivered() {
    run(async {
        let broker = Broker::start(&[]);
        let (_connection, channel) = channel(&broker).await;
        let queue_ttl = broker.queue_name("queue-ttl");
        declare(
            &channel,
            &queue_ttl,
            args(&[("x-message-ttl", AMQPValue::LongInt(100))]),
        )
        .await;
        publish(
            &channel,
            &queue_ttl,
            "short-lived",
            BasicProperties::default(),
        )
        .await;
        let per_message = broker.queue_name("message-ttl");
        declare(&channel, &per_message, FieldTable::default()).await;
        let expiring = BasicProperties::default().with_expiration(ShortString::from("100"));
        publish(&channel, &per_message, "expiring", expiring).await;
        publish(
            &channel,
            &per_message,
            "lasting",
            BasicProperties::default(),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            declare(
                &channel,
                &queue_ttl,
                args(&[("x-message-ttl", AMQPValue::LongInt(100))])
            )
            .await,
            0,
            "expected the queue-TTL message gone after 400 ms"
        );
        assert_eq!(get_all(&channel, &queue_ttl).await, Vec::<String>::new());
        assert_eq!(
            get_all(&channel, &per_message).await,
            vec!["lasting"],
            "expected the message with expiration=100 gone and the other kept"
        );
    });
}

#[test]
fn every_publish_of_a_confirm_burst_is_acked_once() {
    run(async {
        let broker = Broker::start(&[]);
        let (_connection, channel) = channel(&broker).await;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap_or_else(|e| panic!("expected confirm.select-ok, got {e}"));
        let queue = broker.queue_name("confirm-burst");
        declare(&channel, &queue, FieldTable::default()).await;
        let mut confirms = Vec::new();
        for i in 0..500 {
            let confirm = channel
                .basic_publish(
                    "",
                    &queue,
                    BasicPublishOptions::default(),
                    format!("m{i}").as_bytes(),
                    BasicProperties::default(),
                )
                .await
                .unwrap_or_else(|e| panic!("expected basic.publish to be sent, got {e}"));
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
