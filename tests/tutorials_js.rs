//! RabbitMQ's JavaScript tutorials 1 to 6 with amqplib 0.10 on Node. The
//! scripts in tests/js/ are the tutorials', adjusted only to take the port
//! and names from the command line and to exit after N messages; amqplib
//! is installed under target/test-node by the first test that needs it.
//! Each test asserts exactly what every receiver got.

mod common;
#[path = "support/node.rs"]
mod node;

use common::Broker;
use node::{run_node, spawn_node, NodeProcess, ScriptOutput};
use std::collections::HashMap;
use std::time::Duration;

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);
const READY_MESSAGES: &str = "[*] Waiting for messages";
const READY_LOGS: &str = "[*] Waiting for logs";
const READY_RPC: &str = "[x] Awaiting RPC requests";

fn fib(n: u64) -> u64 {
    match n {
        0 => 0,
        1 => 1,
        _ => fib(n - 1) + fib(n - 2),
    }
}

fn run(script: &str, args: &[&str]) -> ScriptOutput {
    let out = run_node(script, args, SCRIPT_TIMEOUT);
    out.assert_success(script);
    out
}

/// The lines a finished receiver printed after `[x] `.
fn received(process: NodeProcess, what: &str) -> Vec<String> {
    let out = process.finish(SCRIPT_TIMEOUT);
    out.assert_success(what);
    out.lines_with("[x] ")
        .iter()
        .map(|l| l.trim().trim_start_matches("[x] ").to_string())
        .collect()
}

fn owned(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|s| s.to_string()).collect()
}

/// Starts a subscriber and waits until its queue is bound and consuming;
/// returns it with the server-named queue it printed.
fn start_subscriber(script: &str, args: &[&str]) -> (NodeProcess, String) {
    let mut process = spawn_node(script, args);
    let queue_line = process.wait_for_line("[*] Queue ", SCRIPT_TIMEOUT);
    process.wait_for_line(READY_LOGS, SCRIPT_TIMEOUT);
    let queue = queue_line
        .trim()
        .trim_start_matches("[*] Queue ")
        .to_string();
    assert!(
        queue.starts_with("amq.gen-"),
        "expected a server-named queue (amq.gen-...) for {script}, got {queue:?}"
    );
    (process, queue)
}

#[test]
fn hello_world_receiver_prints_the_message_send_js_published() {
    let broker = Broker::start(&[]);
    let port = broker.port().to_string();
    let queue = broker.queue_name("hello");

    let mut receiver = spawn_node("receive.js", &[&port, &queue, "2"]);
    receiver.wait_for_line(READY_MESSAGES, SCRIPT_TIMEOUT);
    let sent = run("send.js", &[&port, &queue]);
    assert_eq!(
        sent.lines_with("[x] Sent"),
        vec![" [x] Sent 'Hello World!'".to_string()],
        "expected send.js to report one sent message"
    );
    run("send.js", &[&port, &queue, "second"]);

    assert_eq!(
        received(receiver, "receive.js"),
        owned(&["Received Hello World!", "Received second"]),
        "expected receive.js to print exactly the messages sent, in order"
    );
}

