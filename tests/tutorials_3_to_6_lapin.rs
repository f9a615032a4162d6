//! RabbitMQ tutorials 3 to 6 (publish/subscribe, routing, topics, RPC)
//! written with lapin 2.x. Each test asserts exactly what every queue got.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use support::lapin_client::{
    ack, bind, body, close, connect, consume, declare, declare_exchange, declare_server_named,
    open_channel, qos, Deliveries,
};
use support::{run_async, Broker};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

fn run<F: std::future::Future<Output = ()>>(body: F) {
    run_async(TEST_TIMEOUT, body);
}

/// A broker, a connection and channel to it, and the exchange `base` (see
/// `Broker::queue_name`) of `kind` declared.
async fn start_with_exchange(
    base: &str,
    kind: ExchangeKind,
) -> (Broker, Connection, Channel, String) {
    let broker = Broker::start(&[]);
    let exchange = broker.queue_name(base);
    let connection = connect(&broker.amqp_url()).await;
    let channel = open_channel(&connection).await;
    declare_exchange(&channel, &exchange, kind, false).await;
    (broker, connection, channel, exchange)
}

/// The tutorials' subscriber: a server-named exclusive queue bound to `exchange` with each of
/// `keys`, consumed with no-ack. Returns the queue and its deliveries.
async fn subscriber(channel: &Channel, exchange: &str, keys: &[&str]) -> (String, Deliveries) {
    let queue = declare_server_named(channel).await;
    for key in keys {
        bind(channel, &queue, exchange, key, FieldTable::default()).await;
    }
    let deliveries = consume(channel, &queue, "", true).await;
    (queue, deliveries)
}

async fn publish(
    channel: &Channel,
    exchange: &str,
    key: &str,
    body: &str,
    properties: BasicProperties,
) {
    support::lapin_client::publish(channel, exchange, key, body.as_bytes(), properties).await;
}

/// Publishes each (routing key, body) to `exchange`, without properties.
async fn publish_all(channel: &Channel, exchange: &str, messages: &[(&str, String)]) {
    for (key, body) in messages {
        publish(channel, exchange, key, body, BasicProperties::default()).await;
    }
}

fn owned(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|s| s.to_string()).collect()
}

#[test]
fn publish_subscribe_every_exclusive_queue_gets_every_log() {
    run(async {
        let (broker, connection, channel, exchange) =
            start_with_exchange("logs", ExchangeKind::Fanout).await;
        let nobody = [("", "nobody listens".to_string())];
        publish_all(&channel, &exchange, &nobody).await;

        let mut subscribers = Vec::new();
        let mut names = Vec::new();
        for _ in 0..2 {
            let connection = connect(&broker.amqp_url()).await;
            let channel = open_channel(&connection).await;
            declare_exchange(&channel, &exchange, ExchangeKind::Fanout, false).await;
            let (queue, deliveries) = subscriber(&channel, &exchange, &[""]).await;
            names.push(queue);
            subscribers.push((connection, channel, deliveries));
        }
        assert_ne!(
            names[0], names[1],
            "expected two distinct server-named queues"
        );

        let logs = ["info: first", "warning: second", "error: third"];
        // The routing key is ignored by fanout.
        let keys = ["key0", "key1", "key2"];
        let messages: Vec<(&str, String)> = keys.into_iter().zip(logs.map(String::from)).collect();
        publish_all(&channel, &exchange, &messages).await;
        let expected: Vec<String> = messages.iter().map(|(k, l)| format!("{k}:{l}")).collect();
        for (i, (_, _, deliveries)) in subscribers.iter_mut().enumerate() {
            let got = deliveries
                .take_keyed(logs.len(), &format!("subscriber {i}"))
                .await;
            assert_eq!(
                got, expected,
                "expected subscriber {i} to get every log after it bound, in order"
            );
        }
        for (connection, _, _) in subscribers {
            close(connection, "a subscriber").await;
        }
        close(connection, "the test's connection").await;
    });
}

