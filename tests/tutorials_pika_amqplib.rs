//! RabbitMQ's tutorials 1 to 6 (hello world, work queues, publish/subscribe, routing, topics,
//! RPC) run with the tutorials' own scripts, in Python with pika 1.3.2 (`tests/py/`) and in
//! JavaScript with amqplib 0.10 on Node (`tests/js/`). The scripts are the tutorials',
//! adjusted only to take the port and names from the command line and to exit after N
//! messages; both sets take the same arguments and print the same lines.
//!
//! Each scenario is written once and run for each client (`with_pika::...`,
//! `with_amqplib::...`); it asserts exactly what every receiver got.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::process::Output;
use support::scripts::{ScriptClient, ScriptProcess};
use support::{Broker, TempDir};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);
const READY_MESSAGES: &str = "[*] Waiting for messages";
const READY_LOGS: &str = "[*] Waiting for logs";
const READY_RPC: &str = "[x] Awaiting RPC requests";

/// Runs each scenario (a `fn(ScriptClient)`) as one test per client.
macro_rules! per_client {
    ($($scenario:ident),* $(,)?) => {
        mod with_pika {
            $(#[test]
            fn $scenario() {
                super::$scenario(super::ScriptClient::Pika);
            })*
        }
        mod with_amqplib {
            $(#[test]
            fn $scenario() {
                super::$scenario(super::ScriptClient::Amqplib);
            })*
        }
    };
}

per_client!(
    hello_world_receiver_prints_each_message_send_published,
    hello_world_message_published_before_the_receiver_starts_waits_in_the_queue,
    work_queue_worker_does_every_persistent_task_once_in_order,
    work_queue_prefetch_one_sends_no_task_to_a_busy_worker,
    publish_subscribe_every_exclusive_subscriber_gets_every_log,
    publish_subscribe_logs_emitted_with_no_subscriber_are_lost,
    routing_each_subscriber_gets_only_its_severities,
    topics_star_matches_one_word_and_hash_matches_zero_or_more,
    rpc_concurrent_clients_each_get_their_answers_on_their_exclusive_queue,
    rpc_direct_reply_to_answers_reach_the_client_without_a_reply_queue,
);

/// A broker and the client whose scripts run against it.
struct Tutorial {
    client: ScriptClient,
    broker: Broker,
    port: String,
}

impl Tutorial {
    fn start(client: ScriptClient) -> Tutorial {
        let broker = Broker::start(&[]);
        let port = broker.port().to_string();
        Tutorial {
            client,
            broker,
            port,
        }
    }

    /// `base` (`send`, `worker`, ...) as the client's script name, for messages.
    fn script(&self, base: &str) -> String {
        self.client.script(base)
    }

    /// Starts the script `base` with the broker's port and then `args`.
    fn spawn(&self, base: &str, args: &[&str]) -> ScriptProcess {
        let mut all = vec![self.port.as_str()];
        all.extend_from_slice(args);
        self.client.spawn(base, &all)
    }

    /// Runs the script `base` with the broker's port and then `args`; it must exit 0.
    fn run(&self, base: &str, args: &[&str]) -> Output {
        let out = self.spawn(base, args).finish(SCRIPT_TIMEOUT);
        out.assert_success(&self.script(base));
        out
    }

    /// Starts the subscriber script `base` on `exchange`, to exit after `count` messages, with
    /// binding `keys`, and waits until its queue is bound and consuming; returns it with the
    /// server-named queue it printed.
    fn start_subscriber(
        &self,
        base: &str,
        exchange: &str,
        count: &str,
        keys: &[&str],
    ) -> (ScriptProcess, String) {
        let mut args = vec![exchange, count];
        args.extend_from_slice(keys);
        let mut process = self.spawn(base, &args);
        let queue_line = process.wait_for_line("[*] Queue ", SCRIPT_TIMEOUT);
        process.wait_for_line(READY_LOGS, SCRIPT_TIMEOUT);
        let queue = queue_line
            .trim()
            .trim_start_matches("[*] Queue ")
            .to_string();
        assert!(
            queue.starts_with("amq.gen-"),
            "expected a server-named queue (amq.gen-...) for {}, got {queue:?}",
            self.script(base)
        );
        (process, queue)
    }

    /// The queue's message and consumer counts, as `queue_info` prints them.
    fn queue_info(&self, queue: &str) -> String {
        self.run("queue_info", &[queue]).stdout.trim().to_string()
    }

