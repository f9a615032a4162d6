//! Queues owned by another shard than the connection's behave like local ones: order kept,
//! acks and redelivery work.
//!
//! The broker runs with `--shards 2` and the test uses one queue owned by shard 0 and one
//! owned by shard 1 over the same connection, so whichever shard the connection landed on,
//! one of the two queues is remote. Against an external broker (`WARREN_TEST_AMQP_PORT`) the
//! same steps simply run there.

mod support;

use std::ops::Range;
use std::time::Duration;

use lapin::{BasicProperties, Channel, Connection};
use support::lapin_client::{
    ack, body, close, close_channel, connect, consume, declare, message_count, open_channel,
    publish, qos, Deliveries,
};
use support::{queue_per_shard, run_async, Broker};
use warren::ids::queue_shard;

const SHARDS: usize = 2;
const TEST_TIMEOUT: Duration = Duration::from_secs(90);
const MESSAGE_COUNT: usize = 1000;
const PREFETCH_COUNT: u16 = 10;

async fn publish_numbered(channel: &Channel, queue: &str, range: Range<usize>) {
    for i in range {
        let body = format!("{queue} #{i}");
        publish(
            channel,
            "",
            queue,
            body.as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
}

/// A channel with prefetch PREFETCH_COUNT consuming `queue` with manual acks.
async fn consumer(connection: &Connection, queue: &str, tag: &str) -> (Channel, Deliveries) {
    let channel = open_channel(connection).await;
    qos(&channel, PREFETCH_COUNT).await;
    let deliveries = consume(&channel, queue, tag, false).await;
    (channel, deliveries)
}

/// Receives `range` in order, checking `redelivered`, acking each when `ack_each` is set.
async fn expect_in_order(
    deliveries: &mut Deliveries,
    queue: &str,
    range: Range<usize>,
    redelivered: bool,
    ack_each: bool,
) {
    for i in range {
        let expected = format!("{queue} #{i}");
        let delivery = deliveries.next(&expected).await;
        assert_eq!(
            body(&delivery),
            expected,
            "expected messages in publish order"
        );
        assert_eq!(
            delivery.redelivered, redelivered,
            "expected redelivered={redelivered} for {expected}, got {}",
            delivery.redelivered
        );
        if ack_each {
            ack(&delivery).await;
        }
    }
}

/// Closes a consumer's channel and checks its queue was left empty.
async fn finish_queue(channel: Channel, publisher: &Channel, queue: &str) {
    close_channel(&channel).await;
    assert_eq!(
        message_count(publisher, queue).await,
        0,
        "expected {queue} empty after acks"
    );
}

/// A broker with two shards, one queue name per shard (starting with `base`), a connection
/// and a channel on it to publish with.
async fn start(base: &str) -> (Broker, Vec<String>, Connection, Channel) {
    let broker = Broker::start(&["--shards", "2"]);
    let queues = queue_per_shard(&broker.queue_name(base), SHARDS);
    let connection = connect(&broker.amqp_url()).await;
    let publisher = open_channel(&connection).await;
    (broker, queues, connection, publisher)
}

#[test]
fn queue_names_cover_both_shards() {
    let names = queue_per_shard("cross-shard", SHARDS);
    let shards: Vec<usize> = names.iter().map(|n| queue_shard("/", n, SHARDS)).collect();
    assert_eq!(
        shards,
        vec![0, 1],
        "expected one queue per shard, got {names:?}"
    );
}

#[test]
fn thousand_messages_keep_publish_order_on_local_and_remote_queues() {
    run_async(TEST_TIMEOUT, async {
        let (_broker, queues, connection, publisher) = start("cross-shard-order").await;
        for queue in &queues {
            declare(&publisher, queue, false).await;
        }
        for queue in &queues {
            publish_numbered(&publisher, queue, 0..MESSAGE_COUNT).await;
        }

        for queue in &queues {
            let (channel, mut deliveries) = consumer(&connection, queue, "order").await;
            expect_in_order(&mut deliveries, queue, 0..MESSAGE_COUNT, false, true).await;
            deliveries.assert_quiet("all messages were consumed").await;
            finish_queue(channel, &publisher, queue).await;
        }
        close(connection, "the test's connection").await;
    });
}

#[test]
fn unacked_messages_on_local_and_remote_queues_return_redelivered_in_order() {
    run_async(TEST_TIMEOUT, async {
        let (_broker, queues, connection, publisher) = start("cross-shard-redeliver").await;
        let total = 3 * usize::from(PREFETCH_COUNT);
        let held = usize::from(PREFETCH_COUNT);
        for queue in &queues {
            declare(&publisher, queue, false).await;
            publish_numbered(&publisher, queue, 0..total).await;
        }

        for queue in &queues {
            // Take a prefetch window's worth without acking, then close.
            let (channel, mut deliveries) = consumer(&connection, queue, "holder").await;
            expect_in_order(&mut deliveries, queue, 0..held, false, false).await;
            deliveries
                .assert_quiet("prefetch 10 is used up by unacked messages")
                .await;
            close_channel(&channel).await;

            let (channel, mut deliveries) = consumer(&connection, queue, "again").await;
            expect_in_order(&mut deliveries, queue, 0..held, true, true).await;
            expect_in_order(&mut deliveries, queue, held..total, false, true).await;
            deliveries.assert_quiet("all messages were consumed").await;
            finish_queue(channel, &publisher, queue).await;
        }
        close(connection, "the test's connection").await;
    });
}