#[test]
fn routing_each_queue_gets_only_its_severities() {
    run(async {
        let (_broker, connection, channel, exchange) =
            start_with_exchange("direct_logs", ExchangeKind::Direct).await;
        let (_, mut errors) = subscriber(&channel, &exchange, &["error"]).await;
        let (_, mut all) = subscriber(&channel, &exchange, &["info", "warning", "error"]).await;

        let messages = [
            ("info", "info one"),
            ("debug", "debug one"),
            ("error", "disk full"),
            ("warning", "disk almost full"),
            ("error", "disk still full"),
        ]
        .map(|(severity, message)| (severity, message.to_string()));
        publish_all(&channel, &exchange, &messages).await;

        assert_eq!(
            errors.take_keyed(2, "the error queue").await,
            owned(&["error:disk full", "error:disk still full"]),
            "expected the error queue to get only errors"
        );
        assert_eq!(
            all.take_keyed(4, "the info+warning+error queue").await,
            owned(&[
                "info:info one",
                "error:disk full",
                "warning:disk almost full",
                "error:disk still full"
            ]),
            "expected the info+warning+error queue to get everything but debug, in order"
        );
        close(connection, "the test's connection").await;
    });
}

#[test]
fn topics_star_matches_one_word_and_hash_matches_zero_or_more() {
    run(async {
        let (_broker, connection, channel, exchange) =
            start_with_exchange("topic_logs", ExchangeKind::Topic).await;
        let (_, mut q1) = subscriber(&channel, &exchange, &["*.orange.*"]).await;
        let (_, mut q2) = subscriber(&channel, &exchange, &["*.*.rabbit", "lazy.#"]).await;
        let (_, mut q3) = subscriber(&channel, &exchange, &["#"]).await;
        let (_, mut q4) = subscriber(&channel, &exchange, &["#.fox.#"]).await;

        let keys = [
            "quick.orange.rabbit",
            "lazy.orange.elephant",
            "quick.orange.fox",
            "lazy.brown.fox",
            "lazy.pink.rabbit",
            "quick.brown.fox",
            "orange",
            "quick.orange.male.rabbit",
            "lazy.orange.male.rabbit",
            "lazy",
            "fox",
            "",
        ];
        let messages: Vec<(&str, String)> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| (*key, format!("m{i}")))
            .collect();
        publish_all(&channel, &exchange, &messages).await;

        assert_eq!(
            q1.take_keyed(3, "*.orange.*").await,
            owned(&[
                "quick.orange.rabbit:m0",
                "lazy.orange.elephant:m1",
                "quick.orange.fox:m2"
            ]),
            "expected *.orange.* to match three-word keys with orange in the middle"
        );
        assert_eq!(
            q2.take_keyed(6, "*.*.rabbit + lazy.#").await,
            owned(&[
                "quick.orange.rabbit:m0",
                "lazy.orange.elephant:m1",
                "lazy.brown.fox:m3",
                "lazy.pink.rabbit:m4",
                "lazy.orange.male.rabbit:m8",
                "lazy:m9"
            ]),
            "expected *.*.rabbit and lazy.# (matching plain `lazy`), lazy.pink.rabbit once"
        );
        let everything: Vec<String> = messages.iter().map(|(k, b)| format!("{k}:{b}")).collect();
        assert_eq!(
            q3.take_keyed(keys.len(), "#").await,
            everything,
            "expected # to match every key, the empty key included"
        );
        assert_eq!(
            q4.take_keyed(4, "#.fox.#").await,
            owned(&[
                "quick.orange.fox:m2",
                "lazy.brown.fox:m3",
                "quick.brown.fox:m5",
                "fox:m10"
            ]),
            "expected #.fox.# to match fox anywhere, with zero words around it"
        );
        close(connection, "the test's connection").await;
    });
}

fn fib(n: u64) -> u64 {
    match n {
        0 => 0,
        1 => 1,
        _ => fib(n - 1) + fib(n - 2),
    }
}

