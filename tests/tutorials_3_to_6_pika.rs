//! RabbitMQ's Python tutorials 3 to 6 (publish/subscribe, routing, topics,
//! RPC) with pika 1.3.2. The scripts in tests/py/ are the tutorials',
//! adjusted only to take the port and names from the command line and to
//! exit after N messages; each test asserts exactly what every receiver got.

mod common;

use common::{run_python, spawn_python, Broker, PyOutput, PyProcess};
use std::collections::HashMap;
use std::time::Duration;

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);
const READY_LOGS: &str = "[*] Waiting for logs";
const READY_RPC: &str = "[x] Awaiting RPC requests";

fn fib(n: u64) -> u64 {
    match n {
        0 => 0,
        1 => 1,
        _ => fib(n - 1) + fib(n - 2),
    }
}

/// Starts a subscriber script and waits until its queue is bound and
/// consuming; returns it with the server-named queue it printed.
fn start_subscriber(script: &str, args: &[&str]) -> (PyProcess, String) {
    let mut process = spawn_python(script, args);
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

fn received(process: PyProcess, what: &str) -> Vec<String> {
    let out = process.finish(SCRIPT_TIMEOUT);
    out.assert_success(what);
    out.lines_with("[x] ")
        .iter()
        .map(|l| l.trim().trim_start_matches("[x] ").to_string())
        .collect()
}

fn emit(script: &str, args: &[&str]) {
    run_python(script, args, SCRIPT_TIMEOUT).assert_success(script);
}

fn owned(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|s| s.to_string()).collect()
}

#[test]
fn publish_subscribe_every_exclusive_subscriber_gets_every_log() {
    let broker = Broker::start(&[]);
    let port = broker.port().to_string();
    let exchange = broker.queue_name("logs");
    let logs = ["info: first", "warning: second", "error: third"];

    let (first, first_queue) = start_subscriber("receive_logs.py", &[&port, &exchange, "3"]);
    let (second, second_queue) = start_subscriber("receive_logs.py", &[&port, &exchange, "3"]);
    assert_ne!(
        first_queue, second_queue,
        "expected each subscriber to get its own server-named queue"
    );

    let mut args = vec![port.as_str(), exchange.as_str()];
    args.extend(logs);
    emit("emit_log.py", &args);

    assert_eq!(
        received(first, "first receive_logs.py"),
        owned(&logs),
        "expected the first subscriber to get every log in order"
    );
    assert_eq!(
        received(second, "second receive_logs.py"),
        owned(&logs),
        "expected the second subscriber to get every log in order"
    );
}

#[test]
fn publish_subscribe_logs_emitted_with_no_subscriber_are_lost() {
    let broker = Broker::start(&[]);
    let port = broker.port().to_string();
    let exchange = broker.queue_name("logs");

    // Nothing is bound yet: the fanout exchange drops this one.
    emit("emit_log.py", &[&port, &exchange, "nobody listens"]);
    let (subscriber, _) = start_subscriber("receive_logs.py", &[&port, &exchange, "1"]);
    emit("emit_log.py", &[&port, &exchange, "someone listens"]);
    assert_eq!(
        received(subscriber, "receive_logs.py"),
        owned(&["someone listens"]),
        "expected only the log emitted after the subscriber bound its queue"
    );
}

#[test]
fn routing_each_subscriber_gets_only_its_severities() {
    let broker = Broker::start(&[]);
    let port = broker.port().to_string();
    let exchange = broker.queue_name("direct_logs");

    let (errors, _) = start_subscriber("receive_logs_direct.py", &[&port, &exchange, "2", "error"]);
    let (warnings, _) = start_subscriber(
        "receive_logs_direct.py",
        &[&port, &exchange, "3", "warning", "error"],
    );
    let (all, _) = start_subscriber(
        "receive_logs_direct.py",
        &[&port, &exchange, "5", "info", "warning", "error"],
    );

    emit(
        "emit_log_direct.py",
        &[&port, &exchange, "info", "info one", "info two"],
    );
    emit("emit_log_direct.py", &[&port, &exchange, "debug", "debug"]);
    emit(
        "emit_log_direct.py",
        &[&port, &exchange, "error", "disk full"],
    );
    emit(
        "emit_log_direct.py",
        &[&port, &exchange, "warning", "disk almost full"],
    );
    emit(
        "emit_log_direct.py",
        &[&port, &exchange, "error", "disk still full"],
    );

    assert_eq!(
        received(errors, "receive_logs_direct.py error"),
        owned(&["error:disk full", "error:disk still full"]),
        "expected the error subscriber to get only errors"
    );
    assert_eq!(
        received(warnings, "receive_logs_direct.py warning error"),
        owned(&[
            "error:disk full",
            "warning:disk almost full",
            "error:disk still full"
        ]),
        "expected the warning+error subscriber to get warnings and errors in order"
    );
    assert_eq!(
        received(all, "receive_logs_direct.py info warning error"),
        owned(&[
            "info:info one",
            "info:info two",
            "error:disk full",
            "warning:disk almost full",
            "error:disk still full"
        ]),
        "expected the info+warning+error subscriber to get everything but debug"
    );
}

