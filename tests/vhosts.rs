//! Virtual hosts as RabbitMQ 3.10 has them, managed with `warren ctl` in rabbitmqctl's words
//! (rabbitmqctl itself on a RabbitMQ node: `tests/queue-features-vs-rabbitmq.sh`): a vhost
//! has its own queues and exchanges (its own `amq.*` too), permissions, limits and policies;
//! opening a missing vhost, or one the user has no permissions on, is refused with 530;
//! delete_vhost takes everything in it along (its permissions, limits and policies too) and
//! closes its connections with 320; a vhost added again starts empty. Deleting `/` is allowed.
//! Deletions survive a restart (Warren only: the harness cannot restart an external broker).
//!
//! Codes and texts are RabbitMQ 3.10.8's, as this suite saw them against a real node.

mod support;

use std::sync::{PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use support::lapin_client::{
    bodies, close_quietly, confirm_channel, connect_to, declare, declare_exchange, get_all,
    message_count, open_channel, publish_confirmed, within,
};
use support::policy_ctl::PolicyCtl;
use support::raw::{self, Ending};
use support::{run_async, unique_suffix, Broker, RestartableBroker};

const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// On an external broker every test of this file shares one `/`: the tests hold this lock
/// shared, the one that deletes `/` holds it alone.
static DEFAULT_VHOST: RwLock<()> = RwLock::new(());

type SharedDefault = RwLockReadGuard<'static, ()>;

fn start() -> Option<(Broker, PolicyCtl, SharedDefault)> {
    let shared = DEFAULT_VHOST.read().unwrap_or_else(PoisonError::into_inner);
    let broker = Broker::start(&[]);
    let Some(ctl) = PolicyCtl::of(&broker) else {
        eprintln!("skipped: no way to manage vhosts on the external broker");
        return None;
    };
    Some((broker, ctl, shared))
}

/// A vhost of one test, `PREFIX-<unique suffix>`, deleted on drop (an external broker is
/// shared and kept).
struct Vhost<'a> {
    ctl: &'a PolicyCtl,
    name: String,
}

