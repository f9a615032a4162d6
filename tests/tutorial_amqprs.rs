//! RabbitMQ tutorials 1 and 2 written with amqprs 2.x, plus redelivery of
//! unacked messages when the consumer's channel closes.

mod common;

use amqprs::channel::{
    BasicAckArguments, BasicConsumeArguments, BasicPublishArguments, BasicQosArguments, Channel,
    ConsumerMessage, QueueDeclareArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::BasicProperties;
use common::Broker;
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

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

/// A delivered message, flattened out of amqprs' `ConsumerMessage`.
struct Message {
    delivery_tag: u64,
    redelivered: bool,
    delivery_mode: Option<u8>,
    routing_key: String,
    exchange: String,
    body: String,
}

async fn connect(broker: &Broker) -> Connection {
    let args = OpenConnectionArguments::new("127.0.0.1", broker.port(), "guest", "guest");
    tokio::time::timeout(DELIVERY_TIMEOUT, Connection::open(&args))
        .await
        .unwrap_or_else(|_| {
            panic!("expected a connection within {DELIVERY_TIMEOUT:?}, got a timeout")
        })
        .unwrap_or_else(|e| panic!("expected a connection, got {e}"))
}

async fn open_channel(connection: &Connection) -> Channel {
    connection
        .open_channel(None)
        .await
        .unwrap_or_else(|e| panic!("expected channel.open-ok, got {e}"))
}

/// Declares `queue`; returns (message_count, consumer_count).
async fn declare(channel: &Channel, queue: &str, durable: bool) -> (u32, u32) {
    let args = QueueDeclareArguments::new(queue).durable(durable).finish();
    let (_, messages, consumers) = channel
        .queue_declare(args)
        .await
        .unwrap_or_else(|e| panic!("expected queue.declare-ok for {queue}, got {e}"))
        .expect("queue.declare-ok without no-wait");
    (messages, consumers)
}

async fn publish(channel: &Channel, queue: &str, body: &str, persistent: bool) {
    let mut properties = BasicProperties::default();
    if persistent {
        properties.with_delivery_mode(2);
    }
    channel
        .basic_publish(
            properties,
            body.as_bytes().to_vec(),
            BasicPublishArguments::new("", queue),
        )
        .await
        .unwrap_or_else(|e| panic!("expected basic.publish to be sent, got {e}"));
}

async fn consume(
    channel: &Channel,
    queue: &str,
    tag: &str,
    manual_ack: bool,
) -> UnboundedReceiver<ConsumerMessage> {
    let args = BasicConsumeArguments::new(queue, tag)
        .manual_ack(manual_ack)
        .finish();
    let (_, rx) = channel
        .basic_consume_rx(args)
        .await
        .unwrap_or_else(|e| panic!("expected basic.consume-ok on {queue}, got {e}"));
    rx
}

async fn next_message(rx: &mut UnboundedReceiver<ConsumerMessage>, what: &str) -> Message {
    let message = match tokio::time::timeout(DELIVERY_TIMEOUT, rx.recv()).await {
        Ok(Some(message)) => message,
        Ok(None) => panic!("expected {what}, got the consumer closed"),
        Err(_) => panic!("expected {what} within {DELIVERY_TIMEOUT:?}, got nothing"),
    };
    let deliver = message.deliver.expect("basic.deliver");
    let properties = message.basic_properties.expect("content header");
    Message {
        delivery_tag: deliver.delivery_tag(),
        redelivered: deliver.redelivered(),
        delivery_mode: properties.delivery_mode(),
        routing_key: deliver.routing_key().to_string(),
        exchange: deliver.exchange().to_string(),
        body: String::from_utf8_lossy(&message.content.expect("content body")).into_owned(),
    }
}

async fn assert_no_message(rx: &mut UnboundedReceiver<ConsumerMessage>, why: &str) {
    if let Ok(Some(message)) = tokio::time::timeout(QUIET_PERIOD, rx.recv()).await {
        panic!(
            "expected no delivery ({why}), got {:?}",
            message
                .content
                .map(|c| String::from_utf8_lossy(&c).into_owned())
        );
    }
}

async fn ack(channel: &Channel, message: &Message) {
    channel
        .basic_ack(BasicAckArguments::new(message.delivery_tag, false))
        .await
        .unwrap_or_else(|e| panic!("expected basic.ack to be sent, got {e}"));
}

async fn qos_one(channel: &Channel) {
    channel
        .basic_qos(BasicQosArguments::new(0, 1, false))
        .await
        .unwrap_or_else(|e| panic!("expected basic.qos-ok, got {e}"));
}

#[test]
fn hello_world_consumer_receives_the_published_body() {
    run(async {
        let broker = Broker::start(&[]);
        let queue = broker.queue_name("hello");
        let connection = connect(&broker).await;
        let channel = open_channel(&connection).await;
        declare(&channel, &queue, false).await;

        publish(&channel, &queue, "Hello World!", false).await;

        let mut messages = consume(&channel, &queue, "hello-consumer", false).await;
        let message = next_message(&mut messages, "the Hello World! message").await;
        assert_eq!(message.body, "Hello World!", "expected the published body");
        assert_eq!(
            message.routing_key, queue,
            "expected the queue name as routing key"
        );
        assert_eq!(message.exchange, "", "expected the default exchange");
        assert!(
            !message.redelivered,
            "expected redelivered=false on a first delivery"
        );
        ack(&channel, &message).await;
        assert_no_message(&mut messages, "only one message was published").await;

        connection
            .close()
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
        let publish_channel = open_channel(&producer).await;
        declare(&publish_channel, &queue, true).await;

        // Slow worker: takes the first task and holds it unacked.
        let slow_connection = connect(&broker).await;
        let slow_channel = open_channel(&slow_connection).await;
        declare(&slow_channel, &queue, true).await;
        qos_one(&slow_channel).await;
        let mut slow = consume(&slow_channel, &queue, "slow-worker", true).await;
        publish(&publish_channel, &queue, "slow task", true).await;
        let held = next_message(&mut slow, "the slow task").await;
        assert_eq!(
            held.body, "slow task",
            "expected the first task at the slow worker"
        );

        // Fast worker joins; ten tasks arrive while the slow one is busy.
        let fast_connection = connect(&broker).await;
        let fast_channel = open_channel(&fast_connection).await;
        qos_one(&fast_channel).await;
        let mut fast = consume(&fast_channel, &queue, "fast-worker", true).await;
        for i in 1..=10 {
            publish(&publish_channel, &queue, &format!("fast task {i}"), true).await;
        }
        for i in 1..=10 {
            let message = next_message(&mut fast, &format!("fast task {i}")).await;
            assert_eq!(
                message.body,
                format!("fast task {i}"),
                "expected tasks in order"
            );
            assert_eq!(
                message.delivery_mode,
                Some(2),
                "expected persistent delivery_mode=2"
            );
            assert!(!message.redelivered, "expected redelivered=false");
            ack(&fast_channel, &message).await;
        }
        assert_no_message(
            &mut slow,
            "the slow worker holds an unacked task with prefetch 1",
        )
        .await;

        ack(&slow_channel, &held).await;
        assert_no_message(&mut slow, "every task is done").await;
        assert_no_message(&mut fast, "every task is done").await;

        let (messages, consumers) = declare(&publish_channel, &queue, true).await;
        assert_eq!(messages, 0, "expected all 11 tasks acked and gone");
        assert_eq!(consumers, 2, "expected both workers still consuming");

        slow_connection.close().await.unwrap_or_else(|e| {
            panic!("expected connection.close-ok for the slow worker, got {e}")
        });
        fast_connection.close().await.unwrap_or_else(|e| {
            panic!("expected connection.close-ok for the fast worker, got {e}")
        });
        producer
            .close()
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
        let channel = open_channel(&connection).await;
        declare(&channel, &queue, true).await;
        let bodies: Vec<String> = (1..=3).map(|i| format!("task {i}")).collect();
        for b in &bodies {
            publish(&channel, &queue, b, true).await;
        }

        let first_channel = open_channel(&connection).await;
        let mut first = consume(&first_channel, &queue, "first", true).await;
        for b in &bodies {
            let message = next_message(&mut first, b).await;
            assert_eq!(&message.body, b, "expected first deliveries in order");
            assert!(
                !message.redelivered,
                "expected redelivered=false on first delivery"
            );
        }
        first_channel
            .close()
            .await
            .unwrap_or_else(|e| panic!("expected channel.close-ok, got {e}"));

        let second_channel = open_channel(&connection).await;
        let mut second = consume(&second_channel, &queue, "second", true).await;
        for b in &bodies {
            let message = next_message(&mut second, &format!("redelivered {b}")).await;
            assert_eq!(
                &message.body, b,
                "expected redeliveries in the original order"
            );
            assert!(
                message.redelivered,
                "expected redelivered=true for {b}, got false"
            );
            ack(&second_channel, &message).await;
        }
        assert_no_message(&mut second, "every message was redelivered once").await;

        let (messages, _) = declare(&channel, &queue, true).await;
        assert_eq!(messages, 0, "expected the acked messages gone");
        connection
            .close()
            .await
            .unwrap_or_else(|e| panic!("expected connection.close-ok, got {e}"));
    });
}