#[test]
fn topics_star_matches_one_word_and_hash_matches_zero_or_more() {
    let broker = Broker::start(&[]);
    let port = broker.port().to_string();
    let exchange = broker.queue_name("topic_logs");

    let (q1, _) = start_subscriber(
        "receive_logs_topic.py",
        &[&port, &exchange, "4", "*.orange.*"],
    );
    let (q2, _) = start_subscriber(
        "receive_logs_topic.py",
        &[&port, &exchange, "7", "*.*.rabbit", "lazy.#"],
    );
    let (everything, _) = start_subscriber("receive_logs_topic.py", &[&port, &exchange, "12", "#"]);
    let (kern, _) = start_subscriber(
        "receive_logs_topic.py",
        &[&port, &exchange, "2", "kern.*", "kern.#"],
    );

    // (routing key, body); the last one matches every subscriber, so a
    // wrongly routed earlier message would show up before it.
    let messages = [
        ("quick.orange.rabbit", "m1"),
        ("lazy.orange.elephant", "m2"),
        ("quick.orange.fox", "m3"),
        ("lazy.brown.fox", "m4"),
        ("lazy.pink.rabbit", "m5"),
        ("quick.brown.fox", "m6"),
        ("orange", "m7"),
        ("quick.orange.male.rabbit", "m8"),
        ("lazy.orange.male.rabbit", "m9"),
        ("lazy", "m10"),
        ("kern.critical", "m11"),
    ];
    for (key, body) in messages {
        emit("emit_log_topic.py", &[&port, &exchange, key, body]);
    }
    let kern_last = "kern.orange.rabbit";
    emit("emit_log_topic.py", &[&port, &exchange, kern_last, "last"]);

    assert_eq!(
        received(q1, "receive_logs_topic.py *.orange.*"),
        owned(&[
            "quick.orange.rabbit:m1",
            "lazy.orange.elephant:m2",
            "quick.orange.fox:m3",
            "kern.orange.rabbit:last"
        ]),
        "expected *.orange.* to match exactly three-word keys with orange in the middle"
    );
    assert_eq!(
        received(q2, "receive_logs_topic.py *.*.rabbit lazy.#"),
        owned(&[
            "quick.orange.rabbit:m1",
            "lazy.orange.elephant:m2",
            "lazy.brown.fox:m4",
            "lazy.pink.rabbit:m5",
            "lazy.orange.male.rabbit:m9",
            "lazy:m10",
            "kern.orange.rabbit:last"
        ]),
        "expected *.*.rabbit and lazy.# (lazy.# matching plain `lazy`), lazy.pink.rabbit once"
    );
    let mut all: Vec<String> = messages.iter().map(|(k, b)| format!("{k}:{b}")).collect();
    all.push(format!("{kern_last}:last"));
    assert_eq!(
        received(everything, "receive_logs_topic.py #"),
        all,
        "expected # to match every routing key, in order"
    );
    assert_eq!(
        received(kern, "receive_logs_topic.py kern.* kern.#"),
        owned(&["kern.critical:m11", "kern.orange.rabbit:last"]),
        "expected kern.* and kern.# to match only keys starting with kern, each once"
    );
}

/// One client's view of its calls: (n, correlation_id, answer) in request
/// order, and the reply queue it used.
struct RpcClientRun {
    reply_queue: String,
    answers: Vec<(u64, String, u64)>,
    requested: Vec<(u64, String)>,
}

