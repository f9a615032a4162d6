//! Real clients of the management HTTP API against the broker's `--management-port`:
//!
//! * rabbitmqadmin, the management plugin's v1 command line tool (taken from Debian's
//!   rabbitmq-server package into `target/`, see `support::scripts::rabbitmqadmin`):
//!   `declare queue`, `list queues`, `publish`, `get`, `export`, `delete queue`, and a wrong
//!   password refused;
//! * pyrabbit2 from PyPI (a venv under `target/`): aliveness, overview, vhosts, creating a
//!   queue, publishing, listing and getting (`tests/mgmt/pyrabbit2_client.py`);
//! * a definitions export made by RabbitMQ 3.10 (`tests/data/rabbitmq-definitions.json`,
//!   from `tests/mgmt/make_definitions.py`) imported with `POST /api/definitions`: its
//!   vhosts, users (their password hashes too), permissions, topic permissions, policies,
//!   limits, queues, exchanges and bindings then show in the API.
//!
//! Against RabbitMQ: `WARREN_TEST_AMQP_PORT=36600 WARREN_TEST_MGMT_PORT=36672
//! WARREN_TEST_PROMETHEUS_PORT=36692 cargo test --test management_clients` (see
//! `tests/management_api.rs`).

#[path = "mgmt/harness.rs"]
mod harness;
mod support;

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use harness::{data_file, http, run, script, MgmtBroker};
use serde_json::Value;
use support::lapin_client::{close, connect_to};
use support::process::Output;
use support::scripts::{mgmt_python, rabbitmqadmin};
use support::{fresh_dir, run_async, unique_suffix};

/// Bounds one client run (a first run also provisions the client, bounded separately).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long RabbitMQ may take to count a new queue's messages (its statistics: every 5 s).
const STATS_TIMEOUT: Duration = Duration::from_secs(30);

/// The definitions test imports over guest's password hash and the default vhost's limits:
/// on an external broker no other test of this file runs meanwhile.
static IMPORT: Mutex<()> = Mutex::new(());

/// `rabbitmqadmin -H 127.0.0.1 -P <management port> -u guest -p <password> args...`
fn admin(broker: &MgmtBroker, password: &str, args: &[&str]) -> Output {
    let mut command = Command::new("python3");
    command
        .arg(rabbitmqadmin())
        .args(["-H", "127.0.0.1", "-P", &broker.mgmt_port.to_string()])
        .args(["-u", "guest", "-p", password])
        .args(args);
    run(
        command,
        &format!("rabbitmqadmin {}", args.join(" ")),
        CLIENT_TIMEOUT,
    )
}

/// [`admin`] as guest/guest, which must exit 0 and print `expected`; its stdout.
fn admin_ok(broker: &MgmtBroker, args: &[&str], expected: &str) -> String {
    let output = admin(broker, "guest", args);
    output.assert_success(&format!("rabbitmqadmin {}", args.join(" ")));
    assert!(
        output.stdout.contains(expected),
        "expected rabbitmqadmin {} to print {expected:?}, got:\n{}",
        args.join(" "),
        output.stdout
    );
    output.stdout
}

#[test]
fn rabbitmqadmin_declares_lists_publishes_gets_and_exports() {
    let _guard = IMPORT.lock().unwrap_or_else(|e| e.into_inner());
    let Some(broker) = MgmtBroker::start() else {
        return;
    };
    let queue = format!("mgmt-admin-{}", unique_suffix());
    admin_ok(
        &broker,
        &["declare", "queue", &format!("name={queue}"), "durable=true"],
        "queue declared",
    );
    let table = admin_ok(&broker, &["list", "queues"], &queue);
    assert!(
        table.contains(" name ") && table.contains(" messages "),
        "expected a table with name and messages columns, got:\n{table}"
    );
    let raw = admin_ok(
        &broker,
        &["-f", "raw_json", "list", "queues", "name", "durable"],
        &queue,
    );
    let listed: Value =
        serde_json::from_str(&raw).unwrap_or_else(|e| panic!("expected JSON, got {e}: {raw}"));
    assert!(
        listed.as_array().is_some_and(|qs| qs
            .iter()
            .any(|q| q["name"] == queue.as_str() && q["durable"] == true)),
        "expected {queue} listed as durable, got {listed}"
    );
    let routing_key = format!("routing_key={queue}");
    admin_ok(
        &broker,
        &["publish", &routing_key, "payload=hello-admin"],
        "Message published",
    );
    let got = admin_ok(
        &broker,
        &[
            "get",
            &format!("queue={queue}"),
            "ackmode=ack_requeue_false",
        ],
        "hello-admin",
    );
    assert!(
        got.contains("payload"),
        "expected a message table, got:\n{got}"
    );
    export_holds_queue(&broker, &queue);
    admin_ok(
        &broker,
        &["delete", "queue", &format!("name={queue}")],
        "queue deleted",
    );
    let refused = admin(&broker, "wrong", &["list", "queues"]);
    assert!(
        !refused.status.success() && refused.stderr.contains("Access refused"),
        "expected rabbitmqadmin with a wrong password to fail with Access refused, got {}:\n{}{}",
        refused.status,
        refused.stdout,
        refused.stderr
    );
}

