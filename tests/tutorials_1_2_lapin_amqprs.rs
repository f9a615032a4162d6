//! RabbitMQ tutorials 1 and 2 (hello world, work queues with prefetch 1), plus redelivery of
//! unacked messages when the consumer's channel closes, written once and run with two Rust
//! client libraries: lapin 2.x (`with_lapin::...`) and amqprs 2.x (`with_amqprs::...`).

mod support;

use std::time::Duration;

use support::{run_async, Broker};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs each scenario (an `async fn<C: RustClient>()`) as one test per client library.
macro_rules! per_client {
    ($($scenario:ident),* $(,)?) => {
        mod with_lapin {
            $(#[test]
            fn $scenario() {
                super::run_async(super::TEST_TIMEOUT, super::$scenario::<super::Lapin>());
            })*
        }
        mod with_amqprs {
            $(#[test]
            fn $scenario() {
                super::run_async(super::TEST_TIMEOUT, super::$scenario::<super::Amqprs>());
            })*
        }
    };
}

per_client!(
    hello_world_consumer_receives_the_published_body,
    work_queue_prefetch_one_sends_no_task_to_a_busy_worker,
    unacked_messages_are_redelivered_in_order_after_the_channel_closes,
);

/// A delivered message, whatever the library; `acker` is what the library acks it with.
struct Message<A> {
    body: String,
    routing_key: String,
    exchange: String,
    redelivered: bool,
    delivery_mode: Option<u8>,
    acker: A,
}

/// What the scenarios need from a client library. Every call is bounded and panics with what
/// was expected and what came.
trait RustClient {
    type Connection;
    type Channel;
    type Deliveries;
    type Acker;

    async fn connect(broker: &Broker) -> Self::Connection;
    async fn open_channel(connection: &Self::Connection) -> Self::Channel;
    /// queue.declare; returns (message count, consumer count).
    async fn declare(channel: &Self::Channel, queue: &str, durable: bool) -> (u32, u32);
    /// basic.publish to `queue` through the default exchange, persistent or not.
    async fn publish(channel: &Self::Channel, queue: &str, body: &str, persistent: bool);
    async fn qos_one(channel: &Self::Channel);
    async fn consume(
        channel: &Self::Channel,
        queue: &str,
        tag: &str,
        no_ack: bool,
    ) -> Self::Deliveries;
    /// The next delivery, which must come; `what` names it.
    async fn next(deliveries: &mut Self::Deliveries, what: &str) -> Message<Self::Acker>;
    /// Asserts that nothing arrives for a while.
    async fn assert_quiet(deliveries: &mut Self::Deliveries, why: &str);
    async fn ack(channel: &Self::Channel, message: &Message<Self::Acker>);
    async fn close_channel(channel: Self::Channel);
    async fn close(connection: Self::Connection, who: &str);
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

async fn hello_world_consumer_receives_the_published_body<C: RustClient>() {
    let broker = Broker::start(&[]);
    let queue = broker.queue_name("hello");
    let connection = C::connect(&broker).await;
    let channel = C::open_channel(&connection).await;
    C::declare(&channel, &queue, false).await;

    C::publish(&channel, &queue, "Hello World!", false).await;

    let mut deliveries = C::consume(&channel, &queue, "hello-consumer", true).await;
    let message = C::next(&mut deliveries, "the Hello World! message").await;
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
    C::assert_quiet(&mut deliveries, "only one message was published").await;
    C::close(connection, "the test's connection").await;
}

async fn work_queue_prefetch_one_sends_no_task_to_a_busy_worker<C: RustClient>() {
    let broker = Broker::start(&[]);
    let queue = broker.queue_name("task_queue");

    let producer = C::connect(&broker).await;
    let publish_channel = C::open_channel(&producer).await;
    C::declare(&publish_channel, &queue, true).await;

    // Slow worker: takes the first task and holds it unacked.
    let slow_connection = C::connect(&broker).await;
    let slow_channel = C::open_channel(&slow_connection).await;
    C::declare(&slow_channel, &queue, true).await;
    C::qos_one(&slow_channel).await;
    let mut slow = C::consume(&slow_channel, &queue, "slow-worker", false).await;
    C::publish(&publish_channel, &queue, "slow task", true).await;
    let held = C::next(&mut slow, "the slow task").await;
    assert_eq!(
        held.body, "slow task",
        "expected the first task at the slow worker"
    );

    // Fast worker joins; ten tasks arrive while the slow one is busy.
    let fast_connection = C::connect(&broker).await;
    let fast_channel = C::open_channel(&fast_connection).await;
    C::qos_one(&fast_channel).await;
    let mut fast = C::consume(&fast_channel, &queue, "fast-worker", false).await;
    for i in 1..=10 {
        C::publish(&publish_channel, &queue, &format!("fast task {i}"), true).await;
    }
    for i in 1..=10 {
        let message = C::next(&mut fast, &format!("fast task {i}")).await;
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
        C::ack(&fast_channel, &message).await;
    }
    C::assert_quiet(
        &mut slow,
        "the slow worker holds an unacked task with prefetch 1",
    )
    .await;

    C::ack(&slow_channel, &held).await;
    C::assert_quiet(&mut slow, "every task is done").await;
    C::assert_quiet(&mut fast, "every task is done").await;

    let (messages, consumers) = C::declare(&publish_channel, &queue, true).await;
    assert_eq!(messages, 0, "expected all 11 tasks acked and gone");
    assert_eq!(consumers, 2, "expected both workers still consuming");

    C::close(slow_connection, "the slow worker").await;
    C::close(fast_connection, "the fast worker").await;
    C::close(producer, "the producer").await;
}

async fn unacked_messages_are_redelivered_in_order_after_the_channel_closes<C: RustClient>() {
    let broker = Broker::start(&[]);
    let queue = broker.queue_name("task_queue");
    let connection = C::connect(&broker).await;
    let channel = C::open_channel(&connection).await;
    C::declare(&channel, &queue, true).await;
    let bodies: Vec<String> = (1..=3).map(|i| format!("task {i}")).collect();
    for b in &bodies {
        C::publish(&channel, &queue, b, true).await;
    }

    let first_channel = C::open_channel(&connection).await;
    let mut first = C::consume(&first_channel, &queue, "first", false).await;
    for b in &bodies {
        let message = C::next(&mut first, b).await;
        assert_eq!(&message.body, b, "expected first deliveries in order");
        assert!(
            !message.redelivered,
            "expected redelivered=false on first delivery"
        );
    }
    C::close_channel(first_channel).await;

    let second_channel = C::open_channel(&connection).await;
    let mut second = C::consume(&second_channel, &queue, "second", false).await;
    for b in &bodies {
        let message = C::next(&mut second, &format!("redelivered {b}")).await;
        assert_eq!(
            &message.body, b,
            "expected redeliveries in the original order"
        );
        assert!(
            message.redelivered,
            "expected redelivered=true for {b}, got false"
        );
        C::ack(&second_channel, &message).await;
    }
    C::assert_quiet(&mut second, "every message was redelivered once").await;

    let (messages, _) = C::declare(&channel, &queue, true).await;
    assert_eq!(messages, 0, "expected the acked messages gone");
    C::close(connection, "the test's connection").await;
}

// ---------------------------------------------------------------------------
// lapin
// ---------------------------------------------------------------------------

struct Lapin;

impl RustClient for Lapin {
    type Connection = lapin::Connection;
    type Channel = lapin::Channel;
    type Deliveries = support::lapin_client::Deliveries;
    type Acker = lapin::message::Delivery;

