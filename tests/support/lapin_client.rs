//! lapin 2.x plumbing shared by the tests that speak AMQP through lapin. Every call is bounded
//! by `OP_TIMEOUT` (reached only when something is broken) and panics with what was expected
//! and what came.

use std::future::Future;
use std::time::Duration;

use lapin::message::{Delivery, DeliveryResult};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::{Confirmation, PublisherConfirm};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// Bounds one AMQP round trip or one awaited delivery.
pub const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long "nothing (more) arrives" is watched for (a short wait can only miss something).
pub const QUIET_PERIOD: Duration = Duration::from_millis(500);

/// `future`, which must complete within `OP_TIMEOUT`; `what` names it in the panic.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(OP_TIMEOUT, future)
        .await
        .unwrap_or_else(|_| panic!("expected {what} within {OP_TIMEOUT:?}, got a timeout"))
}

pub async fn connect(url: &str) -> Connection {
    within(
        "a connection",
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    .unwrap_or_else(|e| panic!("expected a connection to {url}, got {e}"))
}

pub async fn open_channel(connection: &Connection) -> Channel {
    within("channel.open-ok", connection.create_channel())
        .await
        .unwrap_or_else(|e| panic!("expected channel.open-ok, got {e}"))
}

/// A connection to `url` and a channel on it.
pub async fn connect_channel(url: &str) -> (Connection, Channel) {
    let connection = connect(url).await;
    let channel = open_channel(&connection).await;
    (connection, channel)
}

pub async fn confirm_select(channel: &Channel) {
    within(
        "confirm.select-ok",
        channel.confirm_select(ConfirmSelectOptions::default()),
    )
    .await
    .unwrap_or_else(|e| panic!("expected confirm.select-ok, got {e}"));
}

/// A channel in confirm mode.
pub async fn confirm_channel(connection: &Connection) -> Channel {
    let channel = open_channel(connection).await;
    confirm_select(&channel).await;
    channel
}

/// connection.close, which must be answered with close-ok; `who` names the connection.
pub async fn close(connection: Connection, who: &str) {
    within("connection.close-ok", connection.close(200, "bye"))
        .await
        .unwrap_or_else(|e| panic!("expected connection.close-ok for {who}, got {e}"));
}

/// connection.close, ignoring how it ends (the broker may be gone).
pub async fn close_quietly(connection: Connection) {
    let _ = within("connection.close-ok", connection.close(200, "done")).await;
}

/// channel.close, which must be answered with close-ok.
pub async fn close_channel(channel: &Channel) {
    within("channel.close-ok", channel.close(200, "bye"))
        .await
        .unwrap_or_else(|e| panic!("expected channel.close-ok, got {e}"));
}

pub async fn qos(channel: &Channel, prefetch_count: u16) {
    within(
        "basic.qos-ok",
        channel.basic_qos(prefetch_count, BasicQosOptions::default()),
    )
    .await
    .unwrap_or_else(|e| panic!("expected basic.qos-ok, got {e}"));
}

/// `QueueDeclareOptions` with `durable` set.
pub fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

pub async fn declare_queue(
    channel: &Channel,
    queue: &str,
    options: QueueDeclareOptions,
    arguments: FieldTable,
) -> lapin::Queue {
    within(
        "queue.declare-ok",
        channel.queue_declare(queue, options, arguments),
    )
    .await
    .unwrap_or_else(|e| panic!("expected queue.declare-ok for {queue}, got {e}"))
}

/// queue.declare, durable or not, without arguments.
pub async fn declare(channel: &Channel, queue: &str, durable: bool) -> lapin::Queue {
    let options = QueueDeclareOptions {
        durable,
        ..QueueDeclareOptions::default()
    };
    declare_queue(channel, queue, options, FieldTable::default()).await
}

/// queue.declare with an empty name, exclusive: the tutorials' queue. Checks the name is
/// server-generated and returns it.
pub async fn declare_server_named(channel: &Channel) -> String {
    let options = QueueDeclareOptions {
        exclusive: true,
        ..QueueDeclareOptions::default()
    };
    let queue = declare_queue(channel, "", options, FieldTable::default()).await;
    let name = queue.name().as_str().to_string();
    assert!(
        name.starts_with("amq.gen-"),
        "expected a server-generated name amq.gen-..., got {name:?}"
    );
    name
}

/// Ready messages in `queue`, by a passive queue.declare (which must succeed).
pub async fn message_count(channel: &Channel, queue: &str) -> u32 {
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    declare_queue(channel, queue, options, FieldTable::default())
        .await
        .message_count()
}

pub async fn declare_exchange(
    channel: &Channel,
    exchange: &str,
    kind: ExchangeKind,
    durable: bool,
) {
    let options = ExchangeDeclareOptions {
        durable,
        ..ExchangeDeclareOptions::default()
    };
    within(
        "exchange.declare-ok",
        channel.exchange_declare(exchange, kind, options, FieldTable::default()),
    )
    .await
    .unwrap_or_else(|e| panic!("expected exchange.declare-ok for {exchange}, got {e}"));
}

pub async fn bind(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    key: &str,
    arguments: FieldTable,
) {
    within(
        "queue.bind-ok",
        channel.queue_bind(queue, exchange, key, QueueBindOptions::default(), arguments),
    )
    .await
    .unwrap_or_else(|e| {
        panic!("expected queue.bind-ok for {queue} <- {exchange} {key:?}, got {e}")
    });
}

/// basic.publish (not mandatory), without waiting for a confirm.
pub async fn publish(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) {
    publish_for_confirm(channel, exchange, routing_key, body, properties).await;
}

/// basic.publish (not mandatory); returns the confirm to await (on a confirm channel).
pub async fn publish_for_confirm(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> PublisherConfirm {
    within(
        "basic.publish",
        channel.basic_publish(
            exchange,
            routing_key,
            BasicPublishOptions::default(),
            body,
            properties,
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("expected basic.publish to be sent, got {e}"))
}

/// Publishes on a confirm channel and waits for the confirm, which must be basic.ack; true if
/// the message was returned as unroutable (only possible with `mandatory`).
pub async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    mandatory: bool,
    body: &[u8],
    properties: BasicProperties,
) -> bool {
    let options = BasicPublishOptions {
        mandatory,
        ..BasicPublishOptions::default()
    };
    let confirm = within(
        "basic.publish",
        channel.basic_publish(exchange, routing_key, options, body, properties),
    )
    .await
    .unwrap_or_else(|e| panic!("expected basic.publish to be sent, got {e}"));
    let confirmation = within("a publisher confirm", confirm)
        .await
        .unwrap_or_else(|e| panic!("expected a publisher confirm, got {e}"));
    match confirmation {
        Confirmation::Ack(returned) => returned.is_some(),
        other => panic!(
            "expected basic.ack for {:?} to {exchange:?}/{routing_key:?}, got {other:?}",
            String::from_utf8_lossy(body)
        ),
    }
}

/// basic.get; None on get-empty.
pub async fn get(channel: &Channel, queue: &str, no_ack: bool) -> Option<Delivery> {
    within(
        "basic.get-ok or get-empty",
        channel.basic_get(queue, BasicGetOptions { no_ack }),
    )
    .await
    .unwrap_or_else(|e| panic!("expected basic.get-ok or get-empty on {queue}, got {e}"))
    .map(|message| message.delivery)
}

/// Everything in `queue`, by basic.get with no-ack, in order.
/// basic.get (no-ack) on `queue` until a message comes, within `OP_TIMEOUT`: for messages
/// that arrive asynchronously (dead letters, say).
pub async fn get_eventually(channel: &Channel, queue: &str) -> Delivery {
    let deadline = std::time::Instant::now() + OP_TIMEOUT;
    loop {
        if let Some(delivery) = get(channel, queue, true).await {
            return delivery;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected a message in {queue} within {OP_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn get_all(channel: &Channel, queue: &str) -> Vec<Delivery> {
    let mut out = Vec::new();
    while let Some(delivery) = get(channel, queue, true).await {
        out.push(delivery);
    }
    out
}

pub async fn ack(delivery: &Delivery) {
    within("basic.ack", delivery.ack(BasicAckOptions::default()))
        .await
        .unwrap_or_else(|e| panic!("expected basic.ack to be sent, got {e}"));
}

pub fn body(delivery: &Delivery) -> String {
    String::from_utf8_lossy(&delivery.data).into_owned()
}

pub fn bodies(deliveries: &[Delivery]) -> Vec<String> {
    deliveries.iter().map(body).collect()
}

/// A field table of `entries`.
pub fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in entries {
        table.insert(ShortString::from(*key), value.clone());
    }
    table
}

pub fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// The deliveries of one or more consumers, in the order lapin read them.
pub struct Deliveries {
    rx: UnboundedReceiver<Delivery>,
}

impl Deliveries {
    /// Forwards the deliveries of `consumers` to one receiver. (A delegate runs synchronously
    /// on lapin's reader, in frame order; only the future it returns is spawned.)
    pub fn of(consumers: impl IntoIterator<Item = Consumer>) -> Deliveries {
        let (tx, rx) = unbounded_channel();
        for consumer in consumers {
            let tx = tx.clone();
            consumer.set_delegate(move |delivery: DeliveryResult| {
                if let Ok(Some(delivery)) = delivery {
                    let _ = tx.send(delivery);
                }
                async {}
            });
        }
        Deliveries { rx }
    }

    /// The next delivery, as soon as one comes; `None` once every consumer is gone.
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }

    /// A delivery that has already arrived, if any.
    pub fn try_recv(&mut self) -> Option<Delivery> {
        self.rx.try_recv().ok()
    }

    /// The next delivery, which must come within `OP_TIMEOUT`; `what` names it.
    pub async fn next(&mut self, what: &str) -> Delivery {
        match tokio::time::timeout(OP_TIMEOUT, self.rx.recv()).await {
            Ok(Some(delivery)) => delivery,
            Ok(None) => panic!("expected {what}, got the consumer closed"),
            Err(_) => panic!("expected {what} within {OP_TIMEOUT:?}, got nothing"),
        }
    }

    /// Asserts that nothing arrives within `QUIET_PERIOD`.
    pub async fn assert_quiet(&mut self, why: &str) {
        if let Ok(Some(delivery)) = tokio::time::timeout(QUIET_PERIOD, self.rx.recv()).await {
            let head = &delivery.data[..delivery.data.len().min(64)];
            panic!(
                "expected no delivery ({why}), got one with routing key {:?}, {} bytes of body \
                 starting {:?}",
                delivery.routing_key.as_str(),
                delivery.data.len(),
                String::from_utf8_lossy(head)
            );
        }
    }

    /// Takes `count` deliveries as `routing_key:body`, then checks that nothing more arrives.
    pub async fn take_keyed(&mut self, count: usize, what: &str) -> Vec<String> {
        let mut got = Vec::new();
        for i in 0..count {
            let delivery = self
                .next(&format!(
                    "message {} of {count} at {what} (got {got:?})",
                    i + 1
                ))
                .await;
            got.push(format!("{}:{}", delivery.routing_key, body(&delivery)));
        }
        self.assert_quiet(&format!("only {got:?} at {what}")).await;
        got
    }
}

/// basic.consume on `queue` with consumer tag `tag` (empty: server-named).
pub async fn start_consumer(channel: &Channel, queue: &str, tag: &str, no_ack: bool) -> Consumer {
    let options = BasicConsumeOptions {
        no_ack,
        ..BasicConsumeOptions::default()
    };
    within(
        "basic.consume-ok",
        channel.basic_consume(queue, tag, options, FieldTable::default()),
    )
    .await
    .unwrap_or_else(|e| panic!("expected basic.consume-ok on {queue}, got {e}"))
}

/// Consumes `queue` and returns its deliveries, in arrival order.
pub async fn consume(channel: &Channel, queue: &str, tag: &str, no_ack: bool) -> Deliveries {
    Deliveries::of([start_consumer(channel, queue, tag, no_ack).await])
}

/// True when `queue` exists (a passive declare on a fresh channel succeeds). As in RabbitMQ,
/// the declare counts as a use: the queue's period starts again.
pub async fn queue_exists(connection: &Connection, queue: &str) -> bool {
    let channel = open_channel(connection).await;
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let found = channel
        .queue_declare(queue, options, FieldTable::default())
        .await
        .is_ok();
    if found {
        let _ = channel.close(200, "done").await;
    }
    found
}

/// Connects to the default vhost as `user`; the error text when the broker refuses (or
/// does not answer within 10 s).
pub async fn connect_as(port: u16, user: &str, password: &str) -> Result<Connection, String> {
    connect_to(port, user, password, "/")
        .await
        .map_err(|e| e.to_string())
}

/// Connects to `vhost` as `user` (the vhost percent-encoded in the URL: `/` is `%2F`); the
/// broker's refusal as lapin reports it (`lapin::Error::ProtocolError` carries the reply code
/// and text), or an `IOError` of kind `TimedOut` when it does not answer within 10 s.
pub async fn connect_to(
    port: u16,
    user: &str,
    password: &str,
    vhost: &str,
) -> Result<Connection, lapin::Error> {
    let url = format!(
        "amqp://{user}:{password}@127.0.0.1:{port}/{}",
        percent_encode(vhost)
    );
    let attempt = Connection::connect(&url, lapin::ConnectionProperties::default());
    match tokio::time::timeout(std::time::Duration::from_secs(10), attempt).await {
        Ok(result) => result,
        Err(_) => Err(lapin::Error::IOError(std::sync::Arc::new(
            std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 10 s"),
        ))),
    }
}

/// `s` with every byte but RFC 3986's unreserved ones as `%XX`.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The operation must have been refused with an error whose text holds `text`.
pub fn assert_refused<T>(result: Result<T, lapin::Error>, text: &str) {
    match result {
        Ok(_) => panic!("expected a refusal: {text}"),
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.contains(text), "expected {text:?}, got {shown}");
        }
    }
}
