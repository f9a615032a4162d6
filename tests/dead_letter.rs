//! Dead lettering as RabbitMQ's classic queues do it: a queue with `x-dead-letter-exchange`
//! republishes a message rejected without requeue, expired, or pushed out by a length limit
//! to that exchange (with `x-dead-letter-routing-key` or its own routing key), with an
//! `x-death` entry per (queue, reason) whose count goes up on repeats, `x-first-death-*`
//! headers, and `expiration` moved to `original-expiration`. Cycles with no rejection in them
//! are dropped. Queues sit on every pair of shards; a durable setup survives kill -9.
//!
//! Against RabbitMQ (`WARREN_TEST_AMQP_PORT`) the same scenarios pass, except the
//! `x-last-death-*` headers, which RabbitMQ added after 3.10 and are checked only on Warren.

mod support;

use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, ExchangeKind};
use support::lapin_client::{
    bind, close_quietly, confirm_channel, connect, connect_channel, consume, declare_exchange,
    declare_queue, durable, get_eventually, message_count, open_channel, publish,
    publish_for_confirm, table, within,
};
use support::{queue_per_shard, run_async, Broker, RestartableBroker};

const SHARDS: usize = 2;
const TEST_TIMEOUT: Duration = Duration::from_secs(90);

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

fn long(n: i64) -> AMQPValue {
    AMQPValue::LongLongInt(n)
}

/// Arguments that dead-letter to `exchange`, with `routing_key` when given.
fn dlx(exchange: &str, routing_key: Option<&str>, more: &[(&str, AMQPValue)]) -> FieldTable {
    let mut entries = vec![("x-dead-letter-exchange", text(exchange))];
    if let Some(key) = routing_key {
        entries.push(("x-dead-letter-routing-key", text(key)));
    }
    entries.extend(more.iter().cloned());
    table(&entries)
}

fn plain() -> lapin::options::QueueDeclareOptions {
    lapin::options::QueueDeclareOptions::default()
}

/// A (queue, dead-letter target) pair of names for every (queue shard, target shard) pair.
fn pairs(prefix: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in 0..SHARDS {
        for j in 0..SHARDS {
            let source = queue_per_shard(&format!("{prefix}-src{j}"), SHARDS)[i].clone();
            let target = queue_per_shard(&format!("{prefix}-dst{i}"), SHARDS)[j].clone();
            out.push((source, target));
        }
    }
    out
}

fn as_str(value: Option<&AMQPValue>) -> String {
    match value {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.as_str().to_string(),
        other => panic!("expected a string, got {other:?}"),
    }
}

fn headers(delivery: &Delivery) -> FieldTable {
    delivery
        .properties
        .headers()
        .clone()
        .expect("expected headers on a dead-lettered message")
}

/// The `x-death` entries of `delivery`, newest first.
fn deaths(delivery: &Delivery) -> Vec<FieldTable> {
    match headers(delivery).inner().get("x-death") {
        Some(AMQPValue::FieldArray(items)) => items
            .as_slice()
            .iter()
            .map(|v| match v {
                AMQPValue::FieldTable(t) => t.clone(),
                other => panic!("expected an x-death table, got {other:?}"),
            })
            .collect(),
        other => panic!("expected an x-death array, got {other:?}"),
    }
}

fn count(entry: &FieldTable) -> i64 {
    match entry.inner().get("count") {
        Some(AMQPValue::LongLongInt(n)) => *n,
        Some(AMQPValue::LongInt(n)) => i64::from(*n),
        other => panic!("expected an x-death count, got {other:?}"),
    }
}

/// Checks one x-death entry: (queue, reason, exchange, routing keys, count).
fn check_death(
    entry: &FieldTable,
    queue: &str,
    reason: &str,
    exchange: &str,
    keys: &[&str],
    n: i64,
) {
    let get = |k: &str| as_str(entry.inner().get(k));
    assert_eq!(
        (get("queue"), get("reason"), get("exchange"), count(entry)),
        (
            queue.to_string(),
            reason.to_string(),
            exchange.to_string(),
            n
        ),
        "x-death entry {entry:?}"
    );
    let routing_keys: Vec<String> = match entry.inner().get("routing-keys") {
        Some(AMQPValue::FieldArray(a)) => a.as_slice().iter().map(|v| as_str(Some(v))).collect(),
        other => panic!("expected routing-keys, got {other:?}"),
    };
    assert_eq!(routing_keys, keys, "routing-keys of {entry:?}");
    assert!(
        matches!(entry.inner().get("time"), Some(AMQPValue::Timestamp(_))),
        "expected a timestamp in {entry:?}"
    );
}