    async fn connect(broker: &Broker) -> lapin::Connection {
        support::lapin_client::connect(&broker.amqp_url()).await
    }

    async fn open_channel(connection: &lapin::Connection) -> lapin::Channel {
        support::lapin_client::open_channel(connection).await
    }

    async fn declare(channel: &lapin::Channel, queue: &str, durable: bool) -> (u32, u32) {
        let queue = support::lapin_client::declare(channel, queue, durable).await;
        (queue.message_count(), queue.consumer_count())
    }

    async fn publish(channel: &lapin::Channel, queue: &str, body: &str, persistent: bool) {
        let properties = lapin::BasicProperties::default();
        let properties = if persistent {
            properties.with_delivery_mode(2)
        } else {
            properties
        };
        support::lapin_client::publish(channel, "", queue, body.as_bytes(), properties).await;
    }

    async fn qos_one(channel: &lapin::Channel) {
        support::lapin_client::qos(channel, 1).await;
    }

    async fn consume(
        channel: &lapin::Channel,
        queue: &str,
        tag: &str,
        no_ack: bool,
    ) -> Self::Deliveries {
        support::lapin_client::consume(channel, queue, tag, no_ack).await
    }

    async fn next(deliveries: &mut Self::Deliveries, what: &str) -> Message<Self::Acker> {
        let delivery = deliveries.next(what).await;
        Message {
            body: support::lapin_client::body(&delivery),
            routing_key: delivery.routing_key.as_str().to_string(),
            exchange: delivery.exchange.as_str().to_string(),
            redelivered: delivery.redelivered,
            delivery_mode: *delivery.properties.delivery_mode(),
            acker: delivery,
        }
    }

    async fn assert_quiet(deliveries: &mut Self::Deliveries, why: &str) {
        deliveries.assert_quiet(why).await;
    }

    async fn ack(_channel: &lapin::Channel, message: &Message<Self::Acker>) {
        support::lapin_client::ack(&message.acker).await;
    }

    async fn close_channel(channel: lapin::Channel) {
        support::lapin_client::close_channel(&channel).await;
    }

    async fn close(connection: lapin::Connection, who: &str) {
        support::lapin_client::close(connection, who).await;
    }
}

// ---------------------------------------------------------------------------
// amqprs
// ---------------------------------------------------------------------------

struct Amqprs;

/// Bounds one amqprs call or one awaited delivery (reached only when something is broken).
const AMQPRS_TIMEOUT: Duration = Duration::from_secs(30);
/// How long "nothing arrives" is watched for.
const QUIET_PERIOD: Duration = Duration::from_millis(500);

async fn bounded<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(AMQPRS_TIMEOUT, future)
        .await
        .unwrap_or_else(|_| panic!("expected {what} within {AMQPRS_TIMEOUT:?}, got a timeout"))
}

