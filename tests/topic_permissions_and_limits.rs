//! Topic permissions and user/vhost limits, set with `warren ctl` (rabbitmqctl on a RabbitMQ
//! node: `tests/queue-features-vs-rabbitmq.sh`): a topic permission bounds the routing keys a
//! user publishes with and binds with on one topic exchange, with `{username}` expanded;
//! `max-connections` and `max-channels` bound a user's connections and channels, and the
//! default vhost's `max-connections` and `max-queues` bound everyone's. Refusals carry
//! RabbitMQ's codes and texts.

mod support;

use std::time::Duration;

use lapin::options::{BasicPublishOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use support::lapin_client::{
    assert_refused, close_quietly, confirm_select, connect_as, declare, open_channel,
};
use support::policy_ctl::PolicyCtl;
use support::{run_async, unique_suffix, Broker, RestartableBroker};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

fn start() -> Option<(Broker, PolicyCtl)> {
    let broker = Broker::start(&[]);
    let Some(ctl) = PolicyCtl::of(&broker) else {
        eprintln!("skipped: no way to manage users on the external broker");
        return None;
    };
    Some((broker, ctl))
}

async fn publish(channel: &Channel, exchange: &str, key: &str) -> Result<(), lapin::Error> {
    let options = BasicPublishOptions::default();
    let properties = BasicProperties::default();
    let confirm = channel
        .basic_publish(exchange, key, options, b"x", properties)
        .await?;
    confirm.await.map(|_| ())
}

async fn bind(channel: &Channel, queue: &str, key: &str) -> Result<(), lapin::Error> {
    let options = QueueBindOptions::default();
    channel
        .queue_bind(queue, "amq.topic", key, options, FieldTable::default())
        .await
}

/// A user with full permissions in `/`.
fn add_user(ctl: &PolicyCtl, user: &str) {
    ctl.ok(&["add_user", user, "pw"]);
    ctl.ok(&["set_permissions", user, ".*", ".*", ".*"]);
}

#[test]
fn topic_permissions_bound_publish_and_bind_keys() {
    let Some((broker, ctl)) = start() else { return };
    let user = format!("topic-{}", unique_suffix());
    add_user(&ctl, &user);
    ctl.ok(&[
        "set_topic_permissions",
        &user,
        "amq.topic",
        "^{username}\\.",
        "^public\\.",
    ]);
    let port = broker.port();
    let name = user.clone();
    run_async(TEST_TIMEOUT, async move {
        let connection = connect_as(port, &name, "pw").await.expect("connects");
        let refused = |key: &str| {
            format!(
                "ACCESS_REFUSED - access to topic '{key}' in exchange 'amq.topic' in vhost '/' refused for user '{name}'"
            )
        };
        let ch = open_channel(&connection).await;
        confirm_select(&ch).await;
        publish(&ch, "amq.topic", &format!("{name}.news"))
            .await
            .expect("the user's own prefix is allowed");
        let key = "someone.news";
        assert_refused(publish(&ch, "amq.topic", key).await, &refused(key));
        // Other exchange types are not checked.
        let ch = open_channel(&connection).await;
        confirm_select(&ch).await;
        publish(&ch, "amq.direct", "someone.news")
            .await
            .expect("a direct exchange has no topic permissions");
        let q = format!("{name}-q");
        declare(&ch, &q, false).await;
        bind(&ch, &q, "public.#").await.expect("public keys bind");
        assert_refused(bind(&ch, &q, "secret.#").await, &refused("secret.#"));
        close_quietly(connection).await;
    });
    let listed = ctl.ok(&["list_topic_permissions"]);
    assert!(
        listed.contains(&format!("{user}\tamq.topic\t^{{username}}\\.\t^public\\.")),
        "{listed}"
    );
    ctl.ok(&["clear_topic_permissions", &user, "amq.topic"]);
    let name = user.clone();
    run_async(TEST_TIMEOUT, async move {
        let connection = connect_as(port, &name, "pw").await.expect("connects");
        let ch = open_channel(&connection).await;
        confirm_select(&ch).await;
        publish(&ch, "amq.topic", "someone.news")
            .await
            .expect("cleared: every key allowed again");
        close_quietly(connection).await;
    });
    ctl.ok(&["delete_user", &user]);
}

#[test]
fn user_limits_bound_connections_and_channels() {
    let Some((broker, ctl)) = start() else { return };
    let user = format!("limited-{}", unique_suffix());
    add_user(&ctl, &user);
    ctl.ok(&[
        "set_user_limits",
        &user,
        r#"{"max-connections": 1, "max-channels": 2}"#,
    ]);
    let port = broker.port();
    let name = user.clone();
    run_async(TEST_TIMEOUT, async move {
        let first = connect_as(port, &name, "pw")
            .await
            .expect("the first connects");
        let second = connect_as(port, &name, "pw").await;
        let Err(err) = second else {
            panic!("the second connection is refused")
        };
        let text = format!(
            "NOT_ALLOWED - connection refused for user '{name}': user connection limit (1) is reached"
        );
        assert!(err.contains(&text), "{err}");
        let _a = open_channel(&first).await;
        let _b = open_channel(&first).await;
        let third = first.create_channel().await;
        assert_refused(
            third,
            &format!(
                "NOT_ALLOWED - number of channels opened for user '{name}' has reached the maximum allowed user limit of (2)"
            ),
        );
        // A closed connection makes room.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let again = connect_as(port, &name, "pw").await.expect("room again");
        let ch = open_channel(&again).await;
        drop(ch);
        close_quietly(again).await;
    });
    ctl.ok(&["clear_user_limits", &user, "max-connections"]);
    let name = user.clone();
    run_async(TEST_TIMEOUT, async move {
        let a = connect_as(port, &name, "pw")
            .await
            .expect("no connection limit");
        let b = connect_as(port, &name, "pw")
            .await
            .expect("no connection limit");
        close_quietly(a).await;
        close_quietly(b).await;
    });
    ctl.ok(&["delete_user", &user]);
}

#[test]
fn vhost_limits_bound_connections_and_queues_and_survive_a_restart() {
    let Some(mut broker) = RestartableBroker::start(&[]) else {
        eprintln!("skipped: vhost limits would disturb an external broker's other tests");
        return;
    };
    let ctl = PolicyCtl::warren(broker.data_dir());
    ctl.ok(&[
        "set_vhost_limits",
        "-p",
        "/",
        r#"{"max-connections": 1, "max-queues": 2}"#,
    ]);
    broker.restart_after_kill_9();
    assert_eq!(
        ctl.ok(&["list_vhost_limits", "-p", "/"]).trim(),
        r#"{"max-connections":1,"max-queues":2}"#
    );
    let port = broker.port();
    run_async(TEST_TIMEOUT, async move {
        let first = connect_as(port, "guest", "guest").await.expect("connects");
        let second = connect_as(port, "guest", "guest").await;
        let Err(err) = second else {
            panic!("the vhost is full")
        };
        assert!(
            err.contains(
                "NOT_ALLOWED - access to vhost '/' refused for user 'guest': connection limit (1) is reached"
            ),
            "{err}"
        );
        let ch = open_channel(&first).await;
        declare(&ch, "vq-1", false).await;
        declare(&ch, "vq-2", false).await;
        let third = ch
            .queue_declare(
                "vq-3",
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await;
        assert_refused(
            third,
            "PRECONDITION_FAILED - cannot declare queue 'vq-3': queue limit in vhost '/' (2) is reached",
        );
        close_quietly(first).await;
    });
    ctl.ok(&["clear_vhost_limits", "-p", "/"]);
    assert_eq!(ctl.ok(&["list_vhost_limits", "-p", "/"]).trim(), "{}");
}

/// Topic permissions, user limits and vhost limits go out with export_definitions (in
/// RabbitMQ's places: `topic_permissions`, each user's `limits`, `vhost-limits` parameters)
/// and come back with --definitions on a new broker.
#[test]
fn topic_permissions_and_limits_round_trip_through_definitions() {
    if support::broker::external_port().is_some() {
        return; // Warren's export and start-up flag
    }
    let (first, ctl) = start().expect("a broker of our own");
    add_user(&ctl, "rt");
    ctl.ok(&["set_topic_permissions", "rt", "amq.topic", "^rt\\.", ""]);
    ctl.ok(&["set_user_limits", "rt", r#"{"max-channels": 3}"#]);
    ctl.ok(&["set_vhost_limits", r#"{"max-queues": 7}"#]);
    let exported = ctl.ok(&["export_definitions", "-"]);
    let defs: serde_json::Value = serde_json::from_str(&exported).expect("JSON");
    assert_eq!(
        defs["topic_permissions"][0],
        serde_json::json!({"user": "rt", "vhost": "/", "exchange": "amq.topic",
            "write": "^rt\\.", "read": ""})
    );
    let user = defs["users"]
        .as_array()
        .and_then(|users| users.iter().find(|u| u["name"] == "rt"))
        .expect("the user is exported");
    assert_eq!(user["limits"], serde_json::json!({"max-channels": 3}));
    assert_eq!(
        defs["parameters"][0],
        serde_json::json!({"vhost": "/", "component": "vhost-limits", "name": "limits",
            "value": {"max-queues": 7}})
    );
    drop(first);
    let path = std::env::temp_dir().join(format!("warren-defs-{}.json", unique_suffix()));
    std::fs::write(&path, exported).expect("write the export");
    let second = Broker::start(&["--definitions", path.to_str().expect("UTF-8 path")]);
    let ctl = PolicyCtl::of(&second).expect("a broker of our own");
    assert!(ctl
        .ok(&["list_topic_permissions"])
        .contains("rt\tamq.topic\t^rt\\.\t"));
    assert_eq!(
        ctl.ok(&["list_user_limits", "--user", "rt"]).trim(),
        r#"{"max-channels":3}"#
    );
    assert_eq!(ctl.ok(&["list_vhost_limits"]).trim(), r#"{"max-queues":7}"#);
    let _ = std::fs::remove_file(&path);
}