/// `rabbitmqadmin export FILE` writes definitions that hold `queue`.
fn export_holds_queue(broker: &MgmtBroker, queue: &str) {
    let dir = fresh_dir("mgmt-export");
    let file = dir.join("export.json");
    let file_text = file.to_str().expect("a UTF-8 path");
    admin_ok(broker, &["export", file_text], "Exported definitions");
    let text =
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("expected {file:?}, got {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    let definitions: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("expected JSON, got {e}"));
    for key in [
        "rabbit_version",
        "users",
        "vhosts",
        "permissions",
        "policies",
        "queues",
        "exchanges",
        "bindings",
    ] {
        assert!(
            definitions.get(key).is_some(),
            "expected {key} in the export, got {text}"
        );
    }
    assert!(
        definitions["queues"]
            .as_array()
            .is_some_and(|qs| qs.iter().any(|q| q["name"] == queue && q["vhost"] == "/")),
        "expected {queue} among the exported queues, got {}",
        definitions["queues"]
    );
}

#[test]
fn pyrabbit2_lists_and_creates() {
    let _guard = IMPORT.lock().unwrap_or_else(|e| e.into_inner());
    let Some(broker) = MgmtBroker::start() else {
        return;
    };
    let queue = format!("mgmt-pyrabbit2-{}", unique_suffix());
    let mut command = Command::new(mgmt_python());
    command
        .arg("-B")
        .arg(script("pyrabbit2_client.py"))
        .arg(format!("127.0.0.1:{}", broker.mgmt_port))
        .arg(&queue);
    let output = run(command, "pyrabbit2_client.py", CLIENT_TIMEOUT);
    output.assert_success("tests/mgmt/pyrabbit2_client.py");
    let seen: Value = serde_json::from_str(output.stdout.trim())
        .unwrap_or_else(|e| panic!("expected one JSON object, got {e}: {}", output.stdout));
    let expected = serde_json::json!({
        "alive": true,
        "overview_keys": ["management_version", "node", "object_totals", "queue_totals", "rabbitmq_version"],
        "published": true,
        "depth": 1,
        "queue": {"name": queue, "vhost": "/", "durable": true, "arguments": {"x-max-length": 10}},
        "listed": true,
        "listed_in_vhost": true,
        "by_pattern": [queue],
        "payloads": ["hello from pyrabbit2"],
        "gone": true,
    });
    for (key, want) in expected.as_object().expect("an object") {
        assert_eq!(
            &seen[key], want,
            "expected pyrabbit2 to see {key} = {want}, got {seen}"
        );
    }
    let vhosts = seen["vhosts"].as_array().expect("a list of vhosts");
    assert!(
        vhosts.iter().any(|v| v == "/"),
        "expected / among the vhosts, got {seen}"
    );
}

#[test]
fn rabbitmq_definitions_import() {
    let _guard = IMPORT.lock().unwrap_or_else(|e| e.into_inner());
    let Some(broker) = MgmtBroker::start() else {
        return;
    };
    let path = data_file("rabbitmq-definitions.json");
    let definitions =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("expected {path:?}, got {e}"));
    let response = broker.api("POST", "/api/definitions", Some(&definitions));
    let imported = response.status == 204;
    let checks = imported.then(|| imported_objects_show(&broker));
    remove_imported(&broker);
    assert!(
        imported,
        "expected 204 from POST /api/definitions, got {}: {}",
        response.status, response.body
    );
    let failures = checks.unwrap_or_default();
    assert!(
        failures.is_empty(),
        "expected the imported definitions to show, got:\n{}",
        failures.join("\n")
    );
}

/// A check of an imported object: what it is, where to GET it, what its JSON must satisfy.
type ImportCheck = (&'static str, &'static str, fn(&Value) -> bool);

