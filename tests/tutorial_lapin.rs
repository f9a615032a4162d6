//! RabbitMQ tutorials 1 and 2 written with lapin 2.x, plus redelivery of
//! unacked messages when the consumer's channel closes.

mod common;

use common::Broker;
use lapin::message::{Delivery, DeliveryResult};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long "nothing arrives" is watched for.
const QUIET_PERIOD: Duration = Duration::from_millis(500);

/// Runs an async test body on a fresh runtime, bounded by TEST_TIMEOUT.
fn run<F: Future<Output = ()>>(body: F) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        tokio::time::timeout(TEST_TIMEOUT, body)
            .await
            .unwrap_or_else(|_| {
                panic!("expected the test to finish within {TEST_TIMEOUT:?}, got a timeout")
            });
    });
}

async fn connect(broker: &Broker) -> Connection {
    let url = broker.amqp_url();
    let connect = Connection::connect(&url, ConnectionProperties::default());
    tokio::time::timeout(DELIVERY_TIMEOUT, connect)
        .await
        .unwrap_or_else(|_| {
            panic!("expected a connection within {DELIVERY_TIMEOUT:?}, got a timeout")
        })
        .unwrap_or_else(|e| panic!("expected a connection, got {e}"))
}

async fn declare(channel: &Channel, queue: &str, durable: bool) -> lapin::Queue {
    let options = QueueDeclareOptions {
        durable,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue, options, FieldTable::default())
        .await
        .unwrap_or_else(|e| panic!("expected queue.declare-ok for {queue}, got {e}"))
}

