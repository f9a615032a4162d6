//! Policies and operator policies as RabbitMQ has them, set with `warren ctl` (or rabbitmqctl
//! on a RabbitMQ node, see `tests/queue-features-vs-rabbitmq.sh`): a policy applies to
//! existing queues at once and stops applying when cleared; the highest priority policy wins;
//! numeric limits take the lowest of argument, policy and operator policy, while other keys
//! come from the policy only where the argument is absent; dead-lettering, message TTL and
//! alternate exchanges come from policies too. Every queue scenario runs on a queue of each
//! shard. Warren only: policies survive kill -9, and a definitions file sets them at start.

mod support;

use std::time::Duration;

use lapin::options::{BasicRejectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, ExchangeKind};
use support::lapin_client::{
    bind, bodies, close_quietly, connect_channel, declare_exchange, declare_queue, durable, get,
    get_all, get_eventually, message_count, publish, publish_confirmed, queue_exists, table,
};
use support::policy_ctl::PolicyCtl;
use support::{queue_per_shard, run_async, Broker, RestartableBroker};

const SHARDS: usize = 2;
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

fn start() -> (Broker, Option<PolicyCtl>) {
    let broker = Broker::start(&["--shards", "2"]);
    let ctl = PolicyCtl::of(&broker);
    if ctl.is_none() {
        eprintln!("skipped: no way to set policies on the external broker");
    }
    (broker, ctl)
}

async fn declare(channel: &Channel, queue: &str, arguments: FieldTable) {
    declare_queue(channel, queue, QueueDeclareOptions::default(), arguments).await;
}