const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// The tutorial's Fibonacci server: answers `count` requests on `queue`,
/// one at a time (prefetch 1), and returns them as (n, reply_to).
async fn rpc_server(channel: Channel, queue: String, count: usize) -> Vec<(u64, String)> {
    let mut requests = consume(&channel, &queue, "", false).await;
    let mut served = Vec::new();
    for _ in 0..count {
        let request = requests.next("an RPC request").await;
        let n: u64 = body(&request).parse().unwrap_or_else(|e| {
            panic!(
                "expected a number in the request, got {:?} ({e})",
                body(&request)
            )
        });
        let reply_to =
            request.properties.reply_to().clone().unwrap_or_else(|| {
                panic!("expected reply_to on the request for fib({n}), got none")
            });
        let mut properties = BasicProperties::default();
        if let Some(corr) = request.properties.correlation_id() {
            properties = properties.with_correlation_id(corr.clone());
        }
        publish(
            &channel,
            "",
            reply_to.as_str(),
            &fib(n).to_string(),
            properties,
        )
        .await;
        ack(&request).await;
        served.push((n, reply_to.as_str().to_string()));
    }
    served
}

/// A client that sends every request before awaiting any answer, so the
/// answers are matched by correlation_id alone. Returns its reply queue
/// and (n, correlation_id, answer) in request order.
async fn rpc_client(
    url: String,
    queue: String,
    name: String,
    numbers: Vec<u64>,
    direct_reply_to: bool,
) -> (String, Vec<(u64, String, u64)>) {
    let connection = connect(&url).await;
    let channel = open_channel(&connection).await;
    let reply_queue = if direct_reply_to {
        DIRECT_REPLY_TO.to_string()
    } else {
        declare_server_named(&channel).await
    };
    let mut replies = consume(&channel, &reply_queue, "", true).await;

    let requests: Vec<(u64, String)> = numbers
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, format!("{name}-request-{i}")))
        .collect();
    for (n, corr) in &requests {
        let properties = BasicProperties::default()
            .with_reply_to(ShortString::from(reply_queue.clone()))
            .with_correlation_id(ShortString::from(corr.clone()));
        publish(&channel, "", &queue, &n.to_string(), properties).await;
    }
    let mut answers: HashMap<String, u64> = HashMap::new();
    while answers.len() < requests.len() {
        let reply = replies.next(&format!("an RPC answer for {name}")).await;
        let corr = reply
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str().to_string())
            .unwrap_or_else(|| {
                panic!("expected a correlation_id on the answer to {name}, got none")
            });
        assert!(
            requests.iter().any(|(_, c)| *c == corr),
            "expected {name} to get answers only to its own requests, got correlation_id {corr:?}"
        );
        let value = body(&reply).parse().unwrap_or_else(|e| {
            panic!("expected a number as answer, got {:?} ({e})", body(&reply))
        });
        assert!(
            answers.insert(corr.clone(), value).is_none(),
            "expected one answer per request, got a second for {corr}"
        );
    }
    close(connection, &name).await;
    let answered = requests
        .into_iter()
        .map(|(n, corr)| {
            let value = answers[&corr];
            (n, corr, value)
        })
        .collect();
    (reply_queue, answered)
}

fn expected_answers(name: &str, numbers: &[u64]) -> Vec<(u64, String, u64)> {
    numbers
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, format!("{name}-request-{i}"), fib(*n)))
        .collect()
}

async fn start_rpc_server(
    broker: &Broker,
    queue: &str,
    count: usize,
) -> (Connection, tokio::task::JoinHandle<Vec<(u64, String)>>) {
    let connection = connect(&broker.amqp_url()).await;
    let channel = open_channel(&connection).await;
    declare(&channel, queue, false).await;
    qos(&channel, 1).await;
    let server = tokio::spawn(rpc_server(channel, queue.to_string(), count));
    (connection, server)
}

