//! Delivery limits (`x-delivery-limit`): each return of a message to its queue (nack or
//! reject with requeue, or its channel closing) counts; a redelivery carries the count in
//! `x-delivery-count`; past the limit the message is dead-lettered with reason
//! `delivery_limit` (or dropped without a dead-letter exchange). RabbitMQ applies the limit
//! to quorum queues, so the quorum case runs against RabbitMQ too; Warren applies it to every
//! queue, which the classic case checks on Warren only.

mod support;

use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{BasicNackOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};
use support::lapin_client::{
    close_quietly, connect_channel, consume, declare_queue, get_eventually, message_count,
    open_channel, publish, table,
};
use support::{queue_per_shard, run_async, Broker};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

fn delivery_count(d: &Delivery) -> Option<i64> {
    match d
        .properties
        .headers()
        .as_ref()?
        .inner()
        .get("x-delivery-count")?
    {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        other => panic!("expected an integer x-delivery-count, got {other:?}"),
    }
}

/// Declares `queue` (limit 2, dead-lettering to `target`) as `kind`, publishes one message,
/// nacks it with requeue three times, and checks what each delivery and the dead letter say.
async fn run_limit(channel: &Channel, queue: &str, target: &str, kind: &str) {
    let args = table(&[
        (
            "x-queue-type",
            AMQPValue::LongString(LongString::from(kind)),
        ),
        ("x-delivery-limit", AMQPValue::LongLongInt(2)),
        (
            "x-dead-letter-exchange",
            AMQPValue::LongString(LongString::from("")),
        ),
        (
            "x-dead-letter-routing-key",
            AMQPValue::LongString(LongString::from(target)),
        ),
    ]);
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    declare_queue(channel, queue, options, args).await;
    declare_queue(
        channel,
        target,
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await;
    publish(channel, "", queue, b"flaky", BasicProperties::default()).await;
    let mut deliveries = consume(channel, queue, &format!("c-{queue}"), false).await;
    for expected in [None, Some(1), Some(2)] {
        let d = deliveries.next("a delivery").await;
        assert_eq!(delivery_count(&d), expected, "{queue}: x-delivery-count");
        let requeue = BasicNackOptions {
            multiple: false,
            requeue: true,
        };
        d.acker.nack(requeue).await.expect("basic.nack");
    }
    let dead = get_eventually(channel, target).await;
    assert_eq!(&dead.data[..], b"flaky");
    let headers = dead.properties.headers().clone().expect("headers");
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        panic!("expected x-death, got {headers:?}");
    };
    let Some(AMQPValue::FieldTable(first)) = deaths.as_slice().first() else {
        panic!("expected an x-death entry");
    };
    assert_eq!(
        first.inner().get("reason"),
        Some(&AMQPValue::LongString(LongString::from("delivery_limit")))
    );
    assert_eq!(message_count(channel, queue).await, 0, "{queue}");
}

#[test]
fn a_quorum_queue_dead_letters_past_its_delivery_limit() {
    let broker = Broker::start(&["--shards", "2"]);
    let url = broker.amqp_url();
    run_async(TEST_TIMEOUT, async move {
        let (connection, _) = connect_channel(&url).await;
        let names = queue_per_shard("delivery-limit-quorum", 2);
        let channel = open_channel(&connection).await;
        run_limit(&channel, &names[0], &names[1], "quorum").await;
        close_quietly(connection).await;
    });
}

#[test]
fn warren_applies_the_delivery_limit_to_classic_queues_too() {
    let broker = Broker::start(&["--shards", "2"]);
    if broker.is_external() {
        return; // RabbitMQ's classic queues ignore x-delivery-limit
    }
    let url = broker.amqp_url();
    run_async(TEST_TIMEOUT, async move {
        let (connection, _) = connect_channel(&url).await;
        let names = queue_per_shard("delivery-limit-classic", 2);
        let channel = open_channel(&connection).await;
        run_limit(&channel, &names[1], &names[0], "classic").await;
        close_quietly(connection).await;
    });
}