impl<'a> Vhost<'a> {
    /// add_vhost, with nobody allowed in (add_vhost grants nothing).
    fn bare(ctl: &'a PolicyCtl, prefix: &str) -> Vhost<'a> {
        let name = format!("{prefix}-{}", unique_suffix());
        ctl.ok(&["add_vhost", &name]);
        Vhost { ctl, name }
    }

    /// add_vhost, and guest allowed everything in it.
    fn for_guest(ctl: &'a PolicyCtl, prefix: &str) -> Vhost<'a> {
        let vhost = Vhost::bare(ctl, prefix);
        allow_guest(ctl, &vhost.name);
        vhost
    }
}

impl Drop for Vhost<'_> {
    fn drop(&mut self) {
        let _ = self.ctl.run(&["delete_vhost", &self.name]);
    }
}

/// Policy `cap` in `vhost`: max-length 1 on the queue named `queue`. Returns its pattern.
fn cap_policy(ctl: &PolicyCtl, vhost: &str, queue: &str) -> String {
    let pattern = format!("^{queue}$");
    let definition = r#"{"max-length": 1}"#;
    let args = ["set_policy", "-p", vhost, "cap", &pattern, definition];
    ctl.ok(&[&args[..], &["--apply-to", "queues"]].concat());
    pattern
}

fn allow_guest(ctl: &PolicyCtl, vhost: &str) {
    ctl.ok(&["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"]);
}

/// The vhosts list_vhosts names, after checking its header is `name`. With no vhost at all
/// (`/` deleted too) RabbitMQ prints no header, only an empty line.
fn list_vhosts(ctl: &PolicyCtl) -> Vec<String> {
    let listed = ctl.ok(&["list_vhosts"]);
    let mut lines = listed.lines().filter(|l| !l.is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    assert_eq!(header, "name", "list_vhosts printed:\n{listed}");
    lines.map(str::to_string).collect()
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

/// The rows of `list_queues -p VHOST name messages`, as `name\tmessages`, sorted. RabbitMQ
/// prints nothing at all (no header) for a vhost without queues.
fn list_queues(ctl: &PolicyCtl, vhost: &str) -> Vec<String> {
    let listed = ctl.ok(&["list_queues", "-p", vhost, "name", "messages"]);
    let mut lines = listed.lines().filter(|l| !l.is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    assert_eq!(header, "name\tmessages", "list_queues printed:\n{listed}");
    let mut rows: Vec<String> = lines.map(str::to_string).collect();
    rows.sort();
    rows
}

/// A failed rabbitmqctl command must say `Virtual host ... VHOST ... does not exist`.
/// (RabbitMQ quotes the name in most commands, `Virtual host 'v' does not exist`, but not in
/// set_permissions: `Error:\nVirtual host v does not exist`.)
fn assert_no_such_vhost(result: Result<String, String>, vhost: &str, what: &str) {
    let err = result.expect_err(&format!("expected {what} to fail"));
    assert!(
        err.contains("Virtual host") && err.contains(vhost) && err.contains("does not exist"),
        "expected {what} to say the vhost does not exist, got: {err}"
    );
}

/// `result` must be a close (of the channel, or of the connection) with `code` and exactly
/// `text`.
fn assert_closed<T>(result: Result<T, lapin::Error>, code: u16, text: &str) {
    match result {
        Ok(_) => panic!("expected a close {code} {text:?}, got the operation done"),
        Err(lapin::Error::ProtocolError(e)) => assert_eq!(
            (e.get_id(), e.get_message().as_str()),
            (code, text),
            "expected close {code} {text:?}"
        ),
        Err(e) => panic!("expected a close {code} {text:?}, got {e}"),
    }
}

async fn guest_to(port: u16, vhost: &str) -> Connection {
    connect_to(port, "guest", "guest", vhost)
        .await
        .unwrap_or_else(|e| panic!("expected guest to open vhost {vhost:?}, got {e}"))
}

async fn passive_queue(channel: &Channel, queue: &str) -> Result<lapin::Queue, lapin::Error> {
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    within(
        "queue.declare (passive)",
        channel.queue_declare(queue, options, FieldTable::default()),
    )
    .await
}

async fn passive_exchange(
    channel: &Channel,
    exchange: &str,
    kind: ExchangeKind,
) -> Result<(), lapin::Error> {
    let options = ExchangeDeclareOptions {
        passive: true,
        ..ExchangeDeclareOptions::default()
    };
    within(
        "exchange.declare (passive)",
        channel.exchange_declare(exchange, kind, options, FieldTable::default()),
    )
    .await
}

/// basic.publish on a confirm channel and its confirm: the channel's close if it fails.
async fn try_publish(
    channel: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
) -> Result<(), lapin::Error> {
    let options = BasicPublishOptions::default();
    let publish = channel.basic_publish(exchange, key, options, body, Default::default());
    let confirm = within("basic.publish", publish).await?;
    within("a publisher confirm", confirm).await.map(|_| ())
}

/// Publishes `count` persistent messages `m1..` to `queue` through the default exchange,
/// each confirmed.
async fn fill(channel: &Channel, queue: &str, count: usize) {
    for n in 1..=count {
        let persistent = BasicProperties::default().with_delivery_mode(2);
        let body = format!("m{n}");
        publish_confirmed(channel, "", queue, false, body.as_bytes(), persistent).await;
    }
}

/// queue.bind of `queue` to `exchange` with an empty key: the channel's close if it fails.
async fn try_bind(channel: &Channel, queue: &str, exchange: &str) -> Result<(), lapin::Error> {
    let options = QueueBindOptions::default();
    let bind = channel.queue_bind(queue, exchange, "", options, FieldTable::default());
    within("queue.bind", bind).await
}

async fn delete_queue(channel: &Channel, queue: &str) {
    within(
        "queue.delete-ok",
        channel.queue_delete(queue, QueueDeleteOptions::default()),
    )
    .await
    .unwrap_or_else(|e| panic!("expected queue.delete-ok for {queue}, got {e}"));
}

#[test]
fn a_vhost_has_its_own_queues_and_exchanges() {
    let Some((broker, ctl, _shared)) = start() else {
        return;
    };
    let v = Vhost::for_guest(&ctl, "vh-own");
    let (port, suffix) = (broker.port(), unique_suffix());
    run_async(TEST_TIMEOUT, async {
        let root = guest_to(port, "/").await;
        let inside = guest_to(port, &v.name).await;
        let (rc, vc) = (confirm_channel(&root).await, confirm_channel(&inside).await);
        // The same queue name in both vhosts: two queues.
        let q = format!("q-{suffix}");
        declare(&rc, &q, false).await;
        declare(&vc, &q, false).await;
        fill(&vc, &q, 2).await;
        publish_confirmed(&rc, "", &q, false, b"root", BasicProperties::default()).await;
        assert_eq!(message_count(&vc, &q).await, 2, "{q} in {}", v.name);
        assert_eq!(message_count(&rc, &q).await, 1, "{q} in /");
        assert_eq!(bodies(&get_all(&vc, &q).await), ["m1", "m2"]);
        assert_eq!(bodies(&get_all(&rc, &q).await), ["root"]);
        // Every vhost has the standard exchanges, its own.
        for (name, kind) in [
            ("amq.direct", ExchangeKind::Direct),
            ("amq.topic", ExchangeKind::Topic),
            ("amq.fanout", ExchangeKind::Fanout),
            ("amq.headers", ExchangeKind::Headers),
            ("amq.match", ExchangeKind::Headers),
        ] {
            let found = passive_exchange(&vc, name, kind).await;
            found.unwrap_or_else(|e| panic!("expected {name} in {}, got {e}", v.name));
        }
        try_bind(&vc, &q, "amq.fanout")
            .await
            .expect("queue.bind-ok");
        try_publish(&rc, "amq.fanout", "", b"/")
            .await
            .expect("an ack");
        try_publish(&vc, "amq.fanout", "", b"v")
            .await
            .expect("an ack");
        let got = bodies(&get_all(&vc, &q).await);
        assert_eq!(got, ["v"], "/'s amq.fanout is not v's");
        exchanges_and_queues_stay_in_their_vhost(&root, &inside, &v.name, &suffix).await;
        delete_queue(&rc, &q).await;
        close_quietly(inside).await;
        close_quietly(root).await;
    });
}

/// What one vhost declares, the other does not see: passive declares, a bind and a publish
/// across vhosts fail with 404 naming the vhost the channel is in.
async fn exchanges_and_queues_stay_in_their_vhost(
    root: &Connection,
    inside: &Connection,
    v: &str,
    suffix: &str,
) {
    let (x, y, r) = (
        format!("x-{suffix}"),
        format!("y-{suffix}"),
        format!("r-{suffix}"),
    );
    let (rc, vc) = (open_channel(root).await, open_channel(inside).await);
    declare_exchange(&vc, &x, ExchangeKind::Fanout, false).await;
    declare_exchange(&rc, &y, ExchangeKind::Fanout, false).await;
    declare(&rc, &r, false).await;
    let in_root = |kind: &str, name: &str| format!("NOT_FOUND - no {kind} '{name}' in vhost '/'");
    let in_v = |kind: &str, name: &str| format!("NOT_FOUND - no {kind} '{name}' in vhost '{v}'");
    let ch = open_channel(root).await;
    let found = passive_exchange(&ch, &x, ExchangeKind::Fanout).await;
    assert_closed(found, 404, &in_root("exchange", &x));
    let ch = open_channel(inside).await;
    let found = passive_exchange(&ch, &y, ExchangeKind::Fanout).await;
    assert_closed(found, 404, &in_v("exchange", &y));
    let ch = open_channel(inside).await;
    assert_closed(passive_queue(&ch, &r).await, 404, &in_v("queue", &r));
    let ch = open_channel(inside).await;
    declare(&ch, &r, false).await;
    assert_closed(try_bind(&ch, &r, &y).await, 404, &in_v("exchange", &y));
    let ch = confirm_channel(inside).await;
    let published = try_publish(&ch, &y, "", b"x").await;
    assert_closed(published, 404, &in_v("exchange", &y));
    // Both still there in their own vhosts.
    passive_exchange(&vc, &x, ExchangeKind::Fanout)
        .await
        .expect("x in v");
    passive_exchange(&rc, &y, ExchangeKind::Fanout)
        .await
        .expect("y in /");
    delete_queue(&rc, &r).await;
    let deleted = within(
        "exchange.delete",
        rc.exchange_delete(&y, Default::default()),
    )
    .await;
    deleted.expect("exchange.delete-ok");
}

#[test]
fn opening_a_missing_vhost_or_one_without_permissions_is_refused() {
    let Some((broker, ctl, _shared)) = start() else {
        return;
    };
    let port = broker.port();
    let missing = format!("vh-missing-{}", unique_suffix());
    let bare = Vhost::bare(&ctl, "vh-bare");
    let user = format!("vh-user-{}", unique_suffix());
    ctl.ok(&["add_user", &user, "pw"]);
    ctl.ok(&["set_permissions", "-p", &bare.name, &user, ".*", ".*", ".*"]);
    run_async(TEST_TIMEOUT, async {
        let refused = connect_to(port, "guest", "guest", &missing).await;
        let text = format!("NOT_ALLOWED - vhost {missing} not found");
        assert_closed(refused, 530, &text);
        // add_vhost grants nobody anything, guest included.
        let refused = connect_to(port, "guest", "guest", &bare.name).await;
        let text = format!(
            "NOT_ALLOWED - access to vhost '{}' refused for user 'guest'",
            bare.name
        );
        assert_closed(refused, 530, &text);
        // Permissions are per vhost: the user may open this one, not `/`.
        let allowed = connect_to(port, &user, "pw", &bare.name).await;
        let connection = allowed.unwrap_or_else(|e| panic!("expected {user} in, got {e}"));
        let channel = open_channel(&connection).await;
        declare(&channel, "q", false).await;
        let refused = connect_to(port, &user, "pw", "/").await;
        let text = format!("NOT_ALLOWED - access to vhost '/' refused for user '{user}'");
        assert_closed(refused, 530, &text);
        close_quietly(connection).await;
    });
    ctl.ok(&["delete_user", &user]);
}

/// connection.close 320 for a connection to the vhost `v` that delete_vhost took, which
/// RabbitMQ sends without waiting for close-ok (it resets the socket at once, so lapin may see
/// the reset first: a raw client sees the close). Its text is `vhost 'v' is deleted`, or
/// now and then `vhost 'v' is down` on RabbitMQ (two of its processes race to close the
/// connection); Warren must say `is deleted`.
fn assert_forced_closed(client: &mut raw::Client, v: &str, external: bool) {
    let deleted = format!("CONNECTION_FORCED - vhost '{v}' is deleted");
    let down = format!("CONNECTION_FORCED - vhost '{v}' is down");
    match client.connection_ending() {
        Ending::Close {
            reply_code: 320,
            reply_text,
        } if reply_text == deleted || (external && reply_text == down) => {}
        other => panic!("expected connection.close 320 {deleted:?}, got {other:?}"),
    }
}

#[test]
fn deleting_a_vhost_takes_its_contents_and_closes_its_connections() {
    let Some((broker, ctl, _shared)) = start() else {
        return;
    };
    let v = Vhost::for_guest(&ctl, "vh-del");
    let (port, suffix, external) = (broker.port(), unique_suffix(), broker.is_external());
    let (q, x) = (format!("dq-{suffix}"), format!("dx-{suffix}"));
    ctl.ok(&["set_vhost_limits", "-p", &v.name, r#"{"max-queues": 1}"#]);
    cap_policy(&ctl, &v.name, &q);
    run_async(TEST_TIMEOUT, async {
        let root = guest_to(port, "/").await;
        let inside = guest_to(port, &v.name).await;
        let (rc, vc) = (confirm_channel(&root).await, confirm_channel(&inside).await);
        declare(&rc, &q, true).await;
        declare(&vc, &q, true).await;
        declare_exchange(&vc, &x, ExchangeKind::Fanout, true).await;
        fill(&rc, &q, 2).await;
        fill(&vc, &q, 2).await;
        assert_eq!(message_count(&vc, &q).await, 1, "the policy caps v's {q}");
        let mut client = raw::Client::tcp(port, "a raw client in the vhost");
        client.handshake_to(&v.name, None);
        client.open_channel(1);
        ctl.ok(&["delete_vhost", &v.name]);
        assert_forced_closed(&mut client, &v.name, external);
        let opened = within(
            "channel.open on a closed connection",
            inside.create_channel(),
        );
        assert!(opened.await.is_err(), "the lapin connection is gone too");
        assert!(!list_vhosts(&ctl).contains(&v.name));
        let refused = connect_to(port, "guest", "guest", &v.name).await;
        assert_closed(
            refused,
            530,
            &format!("NOT_ALLOWED - vhost {} not found", v.name),
        );
        assert_eq!(message_count(&rc, &q).await, 2, "/'s {q} is untouched");
        added_again_empty(&ctl, port, &v.name, &q, &x).await;
        delete_queue(&rc, &q).await;
        close_quietly(root).await;
    });
}

/// add_vhost `v` again: guest must be allowed again; the queue and exchange are gone, and so
/// are the limit (one queue) and the policy (max-length 1).
async fn added_again_empty(ctl: &PolicyCtl, port: u16, v: &str, q: &str, x: &str) {
    ctl.ok(&["add_vhost", v]);
    let refused = connect_to(port, "guest", "guest", v).await;
    let text = format!("NOT_ALLOWED - access to vhost '{v}' refused for user 'guest'");
    assert_closed(refused, 530, &text);
    allow_guest(ctl, v);
    let inside = guest_to(port, v).await;
    let ch = open_channel(&inside).await;
    let text = format!("NOT_FOUND - no queue '{q}' in vhost '{v}'");
    assert_closed(passive_queue(&ch, q).await, 404, &text);
    let ch = open_channel(&inside).await;
    let text = format!("NOT_FOUND - no exchange '{x}' in vhost '{v}'");
    let found = passive_exchange(&ch, x, ExchangeKind::Fanout).await;
    assert_closed(found, 404, &text);
    assert_eq!(list_queues(ctl, v), Vec::<String>::new());
    assert_eq!(ctl.ok(&["list_policies", "-p", v]).trim(), "");
    let ch = confirm_channel(&inside).await;
    declare(&ch, q, false).await;
    declare(&ch, &format!("{q}-2"), false).await;
    fill(&ch, q, 2).await;
    assert_eq!(
        message_count(&ch, q).await,
        2,
        "no limit, no policy any more"
    );
    close_quietly(inside).await;
}

#[test]
fn vhost_commands_answer_like_rabbitmqctl() {
    let Some((broker, ctl, _shared)) = start() else {
        return;
    };
    let v = Vhost::for_guest(&ctl, "vh-ctl");
    let listed = list_vhosts(&ctl);
    assert!(listed.contains(&"/".to_string()), "{listed:?}");
    assert!(listed.contains(&v.name), "{listed:?}");
    // The one column asked for by name: the same shape.
    let named = ctl.ok(&["list_vhosts", "name"]);
    assert_eq!(named.lines().next(), Some("name"), "{named}");
    assert!(named.lines().any(|l| l == v.name), "{named}");
    let (port, suffix) = (broker.port(), unique_suffix());
    let (a, b, elsewhere) = (
        format!("la-{suffix}"),
        format!("lb-{suffix}"),
        format!("lr-{suffix}"),
    );
    assert_eq!(list_queues(&ctl, &v.name), Vec::<String>::new());
    run_async(TEST_TIMEOUT, async {
        let inside = guest_to(port, &v.name).await;
        let ch = confirm_channel(&inside).await;
        declare(&ch, &a, false).await;
        declare(&ch, &b, false).await;
        fill(&ch, &a, 2).await;
        let root = guest_to(port, "/").await;
        declare(&open_channel(&root).await, &elsewhere, false).await;
        // add_vhost of an existing vhost succeeds and changes nothing.
        ctl.ok(&["add_vhost", &v.name]);
        let listed = list_vhosts(&ctl);
        assert_eq!(listed.iter().filter(|n| **n == v.name).count(), 1);
        assert_eq!(
            list_queues(&ctl, &v.name),
            [format!("{a}\t2"), format!("{b}\t0")]
        );
        assert!(list_queues(&ctl, "/").contains(&format!("{elsewhere}\t0")));
        delete_queue(&open_channel(&root).await, &elsewhere).await;
        close_quietly(inside).await;
        close_quietly(root).await;
    });
    let missing = format!("vh-missing-{suffix}");
    let ctl_ref = &ctl;
    let on_missing = |verb: &str, args: &[&str]| {
        ctl_ref.run(&[&[verb, "-p", missing.as_str()][..], args].concat())
    };
    assert_no_such_vhost(
        ctl.run(&["delete_vhost", &missing]),
        &missing,
        "delete_vhost",
    );
    let limits = on_missing("set_vhost_limits", &[r#"{"max-queues": 1}"#]);
    assert_no_such_vhost(limits, &missing, "set_vhost_limits");
    let policy = on_missing("set_policy", &["p", "^x", r#"{"max-length": 1}"#]);
    assert_no_such_vhost(policy, &missing, "set_policy");
    let permissions = on_missing("set_permissions", &["guest", ".*", ".*", ".*"]);
    assert_no_such_vhost(permissions, &missing, "set_permissions");
    ctl.ok(&["delete_vhost", &v.name]);
    assert!(!list_vhosts(&ctl).contains(&v.name));
    assert_no_such_vhost(ctl.run(&["delete_vhost", &v.name]), &v.name, "a 2nd delete");
}

#[test]
fn vhost_limits_bound_their_own_vhost_only() {
    let Some((broker, ctl, _shared)) = start() else {
        return;
    };
    let v = Vhost::for_guest(&ctl, "vh-lim");
    ctl.ok(&["set_vhost_limits", "-p", &v.name, r#"{"max-queues": 1}"#]);
    let (port, suffix) = (broker.port(), unique_suffix());
    run_async(TEST_TIMEOUT, async {
        let inside = guest_to(port, &v.name).await;
        let ch = open_channel(&inside).await;
        declare(&ch, "q1", false).await;
        let declared =
            ch.queue_declare("q2", QueueDeclareOptions::default(), FieldTable::default());
        let text = format!(
            "PRECONDITION_FAILED - cannot declare queue 'q2': queue limit in vhost '{}' (1) is reached",
            v.name
        );
        assert_closed(within("queue.declare", declared).await, 406, &text);
        let root = guest_to(port, "/").await;
        let rc = open_channel(&root).await;
        for n in 1..=2 {
            let q = format!("unlimited-{n}-{suffix}");
            declare(&rc, &q, false).await;
            delete_queue(&rc, &q).await;
        }
        // set_vhost_limits replaces the vhost's limits: max-queues goes.
        ctl.ok(&[
            "set_vhost_limits",
            "-p",
            &v.name,
            r#"{"max-connections": 1}"#,
        ]);
        declare(&open_channel(&inside).await, "q2", false).await;
        let refused = connect_to(port, "guest", "guest", &v.name).await;
        let text = format!(
            "NOT_ALLOWED - access to vhost '{}' refused for user 'guest': connection limit (1) is reached",
            v.name
        );
        assert_closed(refused, 530, &text);
        let second_root = guest_to(port, "/").await;
        close_quietly(inside).await;
        let again = connect_eventually(port, &v.name).await;
        close_quietly(again).await;
        close_quietly(second_root).await;
        close_quietly(root).await;
    });
}

/// A connection to `vhost` as guest, retried for a while: RabbitMQ forgets a closed
/// connection (for its connection limit) a moment after the close.
async fn connect_eventually(port: u16, vhost: &str) -> Connection {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match connect_to(port, "guest", "guest", vhost).await {
            Ok(connection) => return connection,
            Err(e) if Instant::now() >= deadline => panic!("expected room in {vhost}, got {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[test]
fn a_policy_applies_in_its_own_vhost_only() {
    let Some((broker, ctl, _shared)) = start() else {
        return;
    };
    let v = Vhost::for_guest(&ctl, "vh-pol");
    let q = format!("lim-{}", unique_suffix());
    let pattern = cap_policy(&ctl, &v.name, &q);
    let listed = ctl.ok(&["list_policies", "-p", &v.name]);
    let row = format!(
        "{}\tcap\t{pattern}\tqueues\t{{\"max-length\":1}}\t0",
        v.name
    );
    assert!(listed.lines().any(|l| l == row), "{listed}");
    let port = broker.port();
    run_async(TEST_TIMEOUT, async {
        let root = guest_to(port, "/").await;
        let inside = guest_to(port, &v.name).await;
        let (rc, vc) = (confirm_channel(&root).await, confirm_channel(&inside).await);
        declare(&rc, &q, false).await;
        declare(&vc, &q, false).await;
        fill(&rc, &q, 3).await;
        fill(&vc, &q, 3).await;
        assert_eq!(
            bodies(&get_all(&vc, &q).await),
            ["m3"],
            "capped in {}",
            v.name
        );
        assert_eq!(
            bodies(&get_all(&rc, &q).await),
            ["m1", "m2", "m3"],
            "not in /"
        );
        delete_queue(&rc, &q).await;
        close_quietly(inside).await;
        close_quietly(root).await;
    });
}

#[test]
fn a_deleted_vhost_stays_deleted_after_a_restart() {
    let _shared = DEFAULT_VHOST.read().unwrap_or_else(PoisonError::into_inner);
    let Some(mut broker) = RestartableBroker::start(&[]) else {
        eprintln!("skipped: the harness cannot restart an external broker");
        return;
    };
    let ctl = PolicyCtl::warren(broker.data_dir());
    for vhost in ["a", "b"] {
        ctl.ok(&["add_vhost", vhost]);
        allow_guest(&ctl, vhost);
    }
    let port = broker.port();
    run_async(TEST_TIMEOUT, async {
        for vhost in ["a", "b"] {
            let connection = guest_to(port, vhost).await;
            let ch = confirm_channel(&connection).await;
            declare(&ch, "dq", true).await;
            fill(&ch, "dq", 3).await;
            close_quietly(connection).await;
        }
    });
    ctl.ok(&["delete_vhost", "b"]);
    broker.restart_after_kill_9();
    assert_eq!(sorted(list_vhosts(&ctl)), ["/", "a"]);
    let port = broker.port();
    run_async(TEST_TIMEOUT, async {
        let refused = connect_to(port, "guest", "guest", "b").await;
        assert_closed(refused, 530, "NOT_ALLOWED - vhost b not found");
        let connection = guest_to(port, "a").await;
        let ch = open_channel(&connection).await;
        assert_eq!(bodies(&get_all(&ch, "dq").await), ["m1", "m2", "m3"]);
        close_quietly(connection).await;
    });
    ctl.ok(&["add_vhost", "b"]);
    allow_guest(&ctl, "b");
    broker.restart_after_kill_9();
    assert_eq!(sorted(list_vhosts(&ctl)), ["/", "a", "b"]);
    let port = broker.port();
    run_async(TEST_TIMEOUT, async {
        let connection = guest_to(port, "b").await;
        let ch = open_channel(&connection).await;
        let found = passive_queue(&ch, "dq").await;
        assert_closed(found, 404, "NOT_FOUND - no queue 'dq' in vhost 'b'");
        close_quietly(connection).await;
    });
}

/// Puts `/` back with guest allowed everything in it, however the test ends.
struct RestoreDefault<'a>(&'a PolicyCtl);

impl Drop for RestoreDefault<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["add_vhost", "/"]);
        let _ = self
            .0
            .run(&["set_permissions", "-p", "/", "guest", ".*", ".*", ".*"]);
    }
}

/// RabbitMQ lets `/` go like any other vhost; on Warren its deletion survives a restart.
#[test]
fn the_default_vhost_can_be_deleted_and_added_again() {
    let _alone = DEFAULT_VHOST
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    let mut restartable = RestartableBroker::start(&[]);
    let external = restartable.is_none().then(|| Broker::start(&[]));
    let ctl = match (&restartable, &external) {
        (Some(broker), _) => PolicyCtl::warren(broker.data_dir()),
        (None, Some(broker)) => match PolicyCtl::of(broker) {
            Some(ctl) => ctl,
            None => return eprintln!("skipped: no way to manage vhosts on the external broker"),
        },
        (None, None) => unreachable!("one broker or the other"),
    };
    let port = |r: &Option<RestartableBroker>| match (r, &external) {
        (Some(broker), _) => broker.port(),
        (None, Some(broker)) => broker.port(),
        (None, None) => unreachable!("one broker or the other"),
    };
    let q = format!("root-dq-{}", unique_suffix());
    let p = port(&restartable);
    run_async(TEST_TIMEOUT, async {
        let connection = guest_to(p, "/").await;
        let ch = confirm_channel(&connection).await;
        declare(&ch, &q, true).await;
        fill(&ch, &q, 1).await;
        close_quietly(connection).await;
    });
    let restore = RestoreDefault(&ctl);
    ctl.ok(&["delete_vhost", "/"]);
    if let Some(broker) = &mut restartable {
        broker.restart_after_kill_9();
    }
    assert!(!list_vhosts(&ctl).contains(&"/".to_string()));
    let p = port(&restartable);
    run_async(TEST_TIMEOUT, async {
        let refused = connect_to(p, "guest", "guest", "/").await;
        assert_closed(refused, 530, "NOT_ALLOWED - vhost / not found");
        ctl.ok(&["add_vhost", "/"]);
        let refused = connect_to(p, "guest", "guest", "/").await;
        let text = "NOT_ALLOWED - access to vhost '/' refused for user 'guest'";
        assert_closed(refused, 530, text);
        allow_guest(&ctl, "/");
        let connection = guest_to(p, "/").await;
        let ch = open_channel(&connection).await;
        let text = format!("NOT_FOUND - no queue '{q}' in vhost '/'");
        assert_closed(passive_queue(&ch, &q).await, 404, &text);
        close_quietly(connection).await;
    });
    drop(restore);
}

/// `--default-vhost` (rabbitmq.conf `default_vhost`): a fresh node has that vhost instead of
/// `/`, the default user has full permissions there, and a restart creates nothing again.
/// Warren only: the harness cannot start an external broker with other settings.
#[test]
fn a_fresh_node_starts_with_the_configured_default_vhost() {
    let Some(mut broker) = RestartableBroker::start(&["--default-vhost", "team-a"]) else {
        eprintln!("skipped: the harness cannot start an external broker with other settings");
        return;
    };
    let ctl = PolicyCtl::warren(broker.data_dir());
    assert_eq!(list_vhosts(&ctl), ["team-a"]);
    let listed = ctl.ok(&["list_permissions", "-p", "team-a"]);
    assert!(listed.contains("guest\t.*\t.*\t.*"), "{listed}");
    let port = broker.port();
    run_async(TEST_TIMEOUT, async move {
        let connection = guest_to(port, "team-a").await;
        let ch = confirm_channel(&connection).await;
        declare(&ch, "q", true).await;
        fill(&ch, "q", 1).await;
        close_quietly(connection).await;
        let refused = connect_to(port, "guest", "guest", "/").await;
        assert_closed(refused, 530, "NOT_ALLOWED - vhost / not found");
    });
    ctl.ok(&["add_vhost", "/"]);
    broker.restart_after_kill_9();
    assert_eq!(sorted(list_vhosts(&ctl)), ["/", "team-a"]);
    assert_eq!(list_queues(&ctl, "team-a"), ["q\t1"]);
}