/// Checks `x-first-death-*` (and, on Warren, `x-last-death-*`).
fn check_first_and_last(
    delivery: &Delivery,
    first: (&str, &str, &str),
    last: (&str, &str, &str),
    warren: bool,
) {
    let h = headers(delivery);
    let get = |k: &str| as_str(h.inner().get(k));
    assert_eq!(
        (
            get("x-first-death-queue"),
            get("x-first-death-reason"),
            get("x-first-death-exchange")
        ),
        (
            first.0.to_string(),
            first.1.to_string(),
            first.2.to_string()
        )
    );
    if warren {
        assert_eq!(
            (
                get("x-last-death-queue"),
                get("x-last-death-reason"),
                get("x-last-death-exchange")
            ),
            (last.0.to_string(), last.1.to_string(), last.2.to_string())
        );
    }
}

#[test]
fn rejected_and_nacked_messages_are_dead_lettered_with_x_death() {
    let broker = Broker::start(&["--shards", "2"]);
    let url = broker.amqp_url();
    let warren = !broker.is_external();
    run_async(TEST_TIMEOUT, async move {
        let (connection, channel) = connect_channel(&url).await;
        declare_exchange(&channel, "dlx-direct", ExchangeKind::Direct, false).await;
        for (source, target) in pairs("rejected") {
            declare_queue(&channel, &source, plain(), dlx("dlx-direct", None, &[])).await;
            declare_queue(&channel, &target, plain(), FieldTable::default()).await;
            bind(
                &channel,
                &target,
                "dlx-direct",
                &source,
                FieldTable::default(),
            )
            .await;
            for body in ["rejected", "nacked", "acked"] {
                publish(
                    &channel,
                    "",
                    &source,
                    body.as_bytes(),
                    BasicProperties::default(),
                )
                .await;
            }
            let consumer_channel = open_channel(&connection).await;
            let mut deliveries = consume(&consumer_channel, &source, "c", false).await;
            for _ in 0..3 {
                let d = deliveries.next("a delivery").await;
                let outcome = match &d.data[..] {
                    b"rejected" => d.acker.reject(BasicRejectOptions { requeue: false }).await,
                    b"nacked" => {
                        let options = BasicNackOptions {
                            multiple: false,
                            requeue: false,
                        };
                        d.acker.nack(options).await
                    }
                    _ => d.acker.ack(BasicAckOptions::default()).await,
                };
                outcome.expect("settle");
            }
            for body in ["rejected", "nacked"] {
                let dead = get_eventually(&channel, &target).await;
                assert_eq!(&dead.data[..], body.as_bytes(), "{source} -> {target}");
                assert_eq!(dead.exchange.as_str(), "dlx-direct");
                assert_eq!(dead.routing_key.as_str(), source, "its own routing key");
                let d = deaths(&dead);
                assert_eq!(d.len(), 1);
                check_death(&d[0], &source, "rejected", "", &[&source], 1);
                let first = (source.as_str(), "rejected", "");
                check_first_and_last(&dead, first, first, warren);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(
                message_count(&channel, &target).await,
                0,
                "an ack dead-letters nothing"
            );
            consumer_channel
                .close(200, "done")
                .await
                .expect("channel.close");
        }
        close_quietly(connection).await;
    });
}

#[test]
fn expired_messages_are_dead_lettered_on_time_without_a_consumer() {
    let broker = Broker::start(&["--shards", "2"]);
    let url = broker.amqp_url();
    run_async(TEST_TIMEOUT, async move {
        let (connection, channel) = connect_channel(&url).await;
        for (source, target) in pairs("expired") {
            let args = dlx("", Some(&target), &[("x-message-ttl", long(50))]);
            declare_queue(&channel, &source, plain(), args).await;
            declare_queue(&channel, &target, plain(), FieldTable::default()).await;
            publish(
                &channel,
                "",
                &source,
                b"queue-ttl",
                BasicProperties::default(),
            )
            .await;
            let per_message = BasicProperties::default().with_expiration("20".into());
            publish(&channel, "", &source, b"message-ttl", per_message).await;
            let first = get_eventually(&channel, &target).await;
            assert_eq!(&first.data[..], b"queue-ttl");
            assert_eq!(
                first.routing_key.as_str(),
                target,
                "x-dead-letter-routing-key"
            );
            let d = deaths(&first);
            check_death(&d[0], &source, "expired", "", &[&source], 1);
            assert!(d[0].inner().get("original-expiration").is_none());
            let second = get_eventually(&channel, &target).await;
            assert_eq!(&second.data[..], b"message-ttl");
            assert_eq!(
                second.properties.expiration(),
                &None,
                "expiration is removed"
            );
            let d = deaths(&second);
            assert_eq!(as_str(d[0].inner().get("original-expiration")), "20");
        }
        close_quietly(connection).await;
    });
}

#[test]
fn length_limits_dead_letter_with_reason_maxlen() {
    let broker = Broker::start(&["--shards", "2"]);
    let url = broker.amqp_url();
    run_async(TEST_TIMEOUT, async move {
        let connection = connect(&url).await;
        let channel = confirm_channel(&connection).await;
        let rejecting = pairs("maxlen-reject");
        for (n, (drop_head, target)) in pairs("maxlen").into_iter().enumerate() {
            let args = dlx("", Some(&target), &[("x-max-length", long(1))]);
            declare_queue(&channel, &drop_head, plain(), args).await;
            declare_queue(&channel, &target, plain(), FieldTable::default()).await;
            publish(
                &channel,
                "",
                &drop_head,
                b"oldest",
                BasicProperties::default(),
            )
            .await;
            publish(
                &channel,
                "",
                &drop_head,
                b"newest",
                BasicProperties::default(),
            )
            .await;
            let dead = get_eventually(&channel, &target).await;
            assert_eq!(&dead.data[..], b"oldest");
            check_death(
                &deaths(&dead)[0],
                &drop_head,
                "maxlen",
                "",
                &[&drop_head],
                1,
            );

            let reject = rejecting[n].0.clone();
            let more = [
                ("x-max-length", long(1)),
                ("x-overflow", text("reject-publish-dlx")),
            ];
            declare_queue(&channel, &reject, plain(), dlx("", Some(&target), &more)).await;
            for (body, acked) in [(&b"kept"[..], true), (b"refused", false)] {
                let confirm =
                    publish_for_confirm(&channel, "", &reject, body, BasicProperties::default())
                        .await;
                let got = within("a confirm", confirm).await.expect("a confirm");
                assert_eq!(matches!(got, Confirmation::Ack(_)), acked, "{body:?}");
            }
            let dead = get_eventually(&channel, &target).await;
            assert_eq!(
                &dead.data[..],
                b"refused",
                "the refused message is dead-lettered"
            );
            check_death(&deaths(&dead)[0], &reject, "maxlen", "", &[&reject], 1);
            assert_eq!(message_count(&channel, &reject).await, 1);
        }
        close_quietly(connection).await;
    });
}

/// The common retry topology: work queue -> (reject) retry exchange -> delay queue with a
/// TTL -> (expired) back to the work exchange. After three rejections the fourth delivery
/// carries x-death counts of 3 for both hops.
#[test]
fn the_retry_topology_counts_each_hop_in_x_death() {
    let broker = Broker::start(&["--shards", "2"]);
    let url = broker.amqp_url();
    let warren = !broker.is_external();
    run_async(TEST_TIMEOUT, async move {
        let (connection, channel) = connect_channel(&url).await;
        let [work, delay] =
            [0, 1].map(|i| queue_per_shard(&format!("retry-{i}"), SHARDS)[i].clone());
        declare_exchange(&channel, "work-x", ExchangeKind::Direct, false).await;
        declare_exchange(&channel, "retry-x", ExchangeKind::Fanout, false).await;
        declare_queue(&channel, &work, plain(), dlx("retry-x", None, &[])).await;
        bind(&channel, &work, "work-x", "task", FieldTable::default()).await;
        let args = dlx("work-x", None, &[("x-message-ttl", long(30))]);
        declare_queue(&channel, &delay, plain(), args).await;
        bind(&channel, &delay, "retry-x", "", FieldTable::default()).await;
        publish(
            &channel,
            "work-x",
            "task",
            b"job",
            BasicProperties::default(),
        )
        .await;
        let consumer = open_channel(&connection).await;
        let mut deliveries = consume(&consumer, &work, "worker", false).await;
        for attempt in 0..3 {
            let d = deliveries.next("a delivery of the job").await;
            if attempt > 0 {
                let x = deaths(&d);
                check_death(&x[0], &delay, "expired", "retry-x", &["task"], attempt);
                check_death(&x[1], &work, "rejected", "work-x", &["task"], attempt);
            }
            d.acker
                .reject(BasicRejectOptions { requeue: false })
                .await
                .expect("basic.reject");
        }
        let last = deliveries.next("the fourth delivery").await;
        let x = deaths(&last);
        assert_eq!(x.len(), 2);
        check_death(&x[0], &delay, "expired", "retry-x", &["task"], 3);
        check_death(&x[1], &work, "rejected", "work-x", &["task"], 3);
        check_first_and_last(
            &last,
            (&work, "rejected", "work-x"),
            (&delay, "expired", "retry-x"),
            warren,
        );
        last.acker
            .ack(BasicAckOptions::default())
            .await
            .expect("basic.ack");
        close_quietly(connection).await;
    });
}

/// Two queues that expire into each other: the message goes round once and is dropped when
/// it would enter the first queue again, as RabbitMQ does.
#[test]
fn a_dead_letter_cycle_without_rejections_is_dropped() {
    let broker = Broker::start(&["--shards", "2"]);
    let url = broker.amqp_url();
    run_async(TEST_TIMEOUT, async move {
        let (connection, channel) = connect_channel(&url).await;
        let names = queue_per_shard("cycle", SHARDS);
        let (a, b) = (&names[0], &names[1]);
        let ttl = [("x-message-ttl", long(20))];
        declare_queue(&channel, a, plain(), dlx("", Some(b), &ttl)).await;
        declare_queue(&channel, b, plain(), dlx("", Some(a), &ttl)).await;
        publish(&channel, "", a, b"round", BasicProperties::default()).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(message_count(&channel, a).await, 0, "{a}");
        assert_eq!(message_count(&channel, b).await, 0, "{b}");
        close_quietly(connection).await;
    });
}

#[test]
fn a_durable_dead_letter_setup_works_after_kill_9() {
    let Some(mut broker) = RestartableBroker::start(&["--shards", "2"]) else {
        return;
    };
    let (source, target) = pairs("durable-dlx").remove(1);
    let persistent = || BasicProperties::default().with_delivery_mode(2);
    run_async(TEST_TIMEOUT, async {
        let (connection, channel) = connect_channel(&broker.amqp_url()).await;
        declare_queue(&channel, &source, durable(), dlx("", Some(&target), &[])).await;
        declare_queue(&channel, &target, durable(), FieldTable::default()).await;
        let confirms = confirm_channel(&connection).await;
        let confirm = publish_for_confirm(&confirms, "", &source, b"survivor", persistent()).await;
        within("a confirm", confirm).await.expect("a confirm");
        close_quietly(connection).await;
    });
    broker.restart_after_kill_9();
    run_async(TEST_TIMEOUT, async {
        let (connection, channel) = connect_channel(&broker.amqp_url()).await;
        let consumer = open_channel(&connection).await;
        let mut deliveries = consume(&consumer, &source, "c", false).await;
        let d = deliveries.next("the recovered message").await;
        d.acker
            .reject(BasicRejectOptions { requeue: false })
            .await
            .expect("basic.reject");
        let dead = get_eventually(&channel, &target).await;
        assert_eq!(&dead.data[..], b"survivor");
        assert_eq!(
            dead.properties.delivery_mode(),
            &Some(2),
            "still persistent"
        );
        check_death(&deaths(&dead)[0], &source, "rejected", "", &[&source], 1);
        close_quietly(connection).await;
    });
}