#[test]
fn rpc_concurrent_clients_each_get_their_answers_on_their_exclusive_queue() {
    run(async {
        let broker = Broker::start(&[]);
        let queue = broker.queue_name("rpc_queue");
        let calls: [(&str, &[u64]); 3] = [
            ("alice", &[10, 1, 2, 3]),
            ("bob", &[0, 5, 8]),
            ("carol", &[13, 4, 4, 7, 6]),
        ];
        let total = calls.iter().map(|(_, n)| n.len()).sum();
        let (server_connection, server) = start_rpc_server(&broker, &queue, total).await;

        let clients: Vec<_> = calls
            .iter()
            .map(|(name, numbers)| {
                tokio::spawn(rpc_client(
                    broker.amqp_url(),
                    queue.clone(),
                    name.to_string(),
                    numbers.to_vec(),
                    false,
                ))
            })
            .collect();
        let mut expected_served: HashMap<String, Vec<u64>> = HashMap::new();
        for (client, (name, numbers)) in clients.into_iter().zip(calls) {
            let (reply_queue, answers) = client
                .await
                .unwrap_or_else(|e| panic!("expected client {name} to finish, got {e}"));
            assert_eq!(
                answers,
                expected_answers(name, numbers),
                "expected {name} to get fib(n) for each request, matched by correlation_id"
            );
            expected_served.insert(reply_queue, numbers.to_vec());
        }

        let served = server
            .await
            .unwrap_or_else(|e| panic!("expected the RPC server to finish, got {e}"));
        let mut served_by_queue: HashMap<String, Vec<u64>> = HashMap::new();
        for (n, reply_to) in served {
            served_by_queue.entry(reply_to).or_default().push(n);
        }
        assert_eq!(
            served_by_queue, expected_served,
            "expected the server to answer each client's requests, in order, to its own reply queue"
        );
        close(server_connection, "the RPC server").await;
    });
}

#[test]
fn rpc_direct_reply_to_answers_reach_the_client_without_a_reply_queue() {
    run(async {
        let broker = Broker::start(&[]);
        let queue = broker.queue_name("rpc_queue");
        let (server_connection, server) = start_rpc_server(&broker, &queue, 5).await;

        let direct = tokio::spawn(rpc_client(
            broker.amqp_url(),
            queue.clone(),
            "direct".to_string(),
            vec![3, 10, 1],
            true,
        ));
        let classic = tokio::spawn(rpc_client(
            broker.amqp_url(),
            queue.clone(),
            "classic".to_string(),
            vec![9, 2],
            false,
        ));
        let (direct_queue, direct_answers) = direct
            .await
            .unwrap_or_else(|e| panic!("expected the direct reply-to client to finish, got {e}"));
        assert_eq!(
            direct_queue, DIRECT_REPLY_TO,
            "expected the pseudo-queue as reply queue"
        );
        assert_eq!(
            direct_answers,
            expected_answers("direct", &[3, 10, 1]),
            "expected the direct reply-to client to get fib(n) for each request"
        );
        let (classic_queue, classic_answers) = classic
            .await
            .unwrap_or_else(|e| panic!("expected the classic client to finish, got {e}"));
        assert_eq!(
            classic_answers,
            expected_answers("classic", &[9, 2]),
            "expected the exclusive-queue client to get fib(n) for each request"
        );

        let served = server
            .await
            .unwrap_or_else(|e| panic!("expected the RPC server to finish, got {e}"));
        let direct_served: Vec<&(u64, String)> =
            served.iter().filter(|(_, r)| *r != classic_queue).collect();
        assert_eq!(
            direct_served.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            vec![3, 10, 1],
            "expected the server to serve the direct reply-to requests in order"
        );
        for (n, reply_to) in direct_served {
            assert!(
                reply_to.starts_with("amq.rabbitmq.reply-to.") && reply_to.len() > 22,
                "expected the server to see reply_to rewritten to amq.rabbitmq.reply-to.<token> for fib({n}), got {reply_to:?}"
            );
        }
        close(server_connection, "the RPC server").await;
    });
}
