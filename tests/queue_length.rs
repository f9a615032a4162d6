//! Queue length limits as RabbitMQ's classic queues have them: `x-max-length` (ready
//! messages) and `x-max-length-bytes` (body bytes of ready messages), with `x-overflow`
//! `drop-head` (the default: the oldest ready messages go), `reject-publish` and
//! `reject-publish-dlx` (the new message is refused: `basic.nack` under confirms). Every
//! scenario runs on a queue of each shard, so that publisher and queue sit on different shards
//! in one of them; durable limits hold across a kill -9 restart.

mod support;

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};
use support::lapin_client::{
    bodies, close_quietly, confirm_channel, connect, connect_channel, declare_queue, durable,
    get_all, message_count, open_channel, publish, publish_for_confirm, table, within,
};
use support::{queue_per_shard, run_async, Broker, RestartableBroker};

const SHARDS: usize = 2;
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

fn long(n: i64) -> AMQPValue {
    AMQPValue::LongLongInt(n)
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

async fn declare(channel: &Channel, queue: &str, arguments: FieldTable) {
    declare_queue(channel, queue, QueueDeclareOptions::default(), arguments).await;
}

/// Publishes each body in turn, waiting for its confirm; returns true for each basic.ack.
async fn publish_confirmed_each(channel: &Channel, queue: &str, bodies: &[&str]) -> Vec<bool> {
    let mut acks = Vec::new();
    for body in bodies {
        let confirm = publish_for_confirm(
            channel,
            "",
            queue,
            body.as_bytes(),
            BasicProperties::default(),
        )
        .await;
        let confirmation = within("a publisher confirm", confirm)
            .await
            .unwrap_or_else(|e| panic!("expected a confirm for {body}, got {e}"));
        acks.push(match confirmation {
            Confirmation::Ack(_) => true,
            Confirmation::Nack(_) => false,
            Confirmation::NotRequested => panic!("expected a confirm, the channel has none"),
        });
    }
    acks
}

#[test]
fn max_length_drops_the_oldest_ready_messages_by_default() {
    let broker = Broker::start(&["--shards", "2"]);
    let url = broker.amqp_url();
    run_async(TEST_TIMEOUT, async move {
        let (connection, channel) = connect_channel(&url).await;
        for queue in queue_per_shard("max-length", SHARDS) {
            declare(&channel, &queue, table(&[("x-max-length", long(3))])).await;
            for i in 1..=5 {
                let body = format!("m{i}");
                publish(
                    &channel,
                    "",
                    &queue,
                    body.as_bytes(),
                    BasicProperties::default(),
                )
                .await;
            }
            let got = bodies(&get_all(&channel, &queue).await);
            assert_eq!(
                got,
                ["m3", "m4", "m5"],
                "{queue}: the two oldest were dropped"
            );
        }
        close_quietly(connection).await;
    });
}

#[test]
fn max_length_bytes_counts_body_bytes_of_ready_messages() {
    let broker = Broker::start(&["--shards", "2"]);
    let url = broker.amqp_url();
    run_async(TEST_TIMEOUT, async move {
        let (connection, channel) = connect_channel(&url).await;
        for queue in queue_per_shard("max-bytes", SHARDS) {
            let args = table(&[
                ("x-max-length-bytes", long(10)),
                ("x-overflow", text("drop-head")),
            ]);
            declare(&channel, &queue, args).await;
            for body in ["aaaa", "bbbb", "cccc", "dd"] {
                publish(
                    &channel,
                    "",
                    &queue,
                    body.as_bytes(),
                    BasicProperties::default(),
                )
                .await;
            }
            // 14 bytes: "aaaa" goes, leaving 10, which is within the limit.
            let got = bodies(&get_all(&channel, &queue).await);
            assert_eq!(got, ["bbbb", "cccc", "dd"], "{queue}");
        }
        close_quietly(connection).await;
    });
}

#[test]
fn reject_publish_nacks_what_does_not_fit_and_accepts_again_once_there_is_room() {
    let broker = Broker::start(&["--shards", "2"]);
    let url = broker.amqp_url();
    run_async(TEST_TIMEOUT, async move {
        let connection = connect(&url).await;
        let channel = confirm_channel(&connection).await;
        let plain = open_channel(&connection).await;
        for mode in ["reject-publish", "reject-publish-dlx"] {
            for queue in queue_per_shard(&format!("reject-{mode}"), SHARDS) {
                let args = table(&[("x-max-length", long(2)), ("x-overflow", text(mode))]);
                declare(&channel, &queue, args).await;
                let acks = publish_confirmed_each(&channel, &queue, &["a", "b", "c"]).await;
                assert_eq!(acks, [true, true, false], "{queue}: the third is nacked");
                // Without confirms the refused message is simply dropped.
                publish(&plain, "", &queue, b"d", BasicProperties::default()).await;
                assert_eq!(message_count(&plain, &queue).await, 2, "{queue}");
                let first = get_all(&plain, &queue).await;
                assert_eq!(bodies(&first), ["a", "b"], "{queue}");
                let acks = publish_confirmed_each(&channel, &queue, &["e"]).await;
                assert_eq!(acks, [true], "{queue}: room again once it drained");
            }
        }
        close_quietly(connection).await;
    });
}

#[test]
fn length_arguments_are_validated_and_compared_on_redeclare() {
    let broker = Broker::start(&[]);
    let url = broker.amqp_url();
    run_async(TEST_TIMEOUT, async move {
        let connection = connect(&url).await;
        let cases: [(&str, FieldTable, String); 4] = [
            (
                "bad-overflow",
                table(&[("x-overflow", text("drop-tail"))]),
                "PRECONDITION_FAILED - invalid arg 'x-overflow' for queue 'bad-overflow' in vhost '/': invalid_overflow".into(),
            ),
            (
                "int-overflow",
                table(&[("x-overflow", AMQPValue::LongInt(1))]),
                "PRECONDITION_FAILED - invalid arg 'x-overflow' for queue 'int-overflow' in vhost '/': {unacceptable_type,signedint}".into(),
            ),
            (
                "negative-length",
                table(&[("x-max-length", long(-1))]),
                "PRECONDITION_FAILED - invalid arg 'x-max-length' for queue 'negative-length' in vhost '/': {value_negative,-1}".into(),
            ),
            (
                "negative-bytes",
                table(&[("x-max-length-bytes", long(-5))]),
                "PRECONDITION_FAILED - invalid arg 'x-max-length-bytes' for queue 'negative-bytes' in vhost '/': {value_negative,-5}".into(),
            ),
        ];
        for (queue, args, expected) in cases {
            let channel = open_channel(&connection).await;
            let err = channel
                .queue_declare(queue, QueueDeclareOptions::default(), args)
                .await
                .expect_err("a refusal");
            let text = err.to_string();
            assert!(
                text.contains(&expected),
                "{queue}: expected {expected:?}, got {text}"
            );
        }
        let channel = open_channel(&connection).await;
        // Left by an earlier run against an external broker.
        let options = lapin::options::QueueDeleteOptions::default();
        within(
            "queue.delete-ok",
            channel.queue_delete("overflow-set", options),
        )
        .await
        .expect("queue.delete-ok");
        let args = table(&[
            ("x-overflow", text("reject-publish")),
            ("x-max-length", AMQPValue::LongInt(5)),
        ]);
        declare(&channel, "overflow-set", args).await;
        // Integers of another width are the same value.
        let same = table(&[
            ("x-overflow", text("reject-publish")),
            ("x-max-length", long(5)),
        ]);
        declare(&channel, "overflow-set", same).await;
        let refusals = [
            (
                table(&[("x-overflow", text("drop-head")), ("x-max-length", long(5))]),
                "PRECONDITION_FAILED - inequivalent arg 'x-overflow' for queue 'overflow-set' in vhost '/': received 'drop-head' but current is 'reject-publish'",
            ),
            (
                table(&[("x-overflow", text("reject-publish"))]),
                "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'overflow-set' in vhost '/': received none but current is the value '5' of type 'signedint'",
            ),
        ];
        for (args, expected) in refusals {
            let channel = open_channel(&connection).await;
            let err = channel
                .queue_declare("overflow-set", QueueDeclareOptions::default(), args)
                .await
                .expect_err("an inequivalent argument");
            assert!(
                err.to_string().contains(expected),
                "expected {expected:?}, got {err}"
            );
        }
        close_quietly(connection).await;
    });
}

#[test]
fn a_durable_queue_keeps_its_limit_and_its_newest_messages_across_kill_9() {
    let Some(mut broker) = RestartableBroker::start(&["--shards", "2"]) else {
        return;
    };
    let queues = queue_per_shard("durable-max-length", SHARDS);
    let persistent = || BasicProperties::default().with_delivery_mode(2);
    run_async(TEST_TIMEOUT, async {
        let connection = connect(&broker.amqp_url()).await;
        let channel = confirm_channel(&connection).await;
        for queue in &queues {
            let args = table(&[("x-max-length", long(3))]);
            declare_queue(&channel, queue, durable(), args).await;
            for i in 1..=5 {
                let body = format!("m{i}");
                let confirm =
                    publish_for_confirm(&channel, "", queue, body.as_bytes(), persistent()).await;
                within("a confirm", confirm).await.expect("a confirm");
            }
        }
        close_quietly(connection).await;
    });
    broker.restart_after_kill_9();
    run_async(TEST_TIMEOUT, async {
        let connection = connect(&broker.amqp_url()).await;
        let channel = open_channel(&connection).await;
        for queue in &queues {
            let got = bodies(&get_all(&channel, queue).await);
            assert_eq!(got, ["m3", "m4", "m5"], "{queue} after kill -9");
            for i in 6..=10 {
                let body = format!("m{i}");
                publish(&channel, "", queue, body.as_bytes(), persistent()).await;
            }
            let got = bodies(&get_all(&channel, queue).await);
            assert_eq!(
                got,
                ["m8", "m9", "m10"],
                "{queue}: the limit holds after restart"
            );
        }
        close_quietly(connection).await;
    });
}