    /// Publishes each of `tasks` (persistent) to `queue` with `new_task`.
    fn new_tasks(&self, queue: &str, tasks: &[String]) {
        let mut args = vec![queue];
        args.extend(tasks.iter().map(String::as_str));
        self.run("new_task", &args);
    }

    /// Checks that the finished worker `out` got exactly `tasks`, each once, in order,
    /// persistent (delivery mode 2) and not redelivered, and finished each.
    fn assert_did_tasks(&self, out: &Output, tasks: &[String], who: &str) {
        let expected: Vec<String> = tasks
            .iter()
            .map(|task| self.first_delivery_of_task(task))
            .collect();
        assert_eq!(
            out.lines_with("[x] Received"),
            expected,
            "expected {who} to get {tasks:?}, each once, in order, persistent, not redelivered"
        );
        assert_eq!(
            out.lines_with("[x] Done").len(),
            tasks.len(),
            "expected {who} to finish {} task(s), got:\n{}",
            tasks.len(),
            out.stdout
        );
    }

    /// The line the worker prints for a persistent task delivered for the first time.
    fn first_delivery_of_task(&self, task: &str) -> String {
        match self.client {
            ScriptClient::Pika => {
                format!(" [x] Received {task} delivery_mode=2 redelivered=False")
            }
            ScriptClient::Amqplib => {
                format!(" [x] Received {task} deliveryMode=2 redelivered=false")
            }
        }
    }
}