#[test]
fn work_queue_prefetch_one_sends_no_task_to_a_busy_worker() {
    let broker = Broker::start(&[]);
    let port = broker.port().to_string();
    let queue = broker.queue_name("task_queue");
    let hold_dir = common::fresh_dir("hold");
    let hold_file = hold_dir.join("release");
    let hold_path = hold_file.to_str().expect("utf-8 path").to_string();

    // The slow worker takes the first task and holds it, unacked.
    let mut slow = spawn_node("worker.js", &[&port, &queue, "1", &hold_path]);
    slow.wait_for_line(READY_MESSAGES, SCRIPT_TIMEOUT);
    run("new_task.js", &[&port, &queue, "slow task"]);
    slow.wait_for_line("[x] Received slow task", SCRIPT_TIMEOUT);

    let mut fast = spawn_node("worker.js", &[&port, &queue, "4"]);
    fast.wait_for_line(READY_MESSAGES, SCRIPT_TIMEOUT);
    let tasks = ["one.", "two..", "three", "four."];
    let mut args = vec![port.as_str(), queue.as_str()];
    args.extend(tasks);
    run("new_task.js", &args);

    // Had the broker pushed a task to the busy worker, the fast one would
    // never see four and would time out.
    let fast = fast.finish(SCRIPT_TIMEOUT);
    fast.assert_success("fast worker.js");
    let expected: Vec<String> = tasks
        .iter()
        .map(|t| format!(" [x] Received {t} deliveryMode=2 redelivered=false"))
        .collect();
    assert_eq!(
        fast.lines_with("[x] Received"),
        expected,
        "expected the fast worker to get every task in order, persistent, while the slow one was busy"
    );
    assert_eq!(
        fast.lines_with("[x] Done").len(),
        4,
        "expected 4 tasks done"
    );

    std::fs::write(&hold_file, b"go").expect("write hold file");
    let slow = slow.finish(SCRIPT_TIMEOUT);
    slow.assert_success("slow worker.js");
    assert_eq!(
        slow.lines_with("[x] Received"),
        vec![" [x] Received slow task deliveryMode=2 redelivered=false".to_string()],
        "expected the slow worker to get only its one task"
    );

    let info = run("queue_info.js", &[&port, &queue]);
    assert_eq!(
        info.stdout.trim(),
        "messages=0 consumers=0",
        "expected all 5 tasks acked and gone"
    );
    let _ = std::fs::remove_dir_all(hold_dir);
}

#[test]
fn publish_subscribe_every_exclusive_subscriber_gets_every_log() {
    let broker = Broker::start(&[]);
    let port = broker.port().to_string();
    let exchange = broker.queue_name("logs");
    let logs = ["info: first", "warning: second", "error: third"];

    run("emit_log.js", &[&port, &exchange, "nobody listens"]);
    let (first, first_queue) = start_subscriber("receive_logs.js", &[&port, &exchange, "3"]);
    let (second, second_queue) = start_subscriber("receive_logs.js", &[&port, &exchange, "3"]);
    assert_ne!(
        first_queue, second_queue,
        "expected each subscriber to get its own server-named queue"
    );
    let mut args = vec![port.as_str(), exchange.as_str()];
    args.extend(logs);
    run("emit_log.js", &args);

    for (process, what) in [
        (first, "first receive_logs.js"),
        (second, "second receive_logs.js"),
    ] {
        assert_eq!(
            received(process, what),
            owned(&logs),
            "expected {what} to get every log emitted after it bound, in order"
        );
    }
}

#[test]
fn routing_each_subscriber_gets_only_its_severities() {
    let broker = Broker::start(&[]);
    let port = broker.port().to_string();
    let exchange = broker.queue_name("direct_logs");

    let (errors, _) = start_subscriber("receive_logs_direct.js", &[&port, &exchange, "2", "error"]);
    let (all, _) = start_subscriber(
        "receive_logs_direct.js",
        &[&port, &exchange, "4", "info", "warning", "error"],
    );
    run(
        "emit_log_direct.js",
        &[&port, &exchange, "info", "info one"],
    );
    run(
        "emit_log_direct.js",
        &[&port, &exchange, "debug", "debug one"],
    );
    run(
        "emit_log_direct.js",
        &[&port, &exchange, "error", "disk full"],
    );
    run(
        "emit_log_direct.js",
        &[&port, &exchange, "warning", "disk almost full"],
    );
    run(
        "emit_log_direct.js",
        &[&port, &exchange, "error", "disk still full"],
    );

    assert_eq!(
        received(errors, "receive_logs_direct.js error"),
        owned(&["error:disk full", "error:disk still full"]),
        "expected the error subscriber to get only errors"
    );
    assert_eq!(
        received(all, "receive_logs_direct.js info warning error"),
        owned(&[
            "info:info one",
            "error:disk full",
            "warning:disk almost full",
            "error:disk still full"
        ]),
        "expected the info+warning+error subscriber to get everything but debug, in order"
    );
}