type AmqprsDeliveries = tokio::sync::mpsc::UnboundedReceiver<amqprs::channel::ConsumerMessage>;

impl RustClient for Amqprs {
    type Connection = amqprs::connection::Connection;
    type Channel = amqprs::channel::Channel;
    type Deliveries = AmqprsDeliveries;
    /// The delivery tag.
    type Acker = u64;

    async fn connect(broker: &Broker) -> Self::Connection {
        let args = amqprs::connection::OpenConnectionArguments::new(
            "127.0.0.1",
            broker.port(),
            "guest",
            "guest",
        );
        bounded("a connection", amqprs::connection::Connection::open(&args))
            .await
            .unwrap_or_else(|e| panic!("expected a connection, got {e}"))
    }

    async fn open_channel(connection: &Self::Connection) -> Self::Channel {
        bounded("channel.open-ok", connection.open_channel(None))
            .await
            .unwrap_or_else(|e| panic!("expected channel.open-ok, got {e}"))
    }

    async fn declare(channel: &Self::Channel, queue: &str, durable: bool) -> (u32, u32) {
        let args = amqprs::channel::QueueDeclareArguments::new(queue)
            .durable(durable)
            .finish();
        let (_, messages, consumers) = bounded("queue.declare-ok", channel.queue_declare(args))
            .await
            .unwrap_or_else(|e| panic!("expected queue.declare-ok for {queue}, got {e}"))
            .expect("queue.declare-ok without no-wait");
        (messages, consumers)
    }

    async fn publish(channel: &Self::Channel, queue: &str, body: &str, persistent: bool) {
        let mut properties = amqprs::BasicProperties::default();
        if persistent {
            properties.with_delivery_mode(2);
        }
        let args = amqprs::channel::BasicPublishArguments::new("", queue);
        bounded(
            "basic.publish",
            channel.basic_publish(properties, body.as_bytes().to_vec(), args),
        )
        .await
        .unwrap_or_else(|e| panic!("expected basic.publish to be sent, got {e}"));
    }

    async fn qos_one(channel: &Self::Channel) {
        let args = amqprs::channel::BasicQosArguments::new(0, 1, false);
        bounded("basic.qos-ok", channel.basic_qos(args))
            .await
            .unwrap_or_else(|e| panic!("expected basic.qos-ok, got {e}"));
    }

    async fn consume(
        channel: &Self::Channel,
        queue: &str,
        tag: &str,
        no_ack: bool,
    ) -> Self::Deliveries {
        let args = amqprs::channel::BasicConsumeArguments::new(queue, tag)
            .manual_ack(!no_ack)
            .finish();
        let (_, deliveries) = bounded("basic.consume-ok", channel.basic_consume_rx(args))
            .await
            .unwrap_or_else(|e| panic!("expected basic.consume-ok on {queue}, got {e}"));
        deliveries
    }

    async fn next(deliveries: &mut Self::Deliveries, what: &str) -> Message<u64> {
        let message = bounded(what, deliveries.recv())
            .await
            .unwrap_or_else(|| panic!("expected {what}, got the consumer closed"));
        let deliver = message.deliver.expect("basic.deliver");
        let properties = message.basic_properties.expect("content header");
        Message {
            body: String::from_utf8_lossy(&message.content.expect("content body")).into_owned(),
            routing_key: deliver.routing_key().to_string(),
            exchange: deliver.exchange().to_string(),
            redelivered: deliver.redelivered(),
            delivery_mode: properties.delivery_mode(),
            acker: deliver.delivery_tag(),
        }
    }

    async fn assert_quiet(deliveries: &mut Self::Deliveries, why: &str) {
        if let Ok(Some(message)) = tokio::time::timeout(QUIET_PERIOD, deliveries.recv()).await {
            panic!(
                "expected no delivery ({why}), got {:?}",
                message
                    .content
                    .map(|c| String::from_utf8_lossy(&c).into_owned())
            );
        }
    }

    async fn ack(channel: &Self::Channel, message: &Message<u64>) {
        let args = amqprs::channel::BasicAckArguments::new(message.acker, false);
        bounded("basic.ack", channel.basic_ack(args))
            .await
            .unwrap_or_else(|e| panic!("expected basic.ack to be sent, got {e}"));
    }

    async fn close_channel(channel: Self::Channel) {
        bounded("channel.close-ok", channel.close())
            .await
            .unwrap_or_else(|e| panic!("expected channel.close-ok, got {e}"));
    }

    async fn close(connection: Self::Connection, who: &str) {
        bounded("connection.close-ok", connection.close())
            .await
            .unwrap_or_else(|e| panic!("expected connection.close-ok for {who}, got {e}"));
    }
}
