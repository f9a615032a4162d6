//! Permissions as RabbitMQ checks them, set with `warren ctl set_permissions` (rabbitmqctl on
//! a RabbitMQ node, see `tests/queue-features-vs-rabbitmq.sh`): a user without permissions
//! on the vhost cannot open it (530); configure covers declare and delete, write covers
//! publish (the default exchange is `amq.default`) and being bound to, read covers consume,
//! get, purge and being bound from; each refusal is 403 on the channel in RabbitMQ's words,
//! and the connection carries on.

mod support;

use std::time::Duration;

use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use support::lapin_client::{
    assert_refused, close_quietly, confirm_select, connect_as, connect_channel, declare,
    open_channel,
};
use support::policy_ctl::PolicyCtl;
use support::{run_async, unique_suffix, Broker};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

fn start() -> Option<(Broker, PolicyCtl)> {
    let broker = Broker::start(&[]);
    let Some(ctl) = PolicyCtl::of(&broker) else {
        eprintln!("skipped: no way to manage users on the external broker");
        return None;
    };
    Some((broker, ctl))
}

#[test]
fn a_user_without_permissions_cannot_open_the_vhost() {
    let Some((broker, ctl)) = start() else { return };
    let user = format!("perm-none-{}", unique_suffix());
    ctl.ok(&["add_user", &user, "pw"]);
    let port = broker.port();
    let name = user.clone();
    run_async(TEST_TIMEOUT, async move {
        let refused = connect_as(port, &name, "pw").await;
        let err = refused.expect_err("expected the vhost to be refused");
        assert!(
            err.contains(&format!("access to vhost '/' refused for user '{name}'")),
            "{err}"
        );
    });
    ctl.ok(&["set_permissions", &user, "", "", ""]);
    let name = user.clone();
    run_async(TEST_TIMEOUT, async move {
        // Empty patterns still open the vhost; they allow nothing in it.
        let connection = connect_as(port, &name, "pw")
            .await
            .expect("the vhost opens");
        let channel = open_channel(&connection).await;
        let q = format!("{name}-q");
        let declared = channel
            .queue_declare(&q, QueueDeclareOptions::default(), FieldTable::default())
            .await;
        assert_refused(
            declared,
            &format!("access to queue '{q}' in vhost '/' refused for user '{name}'"),
        );
        close_quietly(connection).await;
    });
    ctl.ok(&["delete_user", &user]);
}