#[test]
fn topics_star_matches_one_word_and_hash_matches_zero_or_more() {
    let broker = Broker::start(&[]);
    let port = broker.port().to_string();
    let exchange = broker.queue_name("topic_logs");

    let (q1, _) = start_subscriber(
        "receive_logs_topic.js",
        &[&port, &exchange, "3", "*.orange.*"],
    );
    let (q2, _) = start_subscriber(
        "receive_logs_topic.js",
        &[&port, &exchange, "5", "*.*.rabbit", "lazy.#"],
    );

    // The last key matches both subscribers, so a wrongly routed earlier
    // message would show up before it.
    let messages = [
        ("quick.orange.rabbit", "m1"),
        ("quick.orange.fox", "m2"),
        ("lazy.pink.rabbit", "m3"),
        ("quick.brown.fox", "m4"),
        ("orange", "m5"),
        ("quick.orange.male.rabbit", "m6"),
        ("lazy.orange.male.rabbit", "m7"),
        ("lazy", "m8"),
        ("lazy.orange.rabbit", "last"),
    ];
    for (key, body) in messages {
        run("emit_log_topic.js", &[&port, &exchange, key, body]);
    }

    assert_eq!(
        received(q1, "receive_logs_topic.js *.orange.*"),
        owned(&[
            "quick.orange.rabbit:m1",
            "quick.orange.fox:m2",
            "lazy.orange.rabbit:last"
        ]),
        "expected *.orange.* to match exactly three-word keys with orange in the middle"
    );
    assert_eq!(
        received(q2, "receive_logs_topic.js *.*.rabbit lazy.#"),
        owned(&[
            "quick.orange.rabbit:m1",
            "lazy.pink.rabbit:m3",
            "lazy.orange.male.rabbit:m7",
            "lazy:m8",
            "lazy.orange.rabbit:last"
        ]),
        "expected *.*.rabbit and lazy.# (lazy.# matching plain `lazy`), each message once"
    );
}

/// One client's view of its calls: what it requested (n, correlation id),
/// what it got (n, correlation id, answer), and its reply queue.
struct RpcClientRun {
    reply_queue: String,
    requested: Vec<(u64, String)>,
    answers: Vec<(u64, String, u64)>,
}

fn parse_rpc_client(out: &ScriptOutput) -> RpcClientRun {
    let reply_queue = out
        .lines_with("[*] Reply queue ")
        .first()
        .map(|l| l.trim().trim_start_matches("[*] Reply queue ").to_string())
        .unwrap_or_else(|| {
            panic!(
                "expected the client to print its reply queue, got:\n{}",
                out.stdout
            )
        });
    let requested = out
        .lines_with("[x] Requesting fib(")
        .iter()
        .map(|l| {
            let rest = l.trim().trim_start_matches("[x] Requesting fib(");
            let (n, corr) = rest.split_once(") correlation_id=").expect("request line");
            (n.parse().expect("n"), corr.to_string())
        })
        .collect();
    let answers = out
        .lines_with("[.] Got fib(")
        .iter()
        .map(|l| {
            let rest = l.trim().trim_start_matches("[.] Got fib(");
            let (n, rest) = rest.split_once(") = ").expect("answer line");
            let (r, corr) = rest.split_once(" correlation_id=").expect("answer line");
            let r = r
                .parse()
                .unwrap_or_else(|e| panic!("expected a number as answer, got {r:?} ({e})"));
            (n.parse().expect("n"), corr.to_string(), r)
        })
        .collect();
    RpcClientRun {
        reply_queue,
        requested,
        answers,
    }
}

fn assert_rpc_answers(run: &RpcClientRun, numbers: &[u64], what: &str) {
    assert_eq!(
        run.requested.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        numbers,
        "expected {what} to request every number"
    );
    let expected: Vec<(u64, String, u64)> = run
        .requested
        .iter()
        .map(|(n, corr)| (*n, corr.clone(), fib(*n)))
        .collect();
    assert_eq!(
        run.answers, expected,
        "expected {what} to get fib(n) for each request, matched by its correlation_id"
    );
}

/// The server's replies as (n, reply_to).
fn parse_rpc_server(out: &ScriptOutput) -> Vec<(u64, String)> {
    out.lines_with("[.] fib(")
        .iter()
        .map(|l| {
            let rest = l.trim().trim_start_matches("[.] fib(");
            let (n, reply_to) = rest.split_once(") reply_to=").expect("server line");
            (n.parse().expect("n"), reply_to.to_string())
        })
        .collect()
}

