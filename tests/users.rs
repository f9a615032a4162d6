//! Users as RabbitMQ has them, managed with `warren ctl` (rabbitmqctl's verbs): a new data
//! directory has `guest`/`guest` (administrator, loopback only); added users log in with their
//! password, and only with it; passwords change; deleted users are refused; all of it survives
//! kill -9 (a deleted guest stays deleted). A RabbitMQ 3.10 definitions export
//! (`tests/data/rabbitmq-3.10-definitions.json`, written by a real node) imports and its
//! users log in with their RabbitMQ passwords. Failed logins are rate-limited per address.

mod support;

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};
use support::lapin_client::{close_quietly, declare, open_channel};
use support::policy_ctl::PolicyCtl;
use support::{run_async, unique_suffix, Broker, RestartableBroker};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

fn url(port: u16, user: &str, password: &str) -> String {
    format!("amqp://{user}:{password}@127.0.0.1:{port}/%2f")
}

/// Connects as `user`, opens a channel and declares a queue: Ok, or the connection error.
async fn login(port: u16, user: &str, password: &str) -> Result<(), String> {
    let address = url(port, user, password);
    let attempt = Connection::connect(&address, ConnectionProperties::default());
    let connection = tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
        .map_err(|e| e.to_string())?;
    let channel = open_channel(&connection).await;
    declare(&channel, &format!("q-{user}"), false).await;
    close_quietly(connection).await;
    Ok(())
}

fn ok_login(port: u16, user: &'static str, password: &'static str) {
    run_async(TEST_TIMEOUT, async move {
        if let Err(e) = login(port, user, password).await {
            panic!("expected {user} to log in with {password:?}, got {e}");
        }
    });
}

fn refused_login(port: u16, user: &'static str, password: &'static str) {
    run_async(TEST_TIMEOUT, async move {
        let refused = login(port, user, password).await;
        assert!(
            refused.is_err(),
            "expected {user}/{password:?} to be refused"
        );
    });
}

fn own_broker(args: &[&str]) -> Option<(Broker, PolicyCtl)> {
    if support::broker::external_port().is_some() {
        eprintln!("skipped: users are managed with warren ctl on a broker of our own");
        return None;
    }
    let broker = Broker::start(args);
    let ctl = PolicyCtl::of(&broker).expect("a broker of our own has a data directory");
    Some((broker, ctl))
}

