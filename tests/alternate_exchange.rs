//! Alternate exchanges (the `alternate-exchange` argument of exchange.declare), as RabbitMQ
//! has them: what an exchange routes nowhere goes to its alternate; a mandatory message is
//! returned only when the alternate routes it nowhere either (or does not exist); the
//! argument must match on redeclare; durable exchanges keep it across kill -9.

mod support;

use std::time::Duration;

use lapin::options::ExchangeDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, ExchangeKind};
use support::lapin_client::{
    bind, bodies, close_quietly, confirm_channel, connect, declare, get_all, open_channel,
    publish_confirmed, table, within,
};
use support::{queue_per_shard, run_async, Broker, RestartableBroker};

const SHARDS: usize = 2;
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

fn with_alternate(name: &str) -> FieldTable {
    table(&[(
        "alternate-exchange",
        AMQPValue::LongString(LongString::from(name)),
    )])
}

async fn exchange(
    channel: &Channel,
    name: &str,
    kind: ExchangeKind,
    durable: bool,
    args: FieldTable,
) {
    let options = ExchangeDeclareOptions {
        durable,
        ..ExchangeDeclareOptions::default()
    };
    within(
        "exchange.declare-ok",
        channel.exchange_declare(name, kind, options, args),
    )
    .await
    .unwrap_or_else(|e| panic!("expected exchange.declare-ok for {name}, got {e}"));
}

/// Publishes mandatory with confirms; true when the message came back (basic.return).
async fn returned(channel: &Channel, exchange: &str, key: &str, body: &str) -> bool {
    let props = BasicProperties::default();
    publish_confirmed(channel, exchange, key, true, body.as_bytes(), props).await
}

/// A transient exchange of `kind`, with `alternate` as its alternate exchange if given.
async fn transient(channel: &Channel, name: &str, kind: ExchangeKind, alternate: Option<&str>) {
    let args = alternate.map_or_else(FieldTable::default, with_alternate);
    exchange(channel, name, kind, false, args).await;
}

#[test]
fn unroutable_messages_go_to_the_alternate_exchange() {
    let broker = Broker::start(&["--shards", "2"]);
    let url = broker.amqp_url();
    run_async(TEST_TIMEOUT, async move {
        let connection = connect(&url).await;
        let channel = confirm_channel(&connection).await;
        let [routed, unrouted] = [0, 1].map(|i| queue_per_shard("ae-queue", SHARDS)[i].clone());
        transient(&channel, "ae-fallback", ExchangeKind::Fanout, None).await;
        transient(
            &channel,
            "ae-main",
            ExchangeKind::Direct,
            Some("ae-fallback"),
        )
        .await;
        for queue in [&routed, &unrouted] {
            declare(&channel, queue, false).await;
        }
        bind(&channel, &routed, "ae-main", "known", FieldTable::default()).await;
        bind(
            &channel,
            &unrouted,
            "ae-fallback",
            "",
            FieldTable::default(),
        )
        .await;
        assert!(!returned(&channel, "ae-main", "known", "bound").await);
        assert!(!returned(&channel, "ae-main", "other", "to the alternate").await);
        assert_eq!(bodies(&get_all(&channel, &routed).await), ["bound"]);
        let got = bodies(&get_all(&channel, &unrouted).await);
        assert_eq!(got, ["to the alternate"]);
        close_quietly(connection).await;
    });
}

#[test]
fn a_mandatory_message_returns_only_when_its_alternate_misses_too() {
    let broker = Broker::start(&[]);
    let url = broker.amqp_url();
    run_async(TEST_TIMEOUT, async move {
        let connection = connect(&url).await;
        let channel = confirm_channel(&connection).await;
        // An alternate that routes nowhere, and one that does not exist: returned.
        transient(&channel, "ae-empty", ExchangeKind::Fanout, None).await;
        transient(
            &channel,
            "ae-via-empty",
            ExchangeKind::Direct,
            Some("ae-empty"),
        )
        .await;
        assert!(returned(&channel, "ae-via-empty", "x", "nowhere").await);
        transient(
            &channel,
            "ae-via-missing",
            ExchangeKind::Direct,
            Some("ae-missing"),
        )
        .await;
        assert!(returned(&channel, "ae-via-missing", "x", "nowhere").await);
        // Alternates that point at each other end: the message is returned, not looped.
        transient(
            &channel,
            "ae-loop-a",
            ExchangeKind::Direct,
            Some("ae-loop-b"),
        )
        .await;
        transient(
            &channel,
            "ae-loop-b",
            ExchangeKind::Direct,
            Some("ae-loop-a"),
        )
        .await;
        assert!(returned(&channel, "ae-loop-a", "x", "looping").await);
        close_quietly(connection).await;
    });
}

#[test]
fn the_alternate_exchange_argument_must_match_on_redeclare() {
    let broker = Broker::start(&[]);
    let url = broker.amqp_url();
    run_async(TEST_TIMEOUT, async move {
        let connection = connect(&url).await;
        let channel = open_channel(&connection).await;
        exchange(
            &channel,
            "ae-eq",
            ExchangeKind::Direct,
            false,
            with_alternate("one"),
        )
        .await;
        exchange(
            &channel,
            "ae-eq",
            ExchangeKind::Direct,
            false,
            with_alternate("one"),
        )
        .await;
        for (args, expected) in [
            (
                with_alternate("two"),
                "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange 'ae-eq' in vhost '/': received 'two' but current is 'one'",
            ),
            (
                FieldTable::default(),
                "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange 'ae-eq' in vhost '/': received none but current is the value 'one' of type 'longstr'",
            ),
        ] {
            let channel = open_channel(&connection).await;
            let err = channel
                .exchange_declare("ae-eq", ExchangeKind::Direct, ExchangeDeclareOptions::default(), args)
                .await
                .expect_err("an inequivalent alternate-exchange");
            assert!(err.to_string().contains(expected), "expected {expected:?}, got {err}");
        }
        close_quietly(connection).await;
    });
}

#[test]
fn a_durable_exchange_keeps_its_alternate_across_kill_9() {
    let Some(mut broker) = RestartableBroker::start(&["--shards", "2"]) else {
        return;
    };
    let queue = queue_per_shard("ae-durable", SHARDS)[1].clone();
    run_async(TEST_TIMEOUT, async {
        let connection = connect(&broker.amqp_url()).await;
        let channel = confirm_channel(&connection).await;
        exchange(
            &channel,
            "ae-d-fallback",
            ExchangeKind::Fanout,
            true,
            FieldTable::default(),
        )
        .await;
        exchange(
            &channel,
            "ae-d-main",
            ExchangeKind::Topic,
            true,
            with_alternate("ae-d-fallback"),
        )
        .await;
        declare(&channel, &queue, true).await;
        bind(&channel, &queue, "ae-d-fallback", "", FieldTable::default()).await;
        close_quietly(connection).await;
    });
    broker.restart_after_kill_9();
    run_async(TEST_TIMEOUT, async {
        let connection = connect(&broker.amqp_url()).await;
        let channel = confirm_channel(&connection).await;
        assert!(!returned(&channel, "ae-d-main", "any.key", "after restart").await);
        assert_eq!(bodies(&get_all(&channel, &queue).await), ["after restart"]);
        close_quietly(connection).await;
    });
}
