//! `warren ctl --api URL`: every verb through the management API (`POST /api/warren/ctl`)
//! instead of the control socket, answered exactly as the socket answers it; only
//! administrators may; a definitions file on the operator's host is imported into the
//! broker; https and trace are refused in so many words. Warren only (the endpoint is
//! Warren's own): each test runs a broker of its own with a management port.

mod support;

use std::path::Path;
use std::process::Output;

use support::broker::{free_port, warren_command};
use support::{Broker, TempDir};

/// A broker with the management API on a port of its own, and the API's URL.
fn start() -> Option<(Broker, String)> {
    let port = free_port();
    let broker = Broker::start(&["--management-port", &port.to_string()]);
    if broker.data_dir().is_none() {
        eprintln!("skipped: an external broker has no Warren management endpoint");
        return None;
    }
    Some((broker, format!("http://127.0.0.1:{port}")))
}

/// `warren ctl ARGS` over the control socket (WARREN_API removed, so that it is).
fn socket(broker: &Broker, args: &[&str]) -> Output {
    let dir = broker.data_dir().expect("a broker of our own");
    let mut command = warren_command(&["ctl", "--data-dir"]);
    command.arg(dir).args(args).env_remove("WARREN_API");
    command.output().expect("warren ctl runs")
}

/// `warren ctl --api URL ARGS` (as guest unless ARGS say otherwise).
fn api(url: &str, args: &[&str]) -> Output {
    let mut command = warren_command(&["ctl", "--api", url]);
    // Not through the socket even by mistake: no data directory to find one in.
    command.args(["--data-dir", "/nonexistent"]).args(args);
    command.output().expect("warren ctl runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The command's standard output; it must have succeeded.
fn ok(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "expected {what} to succeed, got {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

const DEFINITIONS: &str = r#"{
  "vhosts": [{"name": "remote-v"}],
  "queues": [
    {"name": "remote-q1", "vhost": "/", "durable": true, "auto_delete": false,
     "arguments": {"x-max-length": 10}},
    {"name": "remote-q2", "vhost": "remote-v", "durable": true, "auto_delete": false,
     "arguments": {}}
  ],
  "exchanges": [{"name": "remote-x", "vhost": "/", "type": "topic", "durable": true,
     "auto_delete": false, "internal": false, "arguments": {}}],
  "bindings": [{"source": "remote-x", "vhost": "/", "destination": "remote-q1",
     "destination_type": "queue", "routing_key": "a.#", "arguments": {}}],
  "policies": [{"vhost": "/", "name": "remote-p", "pattern": "^remote-", "apply-to": "queues",
     "priority": 1, "definition": {"max-length": 100}}]
}"#;

fn write_definitions(dir: &TempDir) -> String {
    let path = dir.path().join("defs.json");
    std::fs::write(&path, DEFINITIONS).expect("write the definitions file");
    path.to_str().expect("a UTF-8 path").to_string()
}

#[test]
fn import_definitions_sends_the_file_and_listings_match_the_socket() {
    let Some((broker, url)) = start() else {
        return;
    };
    let dir = TempDir::new("ctl-remote");
    ok(
        api(&url, &["import_definitions", &write_definitions(&dir)]),
        "import_definitions through the API",
    );
    let listings: &[&[&str]] = &[
        &["list_queues", "name", "messages", "durable", "arguments"],
        &["list_queues", "-p", "remote-v", "name"],
        &["list_exchanges", "name", "type", "durable"],
        &["list_bindings"],
        &["list_policies"],
        &["list_users"],
        &["list_vhosts", "name", "tracing"],
        &["list_permissions"],
        &["list_connections"],
        &["export_definitions", "-"],
    ];
    for args in listings {
        let through_socket = ok(socket(&broker, args), "the socket's listing");
        let through_api = ok(api(&url, args), "the API's listing");
        assert_eq!(
            through_api, through_socket,
            "expected {args:?} through the API to print what the socket prints"
        );
    }
    let queues = ok(socket(&broker, &["list_queues", "name"]), "list_queues");
    assert!(
        queues.lines().any(|l| l == "remote-q1"),
        "expected the imported queue remote-q1, got:\n{queues}"
    );
    let bindings = ok(socket(&broker, &["list_bindings"]), "list_bindings");
    assert!(
        bindings.contains("remote-x") && bindings.contains("a.#"),
        "expected the imported binding, got:\n{bindings}"
    );
}

#[test]
fn changes_and_refusals_come_back_as_the_socket_gives_them() {
    let Some((broker, url)) = start() else {
        return;
    };
    ok(api(&url, &["add_user", "remote-bob", "secret"]), "add_user");
    ok(
        api(&url, &["set_permissions", "remote-bob", ".*", ".*", ".*"]),
        "set_permissions",
    );
    let users = ok(socket(&broker, &["list_users"]), "list_users");
    assert!(
        users.contains("remote-bob"),
        "expected the user added through the API, got:\n{users}"
    );
    // The same refusal, word for word, and the same exit code.
    let args = ["delete_user", "remote-nobody"];
    let (through_socket, through_api) = (socket(&broker, &args), api(&url, &args));
    assert!(!through_api.status.success(), "expected a refusal");
    assert_eq!(through_api.status.code(), through_socket.status.code());
    assert_eq!(stderr(&through_api), stderr(&through_socket));
    // export_definitions to a file on this host.
    let dir = TempDir::new("ctl-remote");
    let path = dir.path().join("export.json");
    let path = path.to_str().expect("a UTF-8 path");
    ok(
        api(&url, &["export_definitions", path]),
        "export_definitions",
    );
    let exported = std::fs::read_to_string(path).expect("the exported file");
    let defs: serde_json::Value = serde_json::from_str(&exported).expect("JSON definitions");
    assert!(
        defs["users"]
            .as_array()
            .is_some_and(|u| u.iter().any(|u| u["name"] == "remote-bob")),
        "expected remote-bob among the exported users, got {exported}"
    );
}

#[test]
fn only_administrators_may_and_bad_urls_are_refused() {
    let Some((broker, url)) = start() else {
        return;
    };
    for args in [
        &["add_user", "remote-mon", "pw"][..],
        &["set_user_tags", "remote-mon", "monitoring"],
    ] {
        ok(socket(&broker, args), "setting up a monitoring user");
    }
    let refused = api(
        &url,
        &["--username", "remote-mon", "--password", "pw", "list_users"],
    );
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let text = stderr(&refused);
    assert!(
        text.contains("refused user 'remote-mon'") && text.contains("Not administrator user"),
        "expected the API's 401 explained, got: {text}"
    );
    let wrong = api(&url, &["--password", "wrong", "list_users"]);
    assert!(
        stderr(&wrong).contains("Login failed"),
        "expected a failed login, got: {}",
        stderr(&wrong)
    );
    // The credentials may come from the environment.
    let mut command = warren_command(&["ctl", "list_users"]);
    command
        .env("WARREN_API", &url)
        .env("WARREN_API_USER", "remote-mon")
        .env("WARREN_API_PASSWORD", "pw");
    let from_env = command.output().expect("warren ctl runs");
    assert!(
        stderr(&from_env).contains("refused user 'remote-mon'"),
        "expected WARREN_API_USER to be used, got: {}",
        stderr(&from_env)
    );
    let https = api(&url.replace("http://", "https://"), &["list_users"]);
    assert_eq!(https.status.code(), Some(64));
    assert!(stderr(&https).contains("https is not supported"));
    let trace = api(&url, &["trace"]);
    assert_eq!(trace.status.code(), Some(64));
    assert!(stderr(&trace).contains("control socket only"));
    let dead = api("http://127.0.0.1:1", &["list_users"]);
    assert!(stderr(&dead).contains("cannot reach the management API"));
}

#[test]
fn a_missing_definitions_file_is_refused_before_anything_is_sent() {
    let Some((_broker, url)) = start() else {
        return;
    };
    let missing = Path::new("/nonexistent/defs.json")
        .to_str()
        .unwrap_or_default();
    let refused = api(&url, &["import_definitions", missing]);
    assert_eq!(refused.status.code(), Some(64));
    assert!(
        stderr(&refused).contains("cannot read /nonexistent/defs.json"),
        "got: {}",
        stderr(&refused)
    );
}