fn parse_rpc_client(out: &PyOutput) -> RpcClientRun {
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
            // " [x] Requesting fib(N) correlation_id=C"
            let rest = l.trim().trim_start_matches("[x] Requesting fib(");
            let (n, corr) = rest.split_once(") correlation_id=").expect("request line");
            (n.parse().expect("n"), corr.to_string())
        })
        .collect();
    let answers = out
        .lines_with("[.] Got fib(")
        .iter()
        .map(|l| {
            // " [.] Got fib(N) = R correlation_id=C"
            let rest = l.trim().trim_start_matches("[.] Got fib(");
            let (n, rest) = rest.split_once(") = ").expect("answer line");
            let (r, corr) = rest.split_once(" correlation_id=").expect("answer line");
            (
                n.parse().expect("n"),
                corr.to_string(),
                r.parse()
                    .unwrap_or_else(|e| panic!("expected a number as answer, got {r:?} ({e})")),
            )
        })
        .collect();
    RpcClientRun {
        reply_queue,
        answers,
        requested,
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

/// Server replies printed as (n, reply_to).
fn parse_rpc_server(out: &PyOutput) -> Vec<(u64, String)> {
    out.lines_with("[.] fib(")
        .iter()
        .map(|l| {
            let rest = l.trim().trim_start_matches("[.] fib(");
            let (n, reply_to) = rest.split_once(") reply_to=").expect("server line");
            (n.parse().expect("n"), reply_to.to_string())
        })
        .collect()
}

#[test]
fn rpc_concurrent_clients_each_get_their_answers_on_their_exclusive_queue() {
    let broker = Broker::start(&[]);
    let port = broker.port().to_string();
    let queue = broker.queue_name("rpc_queue");
    let calls: [&[u64]; 3] = [&[10, 1, 2, 3], &[0, 5, 8], &[13, 4, 4, 7, 6]];
    let total: usize = calls.iter().map(|c| c.len()).sum();

    let mut server = spawn_python("rpc_server.py", &[&port, &queue, &total.to_string()]);
    server.wait_for_line(READY_RPC, SCRIPT_TIMEOUT);

    let clients: Vec<PyProcess> = calls
        .iter()
        .map(|numbers| {
            let numbers: Vec<String> = numbers.iter().map(u64::to_string).collect();
            let mut args: Vec<&str> = vec![&port, &queue];
            args.extend(numbers.iter().map(String::as_str));
            spawn_python("rpc_client.py", &args)
        })
        .collect();
    let runs: Vec<RpcClientRun> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let out = client.finish(SCRIPT_TIMEOUT);
            out.assert_success(&format!("rpc_client.py #{i}"));
            assert!(
                out.lines_with("[!]").is_empty(),
                "expected client #{i} to see only its own correlation ids, got:\n{}",
                out.stdout
            );
            parse_rpc_client(&out)
        })
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
    server.assert_success("rpc_server.py");
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

    let mut server = spawn_python("rpc_server.py", &[&port, &queue, "5"]);
    server.wait_for_line(READY_RPC, SCRIPT_TIMEOUT);

    let direct_client = spawn_python(
        "rpc_client.py",
        &[&port, &queue, "--direct-reply-to", "3", "10", "1"],
    );
    let classic_client = spawn_python("rpc_client.py", &[&port, &queue, "9", "2"]);

    let direct_out = direct_client.finish(SCRIPT_TIMEOUT);
    direct_out.assert_success("rpc_client.py --direct-reply-to");
    let direct_run = parse_rpc_client(&direct_out);
    assert_eq!(
        direct_run.reply_queue, "amq.rabbitmq.reply-to",
        "expected the client to consume from the pseudo-queue"
    );
    assert_rpc_answers(&direct_run, direct, "the direct reply-to client");

    let classic_out = classic_client.finish(SCRIPT_TIMEOUT);
    classic_out.assert_success("rpc_client.py");
    assert_rpc_answers(
        &parse_rpc_client(&classic_out),
        classic,
        "the exclusive-queue client",
    );

    let server = server.finish(SCRIPT_TIMEOUT);
    server.assert_success("rpc_server.py");
    let direct_served: Vec<(u64, String)> = parse_rpc_server(&server)
        .into_iter()
        .filter(|(_, reply_to)| !reply_to.starts_with("amq.gen-"))
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