async fn publish_numbered(channel: &Channel, queue: &str, range: std::ops::RangeInclusive<u32>) {
    for i in range {
        let body = format!("m{i}");
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

/// Polls the ready count of `queue` until it is `want` (a policy reaches queues
/// asynchronously in RabbitMQ).
async fn wait_for_count(channel: &Channel, queue: &str, want: u32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = message_count(channel, queue).await;
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected {want} ready messages in {queue}, still {got}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

#[test]
fn a_policy_applies_to_existing_queues_at_once_and_stops_when_cleared() {
    let (broker, Some(ctl)) = start() else { return };
    let base = broker.queue_name("pol-apply");
    let url = broker.amqp_url();
    let queues = queue_per_shard(&base, SHARDS);
    let declared = queues.clone();
    run_async(TEST_TIMEOUT, async move {
        let (connection, channel) = connect_channel(&url).await;
        for queue in &declared {
            declare(&channel, queue, FieldTable::default()).await;
            publish_numbered(&channel, queue, 1..=5).await;
            wait_for_count(&channel, queue, 5).await;
        }
        close_quietly(connection).await;
    });
    let pattern = format!("^{base}-");
    let name = format!("{base}-cap");
    ctl.ok(&[
        "set_policy",
        &name,
        &pattern,
        r#"{"max-length": 2}"#,
        "--apply-to",
        "queues",
    ]);
    let url = broker.amqp_url();
    let checked = queues.clone();
    run_async(TEST_TIMEOUT, async move {
        let (connection, channel) = connect_channel(&url).await;
        for queue in &checked {
            // drop-head at once: the two newest stay.
            wait_for_count(&channel, queue, 2).await;
            assert_eq!(bodies(&get_all(&channel, queue).await), ["m4", "m5"]);
        }
        close_quietly(connection).await;
    });
    ctl.ok(&["clear_policy", &name]);
    let url = broker.amqp_url();
    run_async(TEST_TIMEOUT, async move {
        let (connection, channel) = connect_channel(&url).await;
        for queue in &queues {
            publish_numbered(&channel, queue, 1..=4).await;
            wait_for_count(&channel, queue, 4).await;
        }
        close_quietly(connection).await;
    });
}

#[test]
fn the_highest_priority_policy_wins() {
    let (broker, Some(ctl)) = start() else { return };
    let base = broker.queue_name("pol-prio");
    let pattern = format!("^{base}-");
    ctl.ok(&[
        "set_policy",
        &format!("{base}-a"),
        &pattern,
        r#"{"max-length": 1}"#,
        "--priority",
        "1",
    ]);
    ctl.ok(&[
        "set_policy",
        &format!("{base}-b"),
        &pattern,
        r#"{"max-length": 3}"#,
        "--priority",
        "7",
    ]);
    ctl.ok(&[
        "set_policy",
        &format!("{base}-c"),
        &pattern,
        r#"{"max-length": 2}"#,
        "--priority",
        "-5",
    ]);
    let url = broker.amqp_url();
    let queues = queue_per_shard(&base, SHARDS);
    run_async(TEST_TIMEOUT, async move {
        let (connection, channel) = connect_channel(&url).await;
        for queue in &queues {
            declare(&channel, queue, FieldTable::default()).await;
            publish_numbered(&channel, queue, 1..=6).await;
            wait_for_count(&channel, queue, 3).await;
        }
        close_quietly(connection).await;
    });
    for suffix in ["a", "b", "c"] {
        ctl.ok(&["clear_policy", &format!("{base}-{suffix}")]);
    }
}

#[test]
fn numeric_limits_take_the_lowest_of_argument_policy_and_operator_policy() {
    let (broker, Some(ctl)) = start() else { return };
    let base = broker.queue_name("pol-min");
    let pattern = format!("^{base}-");
    let policy = format!("{base}-p");
    let operator = format!("{base}-op");
    ctl.ok(&[
        "set_policy",
        &policy,
        &pattern,
        r#"{"max-length": 3}"#,
        "--apply-to",
        "queues",
    ]);
    let url = broker.amqp_url();
    let queues = queue_per_shard(&base, SHARDS);
    let declared = queues.clone();
    run_async(TEST_TIMEOUT, async move {
        let (connection, channel) = connect_channel(&url).await;
        for queue in &declared {
            // The argument (4) is above the policy (3): the policy's applies.
            declare(
                &channel,
                queue,
                table(&[("x-max-length", AMQPValue::LongLongInt(4))]),
            )
            .await;
            publish_numbered(&channel, queue, 1..=6).await;
            wait_for_count(&channel, queue, 3).await;
        }
        close_quietly(connection).await;
    });
    // An operator policy caps both.
    let cap = r#"{"max-length": 2}"#;
    ctl.ok(&[
        "set_operator_policy",
        &operator,
        &pattern,
        cap,
        "--apply-to",
        "queues",
    ]);
    let url = broker.amqp_url();
    let checked = queues.clone();
    run_async(TEST_TIMEOUT, async move {
        let (connection, channel) = connect_channel(&url).await;
        for queue in &checked {
            publish_numbered(&channel, queue, 7..=9).await;
            wait_for_count(&channel, queue, 2).await;
            assert_eq!(bodies(&get_all(&channel, queue).await), ["m8", "m9"]);
        }
        close_quietly(connection).await;
    });
    // Without the policies, the argument's 4 holds again.
    ctl.ok(&["clear_operator_policy", &operator]);
    ctl.ok(&["clear_policy", &policy]);
    let url = broker.amqp_url();
    run_async(TEST_TIMEOUT, async move {
        let (connection, channel) = connect_channel(&url).await;
        for queue in &queues {
            publish_numbered(&channel, queue, 1..=6).await;
            wait_for_count(&channel, queue, 4).await;
        }
        close_quietly(connection).await;
    });
}

/// The `reason` and `queue` of the newest `x-death` entry.
fn newest_death(delivery: &lapin::message::Delivery) -> (String, String) {
    let headers = delivery.properties.headers().clone().expect("headers");
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        panic!("expected x-death on a dead letter, got {headers:?}");
    };
    let Some(AMQPValue::FieldTable(entry)) = deaths.as_slice().first() else {
        panic!("expected an x-death entry");
    };
    let field = |key: &str| match entry.inner().get(key) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => panic!("expected {key} in x-death, got {other:?}"),
    };
    (field("reason"), field("queue"))
}

#[test]
fn dead_lettering_and_message_ttl_come_from_a_policy_unless_an_argument_says_otherwise() {
    let (broker, Some(ctl)) = start() else { return };
    let base = broker.queue_name("pol-dl");
    let dlx = format!("{base}-dlx");
    let dead = format!("{base}-dead");
    let mine = format!("{base}-mine");
    let definition = format!(r#"{{"dead-letter-exchange": "{dlx}", "message-ttl": 100}}"#);
    let pattern = format!("^{base}-q-");
    let policy = format!("{base}-p");
    ctl.ok(&[
        "set_policy",
        &policy,
        &pattern,
        &definition,
        "--apply-to",
        "queues",
    ]);
    let url = broker.amqp_url();
    let queues = queue_per_shard(&format!("{base}-q"), SHARDS);
    run_async(TEST_TIMEOUT, async move {
        let (connection, channel) = connect_channel(&url).await;
        declare_exchange(&channel, &dlx, ExchangeKind::Fanout, false).await;
        declare(&channel, &dead, FieldTable::default()).await;
        bind(&channel, &dead, &dlx, "", FieldTable::default()).await;
        declare(&channel, &mine, FieldTable::default()).await;
        for queue in &queues {
            declare(&channel, queue, FieldTable::default()).await;
            // Expired by the policy's TTL, dead-lettered to the policy's exchange.
            publish(&channel, "", queue, b"expires", BasicProperties::default()).await;
            let letter = get_eventually(&channel, &dead).await;
            assert_eq!(
                newest_death(&letter),
                ("expired".to_string(), queue.clone())
            );
        }
        // The queue's own dead-letter arguments win over the policy's.
        let own = queue_per_shard(&format!("{base}-q-own"), SHARDS);
        for queue in &own {
            let args = table(&[
                ("x-dead-letter-exchange", text("")),
                ("x-dead-letter-routing-key", text(&mine)),
                ("x-message-ttl", AMQPValue::LongLongInt(60_000)),
            ]);
            declare(&channel, queue, args).await;
            publish(&channel, "", queue, b"rejected", BasicProperties::default()).await;
            let delivery = loop {
                if let Some(d) = get(&channel, queue, false).await {
                    break d;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            delivery
                .reject(BasicRejectOptions { requeue: false })
                .await
                .expect("basic.reject");
            let letter = get_eventually(&channel, &mine).await;
            assert_eq!(
                newest_death(&letter),
                ("rejected".to_string(), queue.clone())
            );
        }
        assert!(get(&channel, &dead, true).await.is_none());
        close_quietly(connection).await;
    });
    ctl.ok(&["clear_policy", &policy]);
}

#[test]
fn an_exchange_policy_gives_an_alternate_exchange() {
    let (broker, Some(ctl)) = start() else { return };
    let base = broker.queue_name("pol-ae");
    let inbound = format!("{base}-in");
    let spill = format!("{base}-spill");
    let spilled = format!("{base}-spilled");
    let definition = format!(r#"{{"alternate-exchange": "{spill}"}}"#);
    let policy = format!("{base}-p");
    let pattern = format!("^{inbound}$");
    ctl.ok(&[
        "set_policy",
        &policy,
        &pattern,
        &definition,
        "--apply-to",
        "exchanges",
    ]);
    let url = broker.amqp_url();
    run_async(TEST_TIMEOUT, async move {
        let (connection, channel) = connect_channel(&url).await;
        lapin_confirms(&channel).await;
        declare_exchange(&channel, &inbound, ExchangeKind::Direct, false).await;
        declare_exchange(&channel, &spill, ExchangeKind::Fanout, false).await;
        declare(&channel, &spilled, FieldTable::default()).await;
        bind(&channel, &spilled, &spill, "", FieldTable::default()).await;
        let props = BasicProperties::default();
        let came_back = publish_confirmed(&channel, &inbound, "nowhere", true, b"x", props).await;
        assert!(
            !came_back,
            "expected the alternate exchange to take it, not a return"
        );
        assert_eq!(bodies(&[get_eventually(&channel, &spilled).await]), ["x"]);
        close_quietly(connection).await;
    });
    ctl.ok(&["clear_policy", &policy]);
}

async fn lapin_confirms(channel: &Channel) {
    support::lapin_client::confirm_select(channel).await;
}

#[test]
fn invalid_policies_are_refused_in_rabbitmqs_terms() {
    let (broker, Some(ctl)) = start() else { return };
    let name = broker.queue_name("pol-bad");
    for (pattern, definition, extra, expected) in [
        (
            "(",
            r#"{"max-length": 1}"#,
            None,
            "pattern should be regular expression",
        ),
        (
            "x",
            r#"{"max-length": -1}"#,
            None,
            "is not a valid maximum length",
        ),
        (
            "x",
            r#"{"expires": 0}"#,
            None,
            "is not a valid queue expiry",
        ),
        (
            "x",
            r#"{"overflow": "sideways"}"#,
            None,
            "is not a valid overflow value",
        ),
        (
            "x",
            r#"{"no-such-key": 1}"#,
            None,
            "recognised policy setting",
        ),
        (
            "x",
            r#"{"max-length": 1}"#,
            Some("streams"),
            "apply-to 'streams' unrecognised",
        ),
    ] {
        let mut args = vec!["set_policy", &name, pattern, definition];
        if let Some(apply_to) = extra {
            args.extend(["--apply-to", apply_to]);
        }
        match ctl.run(&args) {
            Ok(out) => panic!("expected {definition} to be refused, it was set: {out}"),
            Err(err) => assert!(err.contains(expected), "expected {expected:?}, got {err}"),
        }
    }
    // An operator policy sets numeric caps only.
    let dlx = r#"{"dead-letter-exchange": "x"}"#;
    let refused = ctl.run(&["set_operator_policy", &name, "x", dlx]);
    assert!(
        refused.is_err(),
        "expected an operator policy with a DLX to be refused"
    );
    // Clearing a policy that does not exist fails.
    assert!(ctl.run(&["clear_policy", &name]).is_err());
}

#[test]
fn policies_survive_kill_9_and_apply_to_recovered_queues() {
    let Some(mut broker) = RestartableBroker::start(&["--shards", "2"]) else {
        eprintln!("skipped: the harness cannot restart an external broker");
        return;
    };
    let ctl = PolicyCtl::warren(broker.data_dir());
    let queues = queue_per_shard("pol-durable", SHARDS);
    let url = broker.amqp_url();
    let declared = queues.clone();
    run_async(TEST_TIMEOUT, async move {
        let (connection, channel) = connect_channel(&url).await;
        for queue in &declared {
            declare_queue(&channel, queue, durable(), FieldTable::default()).await;
        }
        close_quietly(connection).await;
    });
    ctl.ok(&["set_policy", "cap", "^pol-durable-", r#"{"max-length": 2}"#]);
    ctl.ok(&[
        "set_operator_policy",
        "ttl-cap",
        ".*",
        r#"{"message-ttl": 3600000}"#,
    ]);
    broker.restart_after_kill_9();
    let listed = ctl.ok(&["list_policies"]);
    assert!(
        listed.contains("\tcap\t^pol-durable-\tall\t") && listed.contains("max-length"),
        "{listed}"
    );
    let listed = ctl.ok(&["list_operator_policies"]);
    assert!(listed.contains("ttl-cap"), "{listed}");
    let url = broker.amqp_url();
    run_async(TEST_TIMEOUT, async move {
        let (connection, channel) = connect_channel(&url).await;
        let persistent = BasicProperties::default().with_delivery_mode(2);
        for queue in &queues {
            for i in 1..=5 {
                let body = format!("m{i}");
                publish(&channel, "", queue, body.as_bytes(), persistent.clone()).await;
            }
            wait_for_count(&channel, queue, 2).await;
        }
        close_quietly(connection).await;
    });
    // A cleared policy stays cleared across a restart.
    ctl.ok(&["clear_policy", "cap"]);
    broker.restart_after_kill_9();
    // No policy left: rabbitmqctl -q prints nothing at all, not even the header.
    assert_eq!(ctl.ok(&["list_policies"]).trim(), "");
}

#[test]
fn a_definitions_file_sets_policies_at_start() {
    if support::broker::external_port().is_some() {
        eprintln!("skipped: needs a broker of its own");
        return;
    }
    let dir = support::fresh_dir("definitions");
    let file = dir.join("definitions.json");
    let definitions = r#"{
        "rabbit_version": "3.10.8",
        "queues": [],
        "policies": [
            {"vhost": "/", "name": "cap", "pattern": "^defs-", "apply-to": "queues",
             "definition": {"max-length": 1, "ha-mode": "all"}, "priority": 0}
        ],
        "operator_policies": []
    }"#;
    std::fs::write(&file, definitions).expect("write the definitions file");
    let path = file.to_str().expect("a UTF-8 path");
    let broker = Broker::start(&["--shards", "2", "--definitions", path]);
    let url = broker.amqp_url();
    run_async(TEST_TIMEOUT, async move {
        let (connection, channel) = connect_channel(&url).await;
        for queue in queue_per_shard("defs", SHARDS) {
            declare(&channel, &queue, FieldTable::default()).await;
            publish_numbered(&channel, &queue, 1..=3).await;
            wait_for_count(&channel, &queue, 1).await;
        }
        close_quietly(connection).await;
    });
    // A definitions file with an invalid policy stops the start, naming it.
    let bad =
        r#"{"policies": [{"name": "broken", "pattern": ".*", "definition": {"max-length": "x"}}]}"#;
    std::fs::write(&file, bad).expect("write the definitions file");
    let data = support::fresh_dir("definitions-data");
    let refused = Broker::try_start_on(
        support::broker::free_port(),
        &data,
        &["--definitions", path],
        &|_| {},
    );
    match refused {
        Ok(_) => panic!("expected the broker to refuse an invalid definitions file"),
        Err(output) => assert!(output.contains("broken"), "{output}"),
    }
}

#[test]
fn warren_ctl_says_when_no_broker_runs_on_the_data_directory() {
    let dir = support::fresh_dir("no-broker");
    let ctl = PolicyCtl::warren(&dir);
    match ctl.run(&["list_policies"]) {
        Ok(out) => panic!("expected an error without a broker, got {out}"),
        Err(err) => assert!(err.contains("cannot reach a broker"), "{err}"),
    }
    let refused = ctl.run(&["set_policy", "p", ".*", "{not json"]);
    assert!(refused.is_err_and(|e| e.contains("not valid JSON")));
}

#[test]
fn an_expires_policy_deletes_unused_queues() {
    let (broker, Some(ctl)) = start() else { return };
    let base = broker.queue_name("pol-exp");
    let policy = format!("{base}-p");
    let pattern = format!("^{base}-");
    let url = broker.amqp_url();
    let queues = queue_per_shard(&base, SHARDS);
    let declared = queues.clone();
    run_async(TEST_TIMEOUT, async move {
        let (connection, channel) = connect_channel(&url).await;
        for queue in &declared {
            declare(&channel, queue, FieldTable::default()).await;
        }
        close_quietly(connection).await;
    });
    ctl.ok(&[
        "set_policy",
        &policy,
        &pattern,
        r#"{"expires": 200}"#,
        "--apply-to",
        "queues",
    ]);
    let url = broker.amqp_url();
    run_async(TEST_TIMEOUT, async move {
        let connection = support::lapin_client::connect(&url).await;
        for queue in &queues {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            // Each look is a use: looks are three periods apart.
            loop {
                tokio::time::sleep(Duration::from_millis(600)).await;
                if !queue_exists(&connection, queue).await {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "expected {queue} to expire"
                );
            }
        }
        close_quietly(connection).await;
    });
    ctl.ok(&["clear_policy", &policy]);
}