async fn publish(channel: &Channel, queue: &str, body: &str, persistent: bool) {
    let properties = if persistent {
        BasicProperties::default().with_delivery_mode(2)
    } else {
        BasicProperties::default()
    };
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

/// Starts a consumer and forwards its deliveries, in arrival order, to a
/// channel. (The delegate closure runs synchronously on lapin's reader, in
/// frame order; only the returned future is spawned.)
async fn consume(
    channel: &Channel,
    queue: &str,
    tag: &str,
    no_ack: bool,
) -> UnboundedReceiver<Delivery> {
    let options = BasicConsumeOptions {
        no_ack,
        ..BasicConsumeOptions::default()
    };
    let consumer: Consumer = channel
        .basic_consume(queue, tag, options, FieldTable::default())
        .await
        .unwrap_or_else(|e| panic!("expected basic.consume-ok on {queue}, got {e}"));
    let (tx, rx) = unbounded_channel();
    consumer.set_delegate(move |delivery: DeliveryResult| {
        if let Ok(Some(delivery)) = delivery {
            let _ = tx.send(delivery);
        }
        async {}
    });
    rx
}

async fn next_delivery(rx: &mut UnboundedReceiver<Delivery>, what: &str) -> Delivery {
    match tokio::time::timeout(DELIVERY_TIMEOUT, rx.recv()).await {
        Ok(Some(delivery)) => delivery,
        Ok(None) => panic!("expected {what}, got the consumer closed"),
        Err(_) => panic!("expected {what} within {DELIVERY_TIMEOUT:?}, got nothing"),
    }
}

async fn assert_no_delivery(rx: &mut UnboundedReceiver<Delivery>, why: &str) {
    if let Ok(Some(delivery)) = tokio::time::timeout(QUIET_PERIOD, rx.recv()).await {
        panic!(
            "expected no delivery ({why}), got {:?}",
            String::from_utf8_lossy(&delivery.data)
        );
    }
}

async fn ack(delivery: &Delivery) {
    delivery
        .ack(BasicAckOptions::default())
        .await
        .unwrap_or_else(|e| panic!("expected basic.ack to be sent, got {e}"));
}

fn body(delivery: &Delivery) -> String {
    String::from_utf8_lossy(&delivery.data).into_owned()
}

#[test]
fn hello_world_consumer_receives_the_published_body() {
    run(async {
        let broker = Broker::start(&[]);
        let queue = broker.queue_name("hello");
        let connection = connect(&broker).await;
        let channel = connection
            .create_channel()
            .await
            .unwrap_or_else(|e| panic!("expected channel.open-ok, got {e}"));
        declare(&channel, &queue, false).await;

        publish(&channel, &queue, "Hello World!", false).await;

        let mut deliveries = consume(&channel, &queue, "hello-consumer", true).await;
        let delivery = next_delivery(&mut deliveries, "the Hello World! message").await;
        assert_eq!(
            body(&delivery),
            "Hello World!",
            "expected the published body"
        );
        assert_eq!(
            delivery.routing_key.as_str(),
            queue,
            "expected the queue name as routing key"
        );
        assert_eq!(
            delivery.exchange.as_str(),
            "",
            "expected the default exchange"
        );
        assert!(
            !delivery.redelivered,
            "expected redelivered=false on a first delivery"
        );
        assert_no_delivery(&mut deliveries, "only one message was published").await;

        connection
            .close(200, "bye")
            .await
            .unwrap_or_else(|e| panic!("expected connection.close-ok, got {e}"));
    });
}

#[test]
fn work_queue_prefetch_one_sends_no_task_to_a_busy_worker() {
    run(async {
        let broker = Broker::start(&[]);
        let queue = broker.queue_name("task_queue");

        let producer = connect(&broker).await;
        let publish_channel = producer
            .create_channel()
            .await
            .unwrap_or_else(|e| panic!("expected channel.open-ok, got {e}"));
        declare(&publish_channel, &queue, true).await;

        // Slow worker: takes the first task and holds it unacked.
        let slow_connection = connect(&broker).await;
        let slow_channel = slow_connection
            .create_channel()
            .await
            .unwrap_or_else(|e| panic!("expected channel.open-ok, got {e}"));
        declare(&slow_channel, &queue, true).await;
        slow_channel
            .basic_qos(1, BasicQosOptions::default())
            .await
            .unwrap_or_else(|e| panic!("expected basic.qos-ok, got {e}"));
        let mut slow = consume(&slow_channel, &queue, "slow-worker", false).await;
        publish(&publish_channel, &queue, "slow task", true).await;
        let held = next_delivery(&mut slow, "the slow task").await;
        assert_eq!(
            body(&held),
            "slow task",
            "expected the first task at the slow worker"
        );

        // Fast worker joins; ten tasks arrive while the slow one is busy.
        let fast_connection = connect(&broker).await;
        let fast_channel = fast_connection
            .create_channel()
            .await
            .unwrap_or_else(|e| panic!("expected channel.open-ok, got {e}"));
        fast_channel
            .basic_qos(1, BasicQosOptions::default())
            .await
            .unwrap_or_else(|e| panic!("expected basic.qos-ok, got {e}"));
        let mut fast = consume(&fast_channel, &queue, "fast-worker", false).await;
        for i in 1..=10 {
            publish(&publish_channel, &queue, &format!("fast task {i}"), true).await;
        }
        for i in 1..=10 {
            let delivery = next_delivery(&mut fast, &format!("fast task {i}")).await;
            assert_eq!(
                body(&delivery),
                format!("fast task {i}"),
                "expected tasks in order"
            );
            assert_eq!(
                *delivery.properties.delivery_mode(),
                Some(2),
                "expected persistent delivery_mode=2"
            );
            assert!(!delivery.redelivered, "expected redelivered=false");
            ack(&delivery).await;
        }
        assert_no_delivery(
            &mut slow,
            "the slow worker holds an unacked task with prefetch 1",
        )
        .await;

        ack(&held).await;
        assert_no_delivery(&mut slow, "every task is done").await;
        assert_no_delivery(&mut fast, "every task is done").await;

        let state = declare(&publish_channel, &queue, true).await;
        assert_eq!(
            state.message_count(),
            0,
            "expected all 11 tasks acked and gone"
        );
        assert_eq!(
            state.consumer_count(),
            2,
            "expected both workers still consuming"
        );

        slow_connection.close(200, "bye").await.unwrap_or_else(|e| {
            panic!("expected connection.close-ok for the slow worker, got {e}")
        });
        fast_connection.close(200, "bye").await.unwrap_or_else(|e| {
            panic!("expected connection.close-ok for the fast worker, got {e}")
        });
        producer
            .close(200, "bye")
            .await
            .unwrap_or_else(|e| panic!("expected connection.close-ok for the producer, got {e}"));
    });
}

#[test]
fn unacked_messages_are_redelivered_in_order_after_the_channel_closes() {
    run(async {
        let broker = Broker::start(&[]);
        let queue = broker.queue_name("task_queue");
        let connection = connect(&broker).await;
        let channel = connection
            .create_channel()
            .await
            .unwrap_or_else(|e| panic!("expected channel.open-ok, got {e}"));
        declare(&channel, &queue, true).await;
        let bodies: Vec<String> = (1..=3).map(|i| format!("task {i}")).collect();
        for b in &bodies {
            publish(&channel, &queue, b, true).await;
        }

        let first_channel = connection
            .create_channel()
            .await
            .unwrap_or_else(|e| panic!("expected channel.open-ok, got {e}"));
        let mut first = consume(&first_channel, &queue, "first", false).await;
        for b in &bodies {
            let delivery = next_delivery(&mut first, b).await;
            assert_eq!(&body(&delivery), b, "expected first deliveries in order");
            assert!(
                !delivery.redelivered,
                "expected redelivered=false on first delivery"
            );
        }
        first_channel
            .close(200, "bye")
            .await
            .unwrap_or_else(|e| panic!("expected channel.close-ok, got {e}"));

        let second_channel = connection
            .create_channel()
            .await
            .unwrap_or_else(|e| panic!("expected channel.open-ok, got {e}"));
        let mut second = consume(&second_channel, &queue, "second", false).await;
        for b in &bodies {
            let delivery = next_delivery(&mut second, &format!("redelivered {b}")).await;
            assert_eq!(
                &body(&delivery),
                b,
                "expected redeliveries in the original order"
            );
            assert!(
                delivery.redelivered,
                "expected redelivered=true for {b}, got false"
            );
            ack(&delivery).await;
        }
        assert_no_delivery(&mut second, "every message was redelivered once").await;

        let state = declare(&channel, &queue, true).await;
        assert_eq!(state.message_count(), 0, "expected the acked messages gone");
        connection
            .close(200, "bye")
            .await
            .unwrap_or_else(|e| panic!("expected connection.close-ok, got {e}"));
    });
}