fn finish_client(client: NodeProcess, what: &str) -> RpcClientRun {
    let out = client.finish(SCRIPT_TIMEOUT);
    out.assert_success(what);
    assert!(
        out.lines_with("[!]").is_empty(),
        "expected {what} to see only its own correlation ids, got:\n{}",
        out.stdout
    );
    parse_rpc_client(&out)
}

#[test]
fn rpc_concurrent_clients_each_get_their_answers_on_their_exclusive_queue() {
    let broker = Broker::start(&[]);
    let port = broker.port().to_string();
    let queue = broker.queue_name("rpc_queue");
    let calls: [&[u64]; 3] = [&[10, 1, 2, 3], &[0, 5, 8], &[13, 4, 4, 7, 6]];
    let total: usize = calls.iter().map(|c| c.len()).sum();

    let mut server = spawn_node("rpc_server.js", &[&port, &queue, &total.to_string()]);
    server.wait_for_line(READY_RPC, SCRIPT_TIMEOUT);

    let clients: Vec<NodeProcess> = calls
        .iter()
        .map(|numbers| {
            let numbers: Vec<String> = numbers.iter().map(u64::to_string).collect();
            let mut args: Vec<&str> = vec![&port, &queue];
            args.extend(numbers.iter().map(String::as_str));
            spawn_node("rpc_client.js", &args)
        })
        .collect();
    let runs: Vec<RpcClientRun> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| finish_client(client, &format!("rpc_client.js #{i}")))
        .collect();
    for (i, (run, numbers)) in runs.iter().zip(calls).enumerate() {
        assert!(
            run.reply_queue.starts_with("amq.gen-"),
            "expected client #{i} to reply on a server-named queue, got {:?}",
            run.reply_queue
        );
        assert_rpc_answers(run, numbers, &format!("client #{i}"));
    }

    let server = server.finish(SCRIPT_TIMEOUT);
    server.assert_success("rpc_server.js");
    let mut served: HashMap<String, Vec<u64>> = HashMap::new();
    for (n, reply_to) in parse_rpc_server(&server) {
        served.entry(reply_to).or_default().push(n);
    }
    let expected: HashMap<String, Vec<u64>> = runs
        .iter()
        .zip(calls)
        .map(|(run, numbers)| (run.reply_queue.clone(), numbers.to_vec()))
        .collect();
    assert_eq!(
        served, expected,
        "expected the server to answer each client's requests, in order, to its reply queue"
    );
}

#[test]
fn rpc_direct_reply_to_answers_reach_the_client_without_a_reply_queue() {
    let broker = Broker::start(&[]);
    let port = broker.port().to_string();
    let queue = broker.queue_name("rpc_queue");
    let direct: &[u64] = &[3, 10, 1];
    let classic: &[u64] = &[9, 2];

    let mut server = spawn_node("rpc_server.js", &[&port, &queue, "5"]);
    server.wait_for_line(READY_RPC, SCRIPT_TIMEOUT);
    let direct_client = spawn_node(
        "rpc_client.js",
        &[&port, &queue, "--direct-reply-to", "3", "10", "1"],
    );
    let classic_client = spawn_node("rpc_client.js", &[&port, &queue, "9", "2"]);

    let direct_run = finish_client(direct_client, "rpc_client.js --direct-reply-to");
    assert_eq!(
        direct_run.reply_queue, "amq.rabbitmq.reply-to",
        "expected the client to consume from the pseudo-queue"
    );
    assert_rpc_answers(&direct_run, direct, "the direct reply-to client");
    let classic_run = finish_client(classic_client, "rpc_client.js");
    assert_rpc_answers(&classic_run, classic, "the exclusive-queue client");

    let server = server.finish(SCRIPT_TIMEOUT);
    server.assert_success("rpc_server.js");
    let direct_served: Vec<(u64, String)> = parse_rpc_server(&server)
        .into_iter()
        .filter(|(_, reply_to)| *reply_to != classic_run.reply_queue)
        .collect();
    assert_eq!(
        direct_served.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        direct,
        "expected the server to serve the direct reply-to requests in order"
    );
    for (n, reply_to) in &direct_served {
        assert!(
            reply_to.starts_with("amq.rabbitmq.reply-to.") && reply_to.len() > 22,
            "expected the server to see reply_to rewritten to amq.rabbitmq.reply-to.<token> for fib({n}), got {reply_to:?}"
        );
    }
}