/// The lines a finished receiver printed after `[x] `.
fn received(process: ScriptProcess, what: &str) -> Vec<String> {
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

// ---------------------------------------------------------------------------
// 1. Hello world
// ---------------------------------------------------------------------------

fn hello_world_receiver_prints_each_message_send_published(client: ScriptClient) {
    let t = Tutorial::start(client);
    let queue = t.broker.queue_name("hello");
    let (send, receive) = (t.script("send"), t.script("receive"));

    let mut receiver = t.spawn("receive", &[&queue, "2"]);
    receiver.wait_for_line(READY_MESSAGES, SCRIPT_TIMEOUT);
    let sent = t.run("send", &[&queue]);
    assert_eq!(
        sent.lines_with("[x] Sent"),
        vec![" [x] Sent 'Hello World!'".to_string()],
        "expected {send} to report one sent message"
    );
    t.run("send", &[&queue, "second"]);

    let received = receiver.finish(SCRIPT_TIMEOUT);
    received.assert_success(&receive);
    assert_eq!(
        received.lines_with("[x] Received"),
        owned(&[" [x] Received Hello World!", " [x] Received second"]),
        "expected {receive} to print exactly the messages sent, in order"
    );
}

fn hello_world_message_published_before_the_receiver_starts_waits_in_the_queue(
    client: ScriptClient,
) {
    let t = Tutorial::start(client);
    let queue = t.broker.queue_name("hello");

    for body in ["first", "second"] {
        t.run("send", &[&queue, body]);
    }

    let received = t.run("receive", &[&queue, "2"]);
    assert_eq!(
        received.lines_with("[x] Received"),
        owned(&[" [x] Received first", " [x] Received second"]),
        "expected the queued messages in publish order"
    );
}

// ---------------------------------------------------------------------------
// 2. Work queues
// ---------------------------------------------------------------------------

fn work_queue_worker_does_every_persistent_task_once_in_order(client: ScriptClient) {
    let t = Tutorial::start(client);
    let queue = t.broker.queue_name("task_queue");
    let tasks: Vec<String> = (1..=5).map(|i| format!("Task {i}.")).collect();

    t.new_tasks(&queue, &tasks);
    let worker = t.run("worker", &[&queue, "5"]);
    t.assert_did_tasks(&worker, &tasks, "the worker");
    assert_eq!(
        t.queue_info(&queue),
        "messages=0 consumers=0",
        "expected the acked tasks gone from the durable queue"
    );
}

/// prefetch_count=1: a worker holding one unacked task gets no other task until it acks;
/// every other task goes to the free worker.
fn work_queue_prefetch_one_sends_no_task_to_a_busy_worker(client: ScriptClient) {
    let t = Tutorial::start(client);
    let queue = t.broker.queue_name("task_queue");
    let worker = t.script("worker");
    let hold_dir = TempDir::new("hold");
    let hold_file = hold_dir.path().join("release");
    let hold_path = hold_file.to_str().expect("utf-8 path").to_string();

    // The slow worker takes the first task and holds it, unacked.
    let mut slow = t.spawn("worker", &[&queue, "1", &hold_path]);
    slow.wait_for_line(READY_MESSAGES, SCRIPT_TIMEOUT);
    let slow_task = ["slow task".to_string()];
    t.new_tasks(&queue, &slow_task);
    slow.wait_for_line("[x] Received slow task", SCRIPT_TIMEOUT);

    // The fast worker joins; ten more tasks (some with dots: simulated work) arrive while the
    // slow one is busy.
    let mut fast = t.spawn("worker", &[&queue, "10"]);
    fast.wait_for_line(READY_MESSAGES, SCRIPT_TIMEOUT);
    let tasks: Vec<String> = (1..=10)
        .map(|i| format!("fast task {i}{}", ".".repeat(i % 3)))
        .collect();
    t.new_tasks(&queue, &tasks);

    // All ten must reach the fast worker while the slow one still holds its task: had the
    // broker pushed one to the slow worker, the fast worker would never see ten and would
    // time out.
    let fast = fast.finish(SCRIPT_TIMEOUT);
    fast.assert_success(&format!("the fast {worker}"));
    t.assert_did_tasks(
        &fast,
        &tasks,
        "the fast worker, while the slow one was busy,",
    );

    std::fs::write(&hold_file, b"go").expect("write hold file");
    let slow = slow.finish(SCRIPT_TIMEOUT);
    slow.assert_success(&format!("the slow {worker}"));
    t.assert_did_tasks(&slow, &slow_task, "the slow worker");
    assert_eq!(
        t.queue_info(&queue),
        "messages=0 consumers=0",
        "expected all 11 tasks acked and gone"
    );
}

// ---------------------------------------------------------------------------
// 3. Publish/subscribe
// ---------------------------------------------------------------------------

fn publish_subscribe_every_exclusive_subscriber_gets_every_log(client: ScriptClient) {
    let t = Tutorial::start(client);
    let exchange = t.broker.queue_name("logs");
    let receive_logs = t.script("receive_logs");
    let logs = ["info: first", "warning: second", "error: third"];

    t.run("emit_log", &[&exchange, "nobody listens"]);
    let (first, first_queue) = t.start_subscriber("receive_logs", &exchange, "3", &[]);
    let (second, second_queue) = t.start_subscriber("receive_logs", &exchange, "3", &[]);
    assert_ne!(
        first_queue, second_queue,
        "expected each subscriber to get its own server-named queue"
    );
    let mut args = vec![exchange.as_str()];
    args.extend(logs);
    t.run("emit_log", &args);

    for (process, which) in [(first, "first"), (second, "second")] {
        let what = format!("the {which} {receive_logs}");
        assert_eq!(
            received(process, &what),
            owned(&logs),
            "expected {what} to get every log emitted after it bound, in order"
        );
    }
}

fn publish_subscribe_logs_emitted_with_no_subscriber_are_lost(client: ScriptClient) {
    let t = Tutorial::start(client);
    let exchange = t.broker.queue_name("logs");

    // Nothing is bound yet: the fanout exchange drops this one.
    t.run("emit_log", &[&exchange, "nobody listens"]);
    let (subscriber, _) = t.start_subscriber("receive_logs", &exchange, "1", &[]);
    t.run("emit_log", &[&exchange, "someone listens"]);
    assert_eq!(
        received(subscriber, &t.script("receive_logs")),
        owned(&["someone listens"]),
        "expected only the log emitted after the subscriber bound its queue"
    );
}

// ---------------------------------------------------------------------------
// 4. Routing
// ---------------------------------------------------------------------------

fn routing_each_subscriber_gets_only_its_severities(client: ScriptClient) {
    let t = Tutorial::start(client);
    let exchange = t.broker.queue_name("direct_logs");
    let receiver = t.script("receive_logs_direct");
    let subscribe = |count, severities| {
        t.start_subscriber("receive_logs_direct", &exchange, count, severities)
            .0
    };

    let errors = subscribe("2", &["error"]);
    let warnings = subscribe("3", &["warning", "error"]);
    let all = subscribe("5", &["info", "warning", "error"]);

    for (severity, messages) in [
        ("info", &["info one", "info two"][..]),
        ("debug", &["debug"]),
        ("error", &["disk full"]),
        ("warning", &["disk almost full"]),
        ("error", &["disk still full"]),
    ] {
        let mut args = vec![exchange.as_str(), severity];
        args.extend_from_slice(messages);
        t.run("emit_log_direct", &args);
    }

    assert_eq!(
        received(errors, &format!("{receiver} error")),
        owned(&["error:disk full", "error:disk still full"]),
        "expected the error subscriber to get only errors"
    );
    assert_eq!(
        received(warnings, &format!("{receiver} warning error")),
        owned(&[
            "error:disk full",
            "warning:disk almost full",
            "error:disk still full"
        ]),
        "expected the warning+error subscriber to get warnings and errors in order"
    );
    assert_eq!(
        received(all, &format!("{receiver} info warning error")),
        owned(&[
            "info:info one",
            "info:info two",
            "error:disk full",
            "warning:disk almost full",
            "error:disk still full"
        ]),
        "expected the info+warning+error subscriber to get everything but debug, in order"
    );
}

// ---------------------------------------------------------------------------
// 5. Topics
// ---------------------------------------------------------------------------

fn topics_star_matches_one_word_and_hash_matches_zero_or_more(client: ScriptClient) {
    let t = Tutorial::start(client);
    let exchange = t.broker.queue_name("topic_logs");
    let receiver = t.script("receive_logs_topic");
    let subscribe = |count, keys| {
        t.start_subscriber("receive_logs_topic", &exchange, count, keys)
            .0
    };

    let q1 = subscribe("5", &["*.orange.*"]);
    let q2 = subscribe("8", &["*.*.rabbit", "lazy.#"]);
    let everything = subscribe("13", &["#"]);
    let kern = subscribe("2", &["kern.*", "kern.#"]);

    // (routing key, body); the last one matches every subscriber, so a wrongly routed earlier
    // message would show up before it.
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
        ("lazy.orange.rabbit", "m12"),
        ("kern.orange.rabbit", "last"),
    ];
    for (key, body) in messages {
        t.run("emit_log_topic", &[&exchange, key, body]);
    }

    assert_eq!(
        received(q1, &format!("{receiver} *.orange.*")),
        owned(&[
            "quick.orange.rabbit:m1",
            "lazy.orange.elephant:m2",
            "quick.orange.fox:m3",
            "lazy.orange.rabbit:m12",
            "kern.orange.rabbit:last"
        ]),
        "expected *.orange.* to match exactly three-word keys with orange in the middle"
    );
    assert_eq!(
        received(q2, &format!("{receiver} *.*.rabbit lazy.#")),
        owned(&[
            "quick.orange.rabbit:m1",
            "lazy.orange.elephant:m2",
            "lazy.brown.fox:m4",
            "lazy.pink.rabbit:m5",
            "lazy.orange.male.rabbit:m9",
            "lazy:m10",
            "lazy.orange.rabbit:m12",
            "kern.orange.rabbit:last"
        ]),
        "expected *.*.rabbit and lazy.# (lazy.# matching plain `lazy`), a key matching both once"
    );
    let all: Vec<String> = messages.iter().map(|(k, b)| format!("{k}:{b}")).collect();
    assert_eq!(
        received(everything, &format!("{receiver} #")),
        all,
        "expected # to match every routing key, in order"
    );
    assert_eq!(
        received(kern, &format!("{receiver} kern.* kern.#")),
        owned(&["kern.critical:m11", "kern.orange.rabbit:last"]),
        "expected kern.* and kern.# to match only keys starting with kern, each once"
    );
}

