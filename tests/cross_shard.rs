//! Queues owned by another shard than the connection's behave like local
//! ones: order kept, acks and redelivery work.
//!
//! The broker runs with `--shards 2` and the test uses one queue owned by
//! shard 0 and one owned by shard 1 over the same connection, so whichever
//! shard the connection landed on, one of the two queues is remote. Against
//! an external broker (`WARREN_TEST_AMQP_PORT`) the same steps simply run
//! there.

mod common;

use common::Broker;
use lapin::message::{Delivery, DeliveryResult};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

const SHARDS: usize = 2;
const TEST_TIMEOUT: Duration = Duration::from_secs(90);
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
const QUIET_PERIOD: Duration = Duration::from_millis(500);
const MESSAGE_COUNT: usize = 1000;
const PREFETCH_COUNT: u16 = 10;

use warren::ids::queue_shard;

/// One queue name per shard, all starting with `prefix`.
fn queue_per_shard(prefix: &str) -> Vec<String> {
    (0..SHARDS)
        .map(|shard| {
            (0..10_000)
                .map(|i| format!("{prefix}-{i}"))
                .find(|name| queue_shard("/", name, SHARDS) == shard)
                .unwrap_or_else(|| panic!("expected a queue name for shard {shard}, got none"))
        })
        .collect()
}

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

async fn declare(channel: &Channel, queue: &str) -> u32 {
    channel
        .queue_declare(queue, QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap_or_else(|e| panic!("expected queue.declare-ok for {queue}, got {e}"))
        .message_count()
}

async fn publish_numbered(channel: &Channel, queue: &str, range: std::ops::Range<usize>) {
    for i in range {
        channel
            .basic_publish(
                "",
                queue,
                BasicPublishOptions::default(),
                format!("{queue} #{i}").as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("expected basic.publish #{i} to be sent, got {e}"));
    }
}

/// A channel with prefetch PREFETCH_COUNT consuming `queue` with manual acks.
async fn consumer(
    connection: &Connection,
    queue: &str,
    tag: &str,
) -> (Channel, UnboundedReceiver<Delivery>) {
    let channel = connection
        .create_channel()
        .await
        .unwrap_or_else(|e| panic!("expected channel.open-ok, got {e}"));
    channel
        .basic_qos(PREFETCH_COUNT, BasicQosOptions::default())
        .await
        .unwrap_or_else(|e| panic!("expected basic.qos-ok, got {e}"));
    let consumer = channel
        .basic_consume(
            queue,
            tag,
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("expected basic.consume-ok on {queue}, got {e}"));
    let (tx, rx) = unbounded_channel();
    // The closure runs synchronously on lapin's reader in frame order.
    consumer.set_delegate(move |delivery: DeliveryResult| {
        if let Ok(Some(delivery)) = delivery {
            let _ = tx.send(delivery);
        }
        async {}
    });
    (channel, rx)
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

/// Receives `range` from `rx` in order, checking `redelivered`, acking each
/// when `ack` is set.
async fn expect_in_order(
    rx: &mut UnboundedReceiver<Delivery>,
    queue: &str,
    range: std::ops::Range<usize>,
    redelivered: bool,
    ack: bool,
) {
    for i in range {
        let expected = format!("{queue} #{i}");
        let delivery = next_delivery(rx, &expected).await;
        assert_eq!(
            String::from_utf8_lossy(&delivery.data),
            expected,
            "expected messages in publish order"
        );
        assert_eq!(
            delivery.redelivered, redelivered,
            "expected redelivered={redelivered} for {expected}, got {}",
            delivery.redelivered
        );
        if ack {
            delivery
                .ack(BasicAckOptions::default())
                .await
                .unwrap_or_else(|e| panic!("expected basic.ack to be sent, got {e}"));
        }
    }
}

#[test]
fn queue_names_cover_both_shards() {
    let names = queue_per_shard("cross-shard");
    let shards: Vec<usize> = names.iter().map(|n| queue_shard("/", n, SHARDS)).collect();
    assert_eq!(
        shards,
        vec![0, 1],
        "expected one queue per shard, got {names:?}"
    );
}

#[test]
fn thousand_messages_keep_publish_order_on_local_and_remote_queues() {
    run(async {
        let broker = Broker::start(&["--shards", "2"]);
        let queues = queue_per_shard(&broker.queue_name("cross-shard-order"));
        let connection = connect(&broker).await;
        let publisher = connection
            .create_channel()
            .await
            .unwrap_or_else(|e| panic!("expected channel.open-ok, got {e}"));
        for queue in &queues {
            declare(&publisher, queue).await;
        }
        for queue in &queues {
            publish_numbered(&publisher, queue, 0..MESSAGE_COUNT).await;
        }

        for queue in &queues {
            let (channel, mut rx) = consumer(&connection, queue, "order").await;
            expect_in_order(&mut rx, queue, 0..MESSAGE_COUNT, false, true).await;
            assert_no_delivery(&mut rx, "all messages were consumed").await;
            channel
                .close(200, "bye")
                .await
                .unwrap_or_else(|e| panic!("expected channel.close-ok, got {e}"));
            assert_eq!(
                declare(&publisher, queue).await,
                0,
                "expected {queue} empty after acks"
            );
        }
        connection
            .close(200, "bye")
            .await
            .unwrap_or_else(|e| panic!("expected connection.close-ok, got {e}"));
    });
}

#[test]
fn unacked_messages_on_local_and_remote_queues_return_redelivered_in_order() {
    run(async {
        let broker = Broker::start(&["--shards", "2"]);
        let queues = queue_per_shard(&broker.queue_name("cross-shard-redeliver"));
        let connection = connect(&broker).await;
        let publisher = connection
            .create_channel()
            .await
            .unwrap_or_else(|e| panic!("expected channel.open-ok, got {e}"));
        let total = 3 * usize::from(PREFETCH_COUNT);
        let held = usize::from(PREFETCH_COUNT);
        for queue in &queues {
            declare(&publisher, queue).await;
            publish_numbered(&publisher, queue, 0..total).await;
        }

        for queue in &queues {
            // Take a prefetch window's worth without acking, then close.
            let (channel, mut rx) = consumer(&connection, queue, "holder").await;
            expect_in_order(&mut rx, queue, 0..held, false, false).await;
            assert_no_delivery(&mut rx, "prefetch 10 is used up by unacked messages").await;
            channel
                .close(200, "bye")
                .await
                .unwrap_or_else(|e| panic!("expected channel.close-ok, got {e}"));

            let (channel, mut rx) = consumer(&connection, queue, "again").await;
            expect_in_order(&mut rx, queue, 0..held, true, true).await;
            expect_in_order(&mut rx, queue, held..total, false, true).await;
            assert_no_delivery(&mut rx, "all messages were consumed").await;
            channel
                .close(200, "bye")
                .await
                .unwrap_or_else(|e| panic!("expected channel.close-ok, got {e}"));
            assert_eq!(
                declare(&publisher, queue).await,
                0,
                "expected {queue} empty after acks"
            );
        }
        connection
            .close(200, "bye")
            .await
            .unwrap_or_else(|e| panic!("expected connection.close-ok, got {e}"));
    });
}