/// What the import must have made.
const IMPORT_CHECKS: &[ImportCheck] = &[
    ("queues in /", "/api/queues/%2F", |v| {
        has_names(v, &["defs-orders", "defs-capped", "defs-dead", "defs-work"])
    }),
    ("queue arguments", "/api/queues/%2F/defs-work", |v| {
        v["arguments"]["x-dead-letter-routing-key"] == "defs-dead"
            && v["arguments"]["x-message-ttl"] == 30000
    }),
    ("all queues", "/api/queues", |v| {
        has_names(v, &["defs-vhost-queue"])
    }),
    ("exchanges", "/api/exchanges/%2F", |v| {
        has_names(v, &["defs-topic", "defs-fanout", "defs-headers"])
    }),
    ("exchange type", "/api/exchanges/%2F/defs-headers", |v| {
        v["type"] == "headers"
    }),
    (
        "queue binding",
        "/api/bindings/%2F/e/defs-topic/q/defs-orders",
        |v| any(v, |b| b["routing_key"] == "orders.#"),
    ),
    (
        "exchange binding",
        "/api/bindings/%2F/e/defs-topic/e/defs-fanout",
        |v| any(v, |b| b["routing_key"] == "audit.*"),
    ),
    (
        "headers binding",
        "/api/bindings/%2F/e/defs-headers/q/defs-work",
        |v| any(v, |b| b["arguments"]["x-match"] == "all"),
    ),
    ("vhost", "/api/vhosts/defs-vhost", |v| {
        v["name"] == "defs-vhost"
    }),
    ("user", "/api/users/defs-user", |v| {
        v["tags"] == serde_json::json!(["management"])
    }),
    (
        "permissions",
        "/api/permissions/defs-vhost/defs-user",
        |v| v["configure"] == ".*",
    ),
    ("permissions in /", "/api/permissions/%2F/defs-user", |v| {
        v["configure"] == "^defs-"
    }),
    (
        "topic permissions",
        "/api/topic-permissions/defs-vhost/defs-user",
        |v| {
            any(v, |t| {
                t["exchange"] == "amq.topic" && t["write"] == "^defs\\."
            })
        },
    ),
    ("policy", "/api/policies/%2F/defs-policy", |v| {
        v["definition"]["max-length"] == 100 && v["apply-to"] == "queues" && v["priority"] == 2
    }),
    (
        "vhost policy",
        "/api/policies/defs-vhost/defs-vhost-policy",
        |v| v["definition"]["message-ttl"] == 60000,
    ),
    ("vhost limits", "/api/vhost-limits/defs-vhost", |v| {
        v[0]["value"]["max-queues"] == 500
    }),
];

/// True if `list` (a JSON list of objects) has an object named each of `names`.
fn has_names(list: &Value, names: &[&str]) -> bool {
    names.iter().all(|name| any(list, |o| o["name"] == *name))
}

/// True if some element of `list` (a JSON list) satisfies `check`.
fn any(list: &Value, check: impl Fn(&Value) -> bool) -> bool {
    list.as_array().is_some_and(|l| l.iter().any(check))
}

/// What the import must have made ([`IMPORT_CHECKS`], then logins); one line per failure.
fn imported_objects_show(broker: &MgmtBroker) -> Vec<String> {
    let mut failures = Vec::new();
    for (what, path, check) in IMPORT_CHECKS {
        let response = broker.api("GET", path, None);
        let body: Value = serde_json::from_str(&response.body).unwrap_or(Value::Null);
        if response.status != 200 || !check(&body) {
            failures.push(format!(
                "{what}: GET {path} answered {} {}",
                response.status, response.body
            ));
        }
    }
    failures.extend(imported_user_logs_in(broker));
    failures
}

/// The imported user's password hash works: over HTTP (whoami) and over AMQP (its vhost).
fn imported_user_logs_in(broker: &MgmtBroker) -> Vec<String> {
    let mut failures = Vec::new();
    let response = http(
        broker.mgmt_port,
        "GET",
        "/api/whoami",
        None,
        Some(("defs-user", "defs-password")),
    );
    if response.status != 200 || !response.body.contains("defs-user") {
        failures.push(format!(
            "defs-user whoami answered {} {}",
            response.status, response.body
        ));
    }
    let port = broker.amqp_port();
    let (tx, rx) = std::sync::mpsc::channel();
    run_async(Duration::from_secs(30), async move {
        let result = connect_to(port, "defs-user", "defs-password", "defs-vhost").await;
        let _ = tx.send(result.as_ref().err().map(ToString::to_string));
        if let Ok(connection) = result {
            close(connection, "defs-user").await;
        }
    });
    if let Ok(Some(error)) = rx.recv() {
        failures.push(format!("defs-user over AMQP to defs-vhost: {error}"));
    }
    failures
}

/// Deletes what the import made (ignoring answers), waiting until the queues are gone.
fn remove_imported(broker: &MgmtBroker) {
    for path in [
        "/api/vhosts/defs-vhost",
        "/api/users/defs-user",
        "/api/policies/%2F/defs-policy",
        "/api/queues/%2F/defs-orders",
        "/api/queues/%2F/defs-capped",
        "/api/queues/%2F/defs-dead",
        "/api/queues/%2F/defs-work",
        "/api/exchanges/%2F/defs-topic",
        "/api/exchanges/%2F/defs-fanout",
        "/api/exchanges/%2F/defs-headers",
    ] {
        broker.api("DELETE", path, None);
    }
    let deadline = Instant::now() + STATS_TIMEOUT;
    while broker
        .api("GET", "/api/queues/%2F/defs-orders", None)
        .status
        == 200
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
}