#[test]
fn each_operation_needs_its_permission() {
    let Some((broker, ctl)) = start() else { return };
    let suffix = unique_suffix();
    let user = format!("perm-u-{suffix}");
    let own = format!("perm-own-{suffix}");
    let other = format!("perm-other-{suffix}");
    ctl.ok(&["add_user", &user, "pw"]);
    let mine = format!("^{own}");
    let write = format!("^{own}|^amq\\.default$");
    ctl.ok(&["set_permissions", &user, &mine, &write, &mine]);
    let port = broker.port();
    let guest_url = broker.amqp_url();
    let name = user.clone();
    run_async(TEST_TIMEOUT, async move {
        let user = name;
        someone_elses(&guest_url, &other).await;
        let connection = connect_as(port, &user, "pw")
            .await
            .expect("the user connects");
        let refused = |kind: &str, name: &str| {
            format!("access to {kind} '{name}' in vhost '/' refused for user '{user}'")
        };
        // configure: declare own, not others'; delete likewise.
        let ch = open_channel(&connection).await;
        declare(&ch, &own, false).await;
        let q2 = format!("{other}-2");
        let r = ch
            .queue_declare(&q2, QueueDeclareOptions::default(), FieldTable::default())
            .await;
        assert_refused(r, &refused("queue", &q2));
        let ch = open_channel(&connection).await;
        assert_refused(
            ch.queue_delete(&other, QueueDeleteOptions::default()).await,
            &refused("queue", &other),
        );
        let ch = open_channel(&connection).await;
        let r = ch
            .exchange_declare(
                &q2,
                ExchangeKind::Direct,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await;
        assert_refused(r, &refused("exchange", &q2));
        check_read(&connection, &own, &other, &refused("queue", &other)).await;
        // bind: write on the queue and read on the exchange.
        let ch = open_channel(&connection).await;
        let r = ch
            .queue_bind(
                &own,
                &other,
                "",
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await;
        assert_refused(r, &refused("exchange", &other));
        // write: publish to the default exchange, not to others' exchanges.
        let ch = open_channel(&connection).await;
        confirm_select(&ch).await;
        publish_confirmed(&ch, "", &own)
            .await
            .expect("a publish to amq.default is allowed");
        assert_refused(
            publish_confirmed(&ch, &other, "").await,
            &refused("exchange", &other),
        );
        // The connection carries on after every channel error.
        let ch = open_channel(&connection).await;
        let got = ch
            .basic_get(&own, BasicGetOptions { no_ack: true })
            .await
            .expect("get");
        assert!(
            got.is_some(),
            "expected the message published to amq.default"
        );
        close_quietly(connection).await;
    });
    ctl.ok(&["delete_user", &user]);
}

/// As guest: a queue and a fanout exchange named `name` that the user has no rights on.
async fn someone_elses(guest_url: &str, name: &str) {
    let (guest, channel) = connect_channel(guest_url).await;
    declare(&channel, name, false).await;
    let options = ExchangeDeclareOptions::default();
    channel
        .exchange_declare(name, ExchangeKind::Fanout, options, FieldTable::default())
        .await
        .expect("guest declares the exchange");
    close_quietly(guest).await;
}

/// read: consume, get and purge `own`, not `other`.
async fn check_read(connection: &Connection, own: &str, other: &str, refused: &str) {
    let ch = open_channel(connection).await;
    assert!(ch.basic_get(own, BasicGetOptions::default()).await.is_ok());
    let r = ch
        .basic_consume(
            other,
            "c",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert_refused(r, refused);
    let ch = open_channel(connection).await;
    assert_refused(
        ch.basic_get(other, BasicGetOptions::default()).await,
        refused,
    );
    let ch = open_channel(connection).await;
    assert_refused(
        ch.queue_purge(other, QueuePurgeOptions::default()).await,
        refused,
    );
}

async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    key: &str,
) -> Result<(), lapin::Error> {
    let confirm = channel
        .basic_publish(
            exchange,
            key,
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await?;
    confirm.await.map(|_| ())
}

#[test]
fn permissions_are_listed_cleared_and_go_with_their_user() {
    let Some((broker, ctl)) = start() else { return };
    if broker.is_external() {
        return; // Columns and wording below are Warren's ctl output.
    }
    let listed = ctl.ok(&["list_permissions"]);
    assert_eq!(
        listed.trim(),
        "user\tconfigure\twrite\tread\nguest\t.*\t.*\t.*"
    );
    ctl.ok(&["add_user", "carol", "pw"]);
    ctl.ok(&["set_permissions", "carol", "^c-", "", ".*"]);
    assert!(ctl
        .ok(&["list_permissions", "-p", "/"])
        .contains("carol\t^c-\t\t.*"));
    let bad = ctl.run(&["set_permissions", "carol", "(", "", ""]);
    assert!(bad.is_err_and(|e| e.contains("invalid permission pattern")));
    let nobody = ctl.run(&["set_permissions", "nobody", ".*", ".*", ".*"]);
    assert!(nobody.is_err_and(|e| e.contains(r#"User "nobody" does not exist"#)));
    let vhost = ctl.run(&[
        "set_permissions",
        "-p",
        "elsewhere",
        "carol",
        ".*",
        ".*",
        ".*",
    ]);
    assert!(vhost.is_err_and(|e| e.contains("Virtual host 'elsewhere' does not exist")));
    ctl.ok(&["clear_permissions", "carol"]);
    assert!(!ctl.ok(&["list_permissions"]).contains("carol"));
    ctl.ok(&["set_permissions", "carol", ".*", ".*", ".*"]);
    ctl.ok(&["delete_user", "carol"]);
    assert!(!ctl.ok(&["list_permissions"]).contains("carol"));
}

/// Validated user-id: a message may carry the connection's own user name in `user_id`, any
/// other name closes the channel with 406, unless the user is tagged `impersonator`.
#[test]
fn a_publish_claiming_another_user_id_is_refused() {
    let Some((broker, ctl)) = start() else { return };
    let suffix = unique_suffix();
    let user = format!("uid-{suffix}");
    let forger = format!("uid-imp-{suffix}");
    for u in [&user, &forger] {
        ctl.ok(&["add_user", u, "pw"]);
        ctl.ok(&["set_permissions", u, ".*", ".*", ".*"]);
    }
    ctl.ok(&["set_user_tags", &forger, "impersonator"]);
    let port = broker.port();
    let (name, forger_name) = (user.clone(), forger.clone());
    run_async(TEST_TIMEOUT, async move {
        let q = format!("uid-q-{suffix}");
        let connection = connect_as(port, &name, "pw").await.expect("connects");
        let ch = open_channel(&connection).await;
        declare(&ch, &q, false).await;
        confirm_select(&ch).await;
        let own = BasicProperties::default().with_user_id(name.clone().into());
        publish_with(&ch, &q, own)
            .await
            .expect("the user's own name is accepted");
        let forged = BasicProperties::default().with_user_id("someone-else".into());
        assert_refused(
            publish_with(&ch, &q, forged.clone()).await,
            &format!(
                "PRECONDITION_FAILED - user_id property set to 'someone-else' but authenticated user was '{name}'"
            ),
        );
        let impersonator = connect_as(port, &forger_name, "pw")
            .await
            .expect("connects");
        let ch = open_channel(&impersonator).await;
        confirm_select(&ch).await;
        publish_with(&ch, &q, forged)
            .await
            .expect("an impersonator may set any user_id");
        let ch = open_channel(&connection).await;
        let mut seen = 0;
        while let Some(m) = ch
            .basic_get(&q, BasicGetOptions { no_ack: true })
            .await
            .expect("get")
        {
            seen += 1;
            assert!(m.delivery.properties.user_id().is_some());
        }
        assert_eq!(seen, 2, "expected the two accepted messages");
        ch.queue_delete(&q, QueueDeleteOptions::default())
            .await
            .expect("delete");
        close_quietly(impersonator).await;
        close_quietly(connection).await;
    });
    ctl.ok(&["delete_user", &user]);
    ctl.ok(&["delete_user", &forger]);
}

async fn publish_with(
    channel: &Channel,
    key: &str,
    properties: BasicProperties,
) -> Result<(), lapin::Error> {
    let confirm = channel
        .basic_publish("", key, BasicPublishOptions::default(), b"x", properties)
        .await?;
    confirm.await.map(|_| ())
}
