//! Queue expiry (`x-expires`) as RabbitMQ has it: a queue unused for the period (no
//! consumers, no basic.get, no re-declare) is deleted, durable ones too, and after a restart
//! the period starts again; a queue with a consumer never expires. The argument is validated
//! with RabbitMQ's wording. Waits here only bound what must eventually happen, or give a
//! consumer-held queue far more than its period: timings never decide the outcome.

mod support;

use std::time::{Duration, Instant};

use lapin::options::{BasicCancelOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::Connection;
use support::lapin_client::{
    close_quietly, connect, declare_queue, durable, open_channel, queue_exists, start_consumer,
    table,
};
use support::{queue_per_shard, run_async, Broker, RestartableBroker};

const TEST_TIMEOUT: Duration = Duration::from_secs(90);

fn expires(ms: i64) -> FieldTable {
    table(&[("x-expires", AMQPValue::LongLongInt(ms))])
}

/// Waits (bounded) until `queue`, with an x-expires `period`, is gone: each look is a use,
/// so looks are three periods apart.
async fn wait_gone(connection: &Connection, queue: &str, period: Duration) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(period * 3).await;
        if !queue_exists(connection, queue).await {
            return;
        }
        assert!(Instant::now() < deadline, "expected {queue} to expire");
    }
}

#[test]
fn an_unused_queue_expires_and_one_with_a_consumer_does_not() {
    let broker = Broker::start(&["--shards", "2"]);
    let url = broker.amqp_url();
    run_async(TEST_TIMEOUT, async move {
        let connection = connect(&url).await;
        let channel = open_channel(&connection).await;
        for queue in queue_per_shard("expires-unused", 2) {
            declare_queue(
                &channel,
                &queue,
                QueueDeclareOptions::default(),
                expires(100),
            )
            .await;
            wait_gone(&connection, &queue, Duration::from_millis(100)).await;
        }
        for queue in queue_per_shard("expires-consumed", 2) {
            declare_queue(
                &channel,
                &queue,
                QueueDeclareOptions::default(),
                expires(100),
            )
            .await;
            let consumer = open_channel(&connection).await;
            let holder = start_consumer(&consumer, &queue, "holder", true).await;
            tokio::time::sleep(Duration::from_millis(1000)).await;
            assert!(
                queue_exists(&connection, &queue).await,
                "{queue} has a consumer"
            );
            consumer
                .basic_cancel("holder", BasicCancelOptions::default())
                .await
                .expect("basic.cancel-ok");
            drop(holder);
            wait_gone(&connection, &queue, Duration::from_millis(100)).await;
        }
        close_quietly(connection).await;
    });
}

#[test]
fn x_expires_and_x_message_ttl_are_validated() {
    let broker = Broker::start(&[]);
    let url = broker.amqp_url();
    run_async(TEST_TIMEOUT, async move {
        let connection = connect(&url).await;
        let ttl = |n| table(&[("x-message-ttl", AMQPValue::LongLongInt(n))]);
        let cases = [
            ("exp-zero", expires(0), "x-expires", "{value_zero,0}"),
            ("exp-neg", expires(-5), "x-expires", "{value_negative,-5}"),
            (
                "exp-big",
                expires(1 << 40),
                "x-expires",
                "{value_too_large,1099511627776}",
            ),
            ("ttl-neg", ttl(-1), "x-message-ttl", "{value_negative,-1}"),
        ];
        for (queue, args, key, why) in cases {
            let channel = open_channel(&connection).await;
            let err = channel
                .queue_declare(queue, QueueDeclareOptions::default(), args)
                .await
                .expect_err("a refusal");
            let expected = format!(
                "PRECONDITION_FAILED - invalid arg '{key}' for queue '{queue}' in vhost '/': {why}"
            );
            assert!(
                err.to_string().contains(&expected),
                "expected {expected:?}, got {err}"
            );
        }
        close_quietly(connection).await;
    });
}

#[test]
fn a_durable_queue_expires_after_a_restart_with_its_period_started_again() {
    let Some(mut broker) = RestartableBroker::start(&["--shards", "2"]) else {
        return;
    };
    let queue = queue_per_shard("expires-durable", 2)[1].clone();
    run_async(TEST_TIMEOUT, async {
        let connection = connect(&broker.amqp_url()).await;
        let channel = open_channel(&connection).await;
        declare_queue(&channel, &queue, durable(), expires(1500)).await;
        close_quietly(connection).await;
    });
    broker.restart_after_kill_9();
    run_async(TEST_TIMEOUT, async {
        let connection = connect(&broker.amqp_url()).await;
        assert!(
            queue_exists(&connection, &queue).await,
            "recovered, its period started again"
        );
        wait_gone(&connection, &queue, Duration::from_millis(1500)).await;
        close_quietly(connection).await;
    });
    broker.restart_after_kill_9();
    run_async(TEST_TIMEOUT, async {
        let connection = connect(&broker.amqp_url()).await;
        assert!(
            !queue_exists(&connection, &queue).await,
            "its deletion was durable"
        );
        close_quietly(connection).await;
    });
}
