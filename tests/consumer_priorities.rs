//! Consumer priorities (`x-priority` of basic.consume), as RabbitMQ has them: consumers of
//! the highest priority that have prefetch credit get messages; lower ones get messages only
//! while every higher one is out of credit; consumers of one priority take turns. The
//! `consumer_priorities` capability is advertised. The queue sits on each shard in turn.

mod support;

use std::time::Duration;

use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use support::lapin_client::{
    body, close_quietly, connect, declare_queue, open_channel, publish, qos, table, within,
    Deliveries,
};
use support::{queue_per_shard, run_async, Broker};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

async fn consume_with_priority(
    channel: &Channel,
    queue: &str,
    tag: &str,
    priority: i32,
) -> Deliveries {
    let args = table(&[("x-priority", AMQPValue::LongInt(priority))]);
    let consumer = within(
        "basic.consume-ok",
        channel.basic_consume(queue, tag, BasicConsumeOptions::default(), args),
    )
    .await
    .expect("basic.consume-ok");
    Deliveries::of([consumer])
}

#[test]
fn higher_priority_consumers_with_credit_come_first() {
    let broker = Broker::start(&["--shards", "2"]);
    let url = broker.amqp_url();
    run_async(TEST_TIMEOUT, async move {
        let connection = connect(&url).await;
        let setup = open_channel(&connection).await;
        for queue in queue_per_shard("consumer-priority", 2) {
            declare_queue(
                &setup,
                &queue,
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await;
            let low_channel = open_channel(&connection).await;
            let mut low = consume_with_priority(&low_channel, &queue, "low", 1).await;
            let high_channel = open_channel(&connection).await;
            qos(&high_channel, 2).await;
            let mut high = consume_with_priority(&high_channel, &queue, "high", 10).await;
            for i in 1..=4 {
                let b = format!("m{i}");
                publish(&setup, "", &queue, b.as_bytes(), BasicProperties::default()).await;
            }
            // The high-priority consumer takes what its prefetch of 2 allows; the rest goes
            // to the low one while the high one is full.
            let h1 = high.next("m1 at high").await;
            let h2 = high.next("m2 at high").await;
            assert_eq!((body(&h1), body(&h2)), ("m1".to_string(), "m2".to_string()));
            let l3 = low.next("m3 at low").await;
            let l4 = low.next("m4 at low").await;
            assert_eq!((body(&l3), body(&l4)), ("m3".to_string(), "m4".to_string()));
            for d in [l3, l4] {
                d.acker.ack(BasicAckOptions::default()).await.expect("ack");
            }
            // With credit back, the high one is first again.
            h1.acker.ack(BasicAckOptions::default()).await.expect("ack");
            publish(&setup, "", &queue, b"m5", BasicProperties::default()).await;
            let h5 = high.next("m5 at high").await;
            assert_eq!(body(&h5), "m5");
            low.assert_quiet("the high consumer had credit").await;
            for d in [h2, h5] {
                d.acker.ack(BasicAckOptions::default()).await.expect("ack");
            }
            low_channel.close(200, "bye").await.expect("channel.close");
            high_channel.close(200, "bye").await.expect("channel.close");
        }
        close_quietly(connection).await;
    });
}

#[test]
fn x_priority_must_be_an_integer() {
    let broker = Broker::start(&[]);
    let url = broker.amqp_url();
    run_async(TEST_TIMEOUT, async move {
        let connection = connect(&url).await;
        let channel = open_channel(&connection).await;
        declare_queue(
            &channel,
            "prio-bad",
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
        let args = table(&[("x-priority", AMQPValue::LongString("high".into()))]);
        let err = channel
            .basic_consume("prio-bad", "c", BasicConsumeOptions::default(), args)
            .await
            .expect_err("a refusal");
        let expected = "PRECONDITION_FAILED - invalid arg 'x-priority' for queue 'prio-bad' in vhost '/': \"expected integer, got longstr\"";
        assert!(
            err.to_string().contains(expected),
            "expected {expected:?}, got {err}"
        );
        close_quietly(connection).await;
    });
}