// ---------------------------------------------------------------------------
// 6. RPC
// ---------------------------------------------------------------------------

fn fib(n: u64) -> u64 {
    match n {
        0 => 0,
        1 => 1,
        _ => fib(n - 1) + fib(n - 2),
    }
}

/// One client's view of its calls: what it requested (n, correlation id), what it got (n,
/// correlation id, answer) in request order, and its reply queue.
struct RpcClientRun {
    reply_queue: String,
    requested: Vec<(u64, String)>,
    answers: Vec<(u64, String, u64)>,
}

/// Waits for an RPC client script to finish, checks it saw only its own correlation ids, and
/// reads what it printed.
fn finish_rpc_client(client: ScriptProcess, what: &str) -> RpcClientRun {
    let out = client.finish(SCRIPT_TIMEOUT);
    out.assert_success(what);
    assert!(
        out.lines_with("[!]").is_empty(),
        "expected {what} to see only its own correlation ids, got:\n{}",
        out.stdout
    );
    let reply_queue = out
        .lines_with("[*] Reply queue ")
        .first()
        .map(|l| l.trim().trim_start_matches("[*] Reply queue ").to_string())
        .unwrap_or_else(|| {
            panic!(
                "expected {what} to print its reply queue, got:\n{}",
                out.stdout
            )
        });
    // " [x] Requesting fib(N) correlation_id=C"
    let requested = fields_of(&out, "[x] Requesting fib(", &[") correlation_id="])
        .into_iter()
        .map(|f| (number(&f[0]), f[1].clone()))
        .collect();
    // " [.] Got fib(N) = R correlation_id=C"
    let answers = fields_of(&out, "[.] Got fib(", &[") = ", " correlation_id="])
        .into_iter()
        .map(|f| (number(&f[0]), f[2].clone(), number(&f[1])))
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

/// The server's replies, as (n, reply_to), from its finished output.
fn finish_rpc_server(server: ScriptProcess, what: &str) -> Vec<(u64, String)> {
    let out = server.finish(SCRIPT_TIMEOUT);
    out.assert_success(what);
    // " [.] fib(N) reply_to=R"
    fields_of(&out, "[.] fib(", &[") reply_to="])
        .into_iter()
        .map(|f| (number(&f[0]), f[1].clone()))
        .collect()
}

/// The fields of each stdout line starting with `prefix` (after trimming): what lies between
/// the prefix and the first separator, between that and the next, ..., and after the last.
fn fields_of(out: &Output, prefix: &str, separators: &[&str]) -> Vec<Vec<String>> {
    out.lines_with(prefix)
        .iter()
        .map(|line| {
            let mut rest = line.trim().trim_start_matches(prefix);
            let mut fields = Vec::new();
            for separator in separators {
                let (field, after) = rest.split_once(separator).unwrap_or_else(|| {
                    panic!("expected {separator:?} in the line {line:?}, got none")
                });
                fields.push(field.to_string());
                rest = after;
            }
            fields.push(rest.to_string());
            fields
        })
        .collect()
}

fn number(field: &str) -> u64 {
    field
        .parse()
        .unwrap_or_else(|e| panic!("expected a number, got {field:?} ({e})"))
}

fn rpc_concurrent_clients_each_get_their_answers_on_their_exclusive_queue(client: ScriptClient) {
    let t = Tutorial::start(client);
    let queue = t.broker.queue_name("rpc_queue");
    let rpc_client = t.script("rpc_client");
    let calls: [&[u64]; 3] = [&[10, 1, 2, 3], &[0, 5, 8], &[13, 4, 4, 7, 6]];
    let total: usize = calls.iter().map(|c| c.len()).sum();

    let mut server = t.spawn("rpc_server", &[&queue, &total.to_string()]);
    server.wait_for_line(READY_RPC, SCRIPT_TIMEOUT);

    let clients: Vec<ScriptProcess> = calls
        .iter()
        .map(|numbers| {
            let numbers: Vec<String> = numbers.iter().map(u64::to_string).collect();
            let mut args: Vec<&str> = vec![&queue];
            args.extend(numbers.iter().map(String::as_str));
            t.spawn("rpc_client", &args)
        })
        .collect();
    let runs: Vec<RpcClientRun> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| finish_rpc_client(client, &format!("{rpc_client} #{i}")))
        .collect();
    for (i, (run, numbers)) in runs.iter().zip(calls).enumerate() {
        assert!(
            run.reply_queue.starts_with("amq.gen-"),
            "expected client #{i} to reply on a server-named queue, got {:?}",
            run.reply_queue
        );
        assert_rpc_answers(run, numbers, &format!("client #{i}"));
    }

    let mut served: HashMap<String, Vec<u64>> = HashMap::new();
    for (n, reply_to) in finish_rpc_server(server, &t.script("rpc_server")) {
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

fn rpc_direct_reply_to_answers_reach_the_client_without_a_reply_queue(client: ScriptClient) {
    let t = Tutorial::start(client);
    let queue = t.broker.queue_name("rpc_queue");
    let rpc_client = t.script("rpc_client");
    let direct: &[u64] = &[3, 10, 1];
    let classic: &[u64] = &[9, 2];

    let mut server = t.spawn("rpc_server", &[&queue, "5"]);
    server.wait_for_line(READY_RPC, SCRIPT_TIMEOUT);
    let direct_client = t.spawn("rpc_client", &[&queue, "--direct-reply-to", "3", "10", "1"]);
    let classic_client = t.spawn("rpc_client", &[&queue, "9", "2"]);

    let direct_run = finish_rpc_client(direct_client, &format!("{rpc_client} --direct-reply-to"));
    assert_eq!(
        direct_run.reply_queue, "amq.rabbitmq.reply-to",
        "expected the client to consume from the pseudo-queue"
    );
    assert_rpc_answers(&direct_run, direct, "the direct reply-to client");
    let classic_run = finish_rpc_client(classic_client, &rpc_client);
    assert_rpc_answers(&classic_run, classic, "the exclusive-queue client");

    let direct_served: Vec<(u64, String)> = finish_rpc_server(server, &t.script("rpc_server"))
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