#[test]
fn added_users_log_in_with_their_password_only() {
    let Some((mut broker, ctl)) = own_broker(&[]) else {
        return;
    };
    let port = broker.port();
    assert_eq!(
        ctl.ok(&["list_users"]).trim(),
        "user\ttags\nguest\t[administrator]"
    );
    ctl.ok(&["add_user", "alice", "wonder land"]);
    ctl.ok(&["set_permissions", "alice", ".*", ".*", ".*"]);
    ok_login(port, "alice", "wonder land");
    refused_login(port, "alice", "wonder");
    refused_login(port, "nobody", "wonder land");
    ctl.ok(&["set_user_tags", "alice", "monitoring", "policymaker"]);
    let listed = ctl.ok(&["list_users"]);
    assert!(
        listed.contains("alice\t[monitoring, policymaker]"),
        "{listed}"
    );
    ctl.ok(&["change_password", "alice", "rabbit-hole"]);
    refused_login(port, "alice", "wonder land");
    ok_login(port, "alice", "rabbit-hole");
    // rabbitmqctl's refusals.
    let again = ctl.run(&["add_user", "alice", "x"]);
    assert!(again.is_err_and(|e| e.contains(r#"User "alice" already exists"#)));
    let missing = ctl.run(&["delete_user", "bob"]);
    assert!(missing.is_err_and(|e| e.contains(r#"User "bob" does not exist"#)));
    ctl.ok(&["delete_user", "alice"]);
    refused_login(port, "alice", "rabbit-hole");
    // Passwords are never logged.
    let output = broker.output();
    assert!(
        !output.contains("wonder land") && !output.contains("rabbit-hole"),
        "{output}"
    );
}

#[test]
fn users_survive_kill_9_and_a_deleted_guest_stays_deleted() {
    let Some(mut broker) = RestartableBroker::start(&[]) else {
        eprintln!("skipped: the harness cannot restart an external broker");
        return;
    };
    let ctl = PolicyCtl::warren(broker.data_dir());
    ctl.ok(&["add_user", "admin", "s3cret"]);
    ctl.ok(&["set_permissions", "-p", "/", "admin", ".*", ".*", ".*"]);
    ctl.ok(&["set_user_tags", "admin", "administrator"]);
    ctl.ok(&["delete_user", "guest"]);
    broker.restart_after_kill_9();
    let listed = ctl.ok(&["list_users"]);
    assert_eq!(listed.trim(), "user\ttags\nadmin\t[administrator]");
    ok_login(broker.port(), "admin", "s3cret");
    refused_login(broker.port(), "guest", "guest");
    // The data directory stores the hash, never the password.
    let mut stored = Vec::new();
    collect_files(broker.data_dir(), &mut stored);
    assert!(
        !stored.windows(6).any(|w| w == b"s3cret"),
        "the password is on disk"
    );
}

fn collect_files(dir: &std::path::Path, out: &mut Vec<u8>) {
    for entry in std::fs::read_dir(dir)
        .expect("read the data directory")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.extend(bytes);
        }
    }
}

#[test]
fn a_rabbitmq_definitions_export_imports_and_its_users_log_in() {
    let export = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/rabbitmq-3.10-definitions.json"
    );
    let Some((broker, ctl)) = own_broker(&["--definitions", export]) else {
        return;
    };
    let port = broker.port();
    // The export gives only guest permissions (as RabbitMQ's did): others need some to log in.
    refused_login(port, "alice", "alice-pw");
    for user in ["alice", "bob"] {
        ctl.ok(&["set_permissions", user, ".*", ".*", ".*"]);
    }
    // Passwords set with rabbitmqctl add_user on RabbitMQ 3.10, stored there as salted SHA-256.
    ok_login(port, "alice", "alice-pw");
    ok_login(port, "bob", "bob-pw");
    refused_login(port, "alice", "bob-pw");
    let users = ctl.ok(&["list_users"]);
    assert!(
        users.contains("alice\t[monitoring]") && users.contains("bob\t[]"),
        "{users}"
    );
    let policies = ctl.ok(&["list_policies"]);
    assert!(
        policies.contains("\tcap\t^capped\\.\tqueues\t"),
        "{policies}"
    );
}

#[test]
fn failed_logins_are_rate_limited_per_address() {
    let args = ["--login-failures-max", "5", "--login-failure-window", "3"];
    let Some((mut broker, _ctl)) = own_broker(&args) else {
        return;
    };
    let port = broker.port();
    // A burst of wrong passwords over many connections at once: every one refused, the broker
    // unharmed.
    run_async(TEST_TIMEOUT, async move {
        let attempts =
            (0..40).map(|i| async move { login(port, "guest", &format!("guess-{i}")).await });
        let results = futures_join_all(attempts).await;
        assert!(results.iter().all(Result::is_err), "a guess was accepted");
        // Past the limit even the right password is refused from this address...
        assert!(login(port, "guest", "guest").await.is_err());
    });
    // ...until the window has passed.
    std::thread::sleep(Duration::from_millis(3200));
    ok_login(port, "guest", "guest");
    let output = broker.output();
    assert!(
        output.contains("too many failed logins from 127.0.0.1"),
        "{output}"
    );
    assert!(
        !output.contains("guess-"),
        "a password was logged: {output}"
    );
}

/// Runs the futures concurrently and returns their results (in the order they finish).
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let handles: Vec<_> = futures.map(|f| Box::pin(f)).collect();
    let mut out = Vec::with_capacity(handles.len());
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    // Poll all of them together; simple and dependency-free.
    std::future::poll_fn(|cx| {
        let mut done = true;
        for slot in pending.iter_mut() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        out.push(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out
}

/// rabbitmq.conf keys in `--config`: the default user comes from `default_user` and
/// `default_pass`, as in RabbitMQ.
#[test]
fn a_rabbitmq_conf_style_config_file_sets_the_default_user() {
    if support::broker::external_port().is_some() {
        return; // the external broker's configuration is its own
    }
    let path = std::env::temp_dir().join(format!("warren-{}.conf", unique_suffix()));
    let conf = "# rabbitmq.conf keys\ndefault_user = admin\ndefault_pass = s3cret\n\
                loopback_users.guest = false\nheartbeat = 30\n";
    std::fs::write(&path, conf).expect("write the config file");
    let broker = Broker::start(&["--config", path.to_str().expect("UTF-8 path")]);
    ok_login(broker.port(), "admin", "s3cret");
    refused_login(broker.port(), "guest", "guest");
    let _ = std::fs::remove_file(&path);
}
