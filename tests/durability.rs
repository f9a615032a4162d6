//! Durability, with RabbitMQ's semantics for classic durable queues: persistent messages in
//! durable queues, and durable exchanges, queues and bindings, survive a restart of the broker,
//! clean (SIGTERM) or not (SIGKILL), with their properties, their order and their
//! `redelivered` state; transient messages, non-durable and exclusive queues and non-durable
//! exchanges do not.
//!
//! Warren confirms a persistent message only once it is on disk (fdatasync), so a confirmed
//! message is never lost, whenever the broker is killed. Acks are not confirmed in AMQP: a
//! message acked just before a crash may come back, but flagged `redelivered`, as must be any
//! message delivered more than once.
//!
//! Each test starts its own broker (`RestartableBroker`) on a fresh data directory and a free
//! port, kills or stops it by PID and starts it again on the same directory. Against an
//! external broker (`WARREN_TEST_AMQP_PORT`) they are skipped, since the harness cannot
//! restart it. Timings never decide the outcome: the crash test draws its kill delays from a
//! PRNG whose seed it prints, and `WARREN_DURABILITY_SEED=<seed>` replays them; timeouts only
//! bound what would otherwise hang.

mod support;

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicPublishOptions, ExchangeBindOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use support::lapin_client::{
    ack, bind, bodies, body, close_channel, close_quietly, confirm_channel, connect,
    declare_exchange, declare_queue, durable, get, get_all, long_string, open_channel,
    publish_confirmed, qos, start_consumer, table, within, Deliveries,
};
use support::{queue_per_shard, run_async, RestartableBroker};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use warren::ids::queue_shard;

const SHARDS: usize = 2;
const SHARD_ARGS: [&str; 2] = ["--shards", "2"];
const TEST_TIMEOUT: Duration = Duration::from_secs(240);

/// Crash test: rounds of publishing ended by a SIGKILL.
const ROUNDS: usize = 4;
const PUBLISHERS: usize = 3;
/// Outstanding (unconfirmed) publishes per publisher.
const CONFIRM_WINDOW: usize = 256;
/// A publisher stops after this many publishes in one round (bounds the disk used).
const MAX_PER_ROUND: u64 = 15_000;
/// Kill delays, from the moment every client of the round is connected.
const KILL_DELAY_MS: (u64, u64) = (50, 400);
const SEED_ENV: &str = "WARREN_DURABILITY_SEED";

// ---------------------------------------------------------------------------
// Plumbing
// ---------------------------------------------------------------------------

fn run<F: Future<Output = ()>>(body: F) {
    run_async(TEST_TIMEOUT, body);
}

/// Starts a restartable broker, or `None` (the test is skipped) against an external one.
fn start_broker(args: &[&str], test: &str) -> Option<RestartableBroker> {
    let broker = RestartableBroker::start(args);
    if broker.is_none() {
        eprintln!("{test}: skipped, an external broker cannot be restarted by the harness");
    }
    broker
}

/// Runs a blocking harness call (start, kill, stop) without stalling the runtime.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

/// True if `error` is the channel close with 404 NOT_FOUND.
fn is_not_found(error: &lapin::Error) -> bool {
    matches!(error, lapin::Error::ProtocolError(e) if e.get_id() == 404)
}

/// Passive queue.declare on a channel of its own: `Some(message count)` if the queue exists,
/// `None` if the broker answers 404.
async fn queue_message_count(connection: &Connection, queue: &str) -> Option<u32> {
    let channel = open_channel(connection).await;
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    match within(
        "passive queue.declare",
        channel.queue_declare(queue, options, FieldTable::default()),
    )
    .await
    {
        Ok(queue) => {
            let _ = channel.close(200, "done").await;
            Some(queue.message_count())
        }
        Err(e) if is_not_found(&e) => None,
        Err(e) => panic!("expected queue.declare-ok or 404 for {queue}, got {e}"),
    }
}

async fn assert_queue_exists(connection: &Connection, queue: &str, why: &str) -> u32 {
    queue_message_count(connection, queue)
        .await
        .unwrap_or_else(|| panic!("expected queue {queue} to exist ({why}), got 404 NOT_FOUND"))
}

async fn assert_queue_gone(connection: &Connection, queue: &str, why: &str) {
    if let Some(count) = queue_message_count(connection, queue).await {
        panic!("expected queue {queue} gone ({why}), got it with {count} message(s)");
    }
}

/// Passive exchange.declare on a channel of its own: true if the exchange exists, false if
/// the broker answers 404.
async fn exchange_exists(connection: &Connection, exchange: &str) -> bool {
    let channel = open_channel(connection).await;
    let options = ExchangeDeclareOptions {
        passive: true,
        ..ExchangeDeclareOptions::default()
    };
    match within(
        "passive exchange.declare",
        channel.exchange_declare(
            exchange,
            ExchangeKind::Direct,
            options,
            FieldTable::default(),
        ),
    )
    .await
    {
        Ok(()) => {
            let _ = channel.close(200, "done").await;
            true
        }
        Err(e) if is_not_found(&e) => false,
        Err(e) => panic!("expected exchange.declare-ok or 404 for {exchange}, got {e}"),
    }
}

/// Properties that exercise every field a recovered message must keep (no `user_id`, which
/// RabbitMQ checks, and no `expiration`).
fn rich_properties(tag: &str, persistent: bool) -> BasicProperties {
    let nested = table(&[
        ("flag", AMQPValue::Boolean(true)),
        ("label", long_string(&format!("label-{tag}"))),
    ]);
    let headers = table(&[
        ("tag", long_string(tag)),
        ("count", AMQPValue::LongInt(42)),
        ("big", AMQPValue::LongLongInt(1 << 40)),
        ("nested", AMQPValue::FieldTable(nested)),
    ]);
    let properties = BasicProperties::default()
        .with_content_type(ShortString::from("text/plain"))
        .with_content_encoding(ShortString::from("identity"))
        .with_headers(headers)
        .with_correlation_id(ShortString::from(format!("corr-{tag}")))
        .with_reply_to(ShortString::from("replies"))
        .with_message_id(ShortString::from(format!("msg-{tag}")))
        .with_timestamp(1_700_000_000)
        .with_type(ShortString::from("durability-test"))
        .with_app_id(ShortString::from("warren-tests"));
    if persistent {
        properties.with_delivery_mode(2)
    } else {
        properties.with_delivery_mode(1)
    }
}

// ---------------------------------------------------------------------------
// 1. Confirmed persistent messages survive kill -9
// ---------------------------------------------------------------------------

/// A small deterministic PRNG (xorshift64*), so that a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }
}

fn seed() -> u64 {
    if let Ok(value) = std::env::var(SEED_ENV) {
        return value
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("expected {SEED_ENV} to be a u64, got {value:?} ({e})"));
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

/// Message `n` of publisher `p`: `p{p}-{n}`, and for a few a large tail (past frame_max, so
/// the body spans several frames).
fn crash_body(p: usize, n: u64) -> Vec<u8> {
    let mut body = format!("p{p}-{n}").into_bytes();
    if n % 997 == 13 {
        let size = 20_000 + (n % 7) as usize * 30_000;
        body.push(b'|');
        body.extend((0..size).map(|i| b'a' + ((i as u64 + n) % 26) as u8));
    }
    body
}

fn crash_properties(p: usize, n: u64) -> BasicProperties {
    let headers = table(&[
        ("publisher", AMQPValue::LongInt(p as i32)),
        ("n", AMQPValue::LongLongInt(n as i64)),
        ("source", long_string("durability-test")),
        (
            "nested",
            AMQPValue::FieldTable(table(&[("even", AMQPValue::Boolean(n.is_multiple_of(2)))])),
        ),
    ]);
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(ShortString::from("text/plain"))
        .with_correlation_id(ShortString::from(format!("corr-p{p}-{n}")))
        .with_message_id(ShortString::from(format!("msg-p{p}-{n}")))
        .with_timestamp(1_700_000_000 + n)
        .with_headers(headers)
}

/// `(publisher, n)` of a delivery, after checking that its body and properties are exactly
/// what that publisher sent.
fn check_crash_delivery(delivery: &Delivery) -> (usize, u64) {
    let head_end = delivery
        .data
        .iter()
        .position(|&b| b == b'|')
        .unwrap_or(delivery.data.len());
    let head = String::from_utf8_lossy(&delivery.data[..head_end]).into_owned();
    let key = head
        .strip_prefix('p')
        .and_then(|rest| rest.split_once('-'))
        .and_then(|(p, n)| Some((p.parse::<usize>().ok()?, n.parse::<u64>().ok()?)))
        .filter(|&(p, _)| p < PUBLISHERS)
        .unwrap_or_else(|| {
            panic!(
                "expected a body `p<publisher>-<n>`, got {:?} ({} bytes)",
                head,
                delivery.data.len()
            )
        });
    let (p, n) = key;
    let expected = crash_body(p, n);
    assert!(
        delivery.data == expected,
        "expected the body of p{p}-{n} intact ({} bytes), got {} bytes starting {:?}",
        expected.len(),
        delivery.data.len(),
        String::from_utf8_lossy(&delivery.data[..delivery.data.len().min(64)])
    );
    assert_eq!(
        delivery.properties,
        crash_properties(p, n),
        "expected the properties of p{p}-{n} intact"
    );
    key
}

/// One publisher's share of one round.
struct PublishRound {
    p: usize,
    /// Every n handed to basic.publish (whether or not it reached the broker).
    sent: Vec<u64>,
    confirmed: Vec<u64>,
    nacked: Vec<u64>,
    /// Where the publisher goes on next round.
    next_n: u64,
}

/// Publishes `p{p}-{first_n}`, `p{p}-{first_n + 1}`, ... with confirms, keeping up to
/// `CONFIRM_WINDOW` outstanding, until the broker dies (`kill` turns true, or the connection
/// fails) or `MAX_PER_ROUND` were published and confirmed. Confirms not received by then are
/// unknown outcomes: those messages may or may not be in the queue.
async fn publish_round(
    url: String,
    p: usize,
    queue: String,
    first_n: u64,
    mut kill: watch::Receiver<bool>,
    ready: mpsc::UnboundedSender<()>,
) -> PublishRound {
    let mut log = PublishRound {
        p,
        sent: Vec::new(),
        confirmed: Vec::new(),
        nacked: Vec::new(),
        next_n: first_n,
    };
    let connection = connect(&url).await;
    let channel = confirm_channel(&connection).await;
    let _ = ready.send(());
    let mut outstanding = VecDeque::new();
    let mut n = first_n;
    let stop_at = first_n + MAX_PER_ROUND;
    let mut broken = false;
    loop {
        let done_publishing = n >= stop_at;
        if outstanding.len() >= CONFIRM_WINDOW || (done_publishing && !outstanding.is_empty()) {
            let (seq, confirm) = outstanding.pop_front().expect("an outstanding confirm");
            match unless_killed(&mut kill, confirm).await {
                // Not mandatory: never returned.
                Some(Ok(Confirmation::Ack(_))) => log.confirmed.push(seq),
                Some(Ok(Confirmation::Nack(_))) => log.nacked.push(seq),
                Some(Ok(Confirmation::NotRequested)) => {
                    panic!("expected a confirm for p{p}-{seq}, got NotRequested")
                }
                Some(Err(_)) | None => {
                    broken = true;
                    break;
                }
            }
            continue;
        }
        if done_publishing {
            break;
        }
        let body = crash_body(p, n);
        log.sent.push(n);
        n += 1;
        let options = BasicPublishOptions::default();
        let properties = crash_properties(p, n - 1);
        let publish = channel.basic_publish("", &queue, options, &body, properties);
        match unless_killed(&mut kill, publish).await {
            Some(Ok(confirm)) => outstanding.push_back((n - 1, confirm)),
            Some(Err(_)) | None => {
                broken = true;
                break;
            }
        }
    }
    log.next_n = n;
    // Confirms that arrived before the end but were not looked at yet still count (lapin
    // resolves a confirm as Ack only on the broker's basic.ack).
    for (seq, confirm) in outstanding {
        match tokio::time::timeout(Duration::ZERO, confirm).await {
            Ok(Ok(Confirmation::Ack(_))) => log.confirmed.push(seq),
            Ok(Ok(Confirmation::Nack(_))) => log.nacked.push(seq),
            _ => {}
        }
    }
    if !broken {
        // Everything confirmed before the kill: close, unless the kill comes first.
        tokio::select! {
            _ = connection.close(200, "done") => {}
            _ = kill.wait_for(|killed| *killed) => {}
        }
    }
    log
}

/// `future`'s output, or `None` if the broker is killed first.
async fn unless_killed<T>(
    kill: &mut watch::Receiver<bool>,
    future: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        output = future => Some(output),
        _ = kill.wait_for(|killed| *killed) => None,
    }
}

/// A delivery as the test saw it.
#[derive(Debug, Clone, Copy)]
struct Seen {
    p: usize,
    n: u64,
    redelivered: bool,
    /// basic.ack was sent (or attempted) for it.
    acked: bool,
    session: usize,
}

/// Consumes every queue of `queues` on `channel` (tags `session-<session>-<queue>`); their
/// deliveries come in arrival order.
async fn start_consumers(
    channel: &Channel,
    queues: &[String],
    session: usize,
    no_ack: bool,
) -> Deliveries {
    let mut consumers = Vec::new();
    for queue in queues {
        let tag = format!("session-{session}-{queue}");
        consumers.push(start_consumer(channel, queue, &tag, no_ack).await);
    }
    Deliveries::of(consumers)
}

fn record(delivery: &Delivery, acked: bool, session: usize) -> Seen {
    let (p, n) = check_crash_delivery(delivery);
    Seen {
        p,
        n,
        redelivered: delivery.redelivered,
        acked,
        session,
    }
}

/// A consumer running while the publishers publish: takes deliveries from both queues and
/// acks each, up to `limit`, then leaves the rest unacked, until the broker is killed.
async fn consume_during_round(
    url: String,
    queues: Vec<String>,
    session: usize,
    limit: usize,
    mut kill: watch::Receiver<bool>,
    ready: mpsc::UnboundedSender<()>,
) -> Vec<Seen> {
    let connection = connect(&url).await;
    let channel = open_channel(&connection).await;
    qos(&channel, 100).await;
    let mut rx = start_consumers(&channel, &queues, session, false).await;
    let _ = ready.send(());
    let mut log = Vec::new();
    loop {
        let Some(delivery) = unless_killed(&mut kill, rx.recv()).await.flatten() else {
            break;
        };
        let ack = log.len() < limit;
        // Recorded as acked before the ack is sent: it may reach the broker even if the call
        // then fails.
        log.push(record(&delivery, ack, session));
        if ack {
            tokio::select! {
                _ = delivery.ack(BasicAckOptions::default()) => {}
                _ = kill.wait_for(|killed| *killed) => break,
            }
        }
    }
    // Deliveries that arrived but were not looked at yet: delivered, not acked.
    while let Some(delivery) = rx.try_recv() {
        log.push(record(&delivery, false, session));
    }
    log
}

/// Between rounds, with the broker up and no publisher: consumes `want` messages (at most what
/// the queues hold) from both queues with manual ack, acks most of them, leaves some unacked,
/// and closes the channel, so that those and the prefetched ones go back to their queues,
/// marked redelivered.
async fn consume_between_rounds(
    url: &str,
    queues: &[String],
    session: usize,
    want: usize,
    rng: &mut Rng,
) -> Vec<Seen> {
    let connection = connect(url).await;
    let mut ready = 0usize;
    for queue in queues {
        ready += assert_queue_exists(&connection, queue, "a durable queue, after a restart").await
            as usize;
    }
    let want = want.min(ready);
    let channel = open_channel(&connection).await;
    qos(&channel, 200).await;
    let mut rx = start_consumers(&channel, queues, session, false).await;
    let mut log = Vec::new();
    while log.len() < want {
        let delivery = within("a delivery", rx.recv())
            .await
            .unwrap_or_else(|| panic!("expected a delivery, got the consumer closed"));
        let acked = !rng.percent(10);
        log.push(record(&delivery, acked, session));
        if acked {
            ack(&delivery).await;
        }
    }
    // Closing the channel requeues what is unacked; every delivery is in `rx` once close-ok
    // is in (lapin dispatches them in frame order).
    close_channel(&channel).await;
    while let Some(delivery) = rx.try_recv() {
        log.push(record(&delivery, false, session));
    }
    close_quietly(connection).await;
    log
}

/// Consumes everything (no-ack) after the last restart and checks the queues are empty then.
async fn drain_all(url: &str, queues: &[String], session: usize) -> Vec<Seen> {
    let connection = connect(url).await;
    let mut ready = 0usize;
    for queue in queues {
        ready += assert_queue_exists(&connection, queue, "a durable queue, after a restart").await
            as usize;
    }
    let channel = open_channel(&connection).await;
    let mut rx = start_consumers(&channel, queues, session, true).await;
    let mut log = Vec::with_capacity(ready);
    while log.len() < ready {
        let delivery = within("a delivery of the final drain", rx.recv())
            .await
            .unwrap_or_else(|| panic!("expected a delivery, got the consumer closed"));
        log.push(record(&delivery, true, session));
    }
    close_channel(&channel).await;
    while let Some(delivery) = rx.try_recv() {
        log.push(record(&delivery, true, session));
    }
    let channel = open_channel(&connection).await;
    for queue in queues {
        let left = get_all(&channel, queue).await;
        assert!(
            left.is_empty(),
            "expected {queue} empty after consuming the {ready} message(s) it reported, got {} more: {:?}",
            left.len(),
            bodies(&left).iter().take(5).collect::<Vec<_>>()
        );
    }
    close_quietly(connection).await;
    log
}

/// Everything the crash test saw, across rounds. Messages are `(publisher, n)`.
struct CrashHistory {
    /// Per publisher: every n handed to basic.publish.
    sent: Vec<HashSet<u64>>,
    /// Per publisher: every n the broker confirmed with basic.ack.
    confirmed: Vec<HashSet<u64>>,
    nacked: Vec<(usize, u64)>,
    /// Per publisher: where it goes on next round.
    next_n: [u64; PUBLISHERS],
    /// Every delivery, in the order received.
    seen_log: Vec<Seen>,
    /// The latest consuming session (at the end: the drain after the last, clean restart).
    session: usize,
}

impl CrashHistory {
    fn new() -> CrashHistory {
        CrashHistory {
            sent: vec![HashSet::new(); PUBLISHERS],
            confirmed: vec![HashSet::new(); PUBLISHERS],
            nacked: Vec::new(),
            next_n: [0; PUBLISHERS],
            seen_log: Vec::new(),
            session: 0,
        }
    }

    /// Starts a new consuming session and returns its number.
    fn next_session(&mut self) -> usize {
        self.session += 1;
        self.session
    }

    /// Takes in one publisher's share of a round; returns (published, confirmed) in it.
    fn add_publish_round(&mut self, log: PublishRound) -> (usize, usize) {
        let counts = (log.sent.len(), log.confirmed.len());
        self.next_n[log.p] = log.next_n;
        self.sent[log.p].extend(log.sent);
        self.confirmed[log.p].extend(log.confirmed);
        self.nacked
            .extend(log.nacked.into_iter().map(|n| (log.p, n)));
        counts
    }
}

/// The clients of one crash round, every one of them connected.
struct RoundClients {
    publishers: Vec<JoinHandle<PublishRound>>,
    consumer: Option<JoinHandle<Vec<Seen>>>,
    kill: watch::Sender<bool>,
}

impl RoundClients {
    /// Starts the clients of `round`, one publisher each (publisher p publishes to
    /// queues[p % 2]: one queue on each shard), and on odd rounds a consumer that acks while
    /// they publish, so that the kill also lands among acks and deliveries; returns once every
    /// one is connected.
    async fn start(
        url: &str,
        queues: &[String],
        round: usize,
        rng: &mut Rng,
        history: &mut CrashHistory,
    ) -> RoundClients {
        let (kill, kill_rx) = watch::channel(false);
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                tokio::spawn(publish_round(
                    url.to_string(),
                    p,
                    queues[p % queues.len()].clone(),
                    history.next_n[p],
                    kill_rx.clone(),
                    ready_tx.clone(),
                ))
            })
            .collect();
        let consumer = (round % 2 == 1).then(|| {
            let session = history.next_session();
            let limit = rng.range(200, 3_000) as usize;
            tokio::spawn(consume_during_round(
                url.to_string(),
                queues.to_vec(),
                session,
                limit,
                kill_rx.clone(),
                ready_tx.clone(),
            ))
        });
        drop(ready_tx);
        let clients = PUBLISHERS + usize::from(consumer.is_some());
        for _ in 0..clients {
            within("every client of the round connected", ready_rx.recv())
                .await
                .unwrap_or_else(|| panic!("expected every client of round {round} to connect"));
        }
        RoundClients {
            publishers,
            consumer,
            kill,
        }
    }

    /// Tells every client that the broker was killed, waits for them to stop and records what
    /// they saw in `history`; returns (published, confirmed, consumed) in the round.
    async fn finish(self, history: &mut CrashHistory) -> (usize, usize, usize) {
        let _ = self.kill.send(true);
        let (mut sent, mut confirmed) = (0, 0);
        for handle in self.publishers {
            let log = within("the publisher to stop", handle)
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            let (round_sent, round_confirmed) = history.add_publish_round(log);
            sent += round_sent;
            confirmed += round_confirmed;
        }
        let mut consumed = 0;
        if let Some(handle) = self.consumer {
            let log = within("the consumer to stop", handle)
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            consumed = log.len();
            history.seen_log.extend(log);
        }
        (sent, confirmed, consumed)
    }
}

async fn declare_durable_queues(url: &str, queues: &[String]) {
    let connection = connect(url).await;
    let channel = open_channel(&connection).await;
    for queue in queues {
        declare_queue(&channel, queue, durable(), FieldTable::default()).await;
    }
    close_quietly(connection).await;
}

/// One round: publishing (and consuming, on odd rounds) ended by a SIGKILL after a random
/// delay, then a restart; on even rounds a part is consumed (and mostly acked) before the next
/// round.
async fn crash_round(
    broker: &mut RestartableBroker,
    queues: &[String],
    round: usize,
    rng: &mut Rng,
    history: &mut CrashHistory,
) {
    let clients = RoundClients::start(&broker.amqp_url(), queues, round, rng, history).await;
    let delay = rng.range(KILL_DELAY_MS.0, KILL_DELAY_MS.1);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    let status = blocking(|| broker.kill_9());
    let (round_sent, round_confirmed, round_consumed) = clients.finish(history).await;
    eprintln!(
        "round {round}: killed after {delay} ms ({status}): {round_sent} published, {round_confirmed} confirmed, {round_consumed} consumed meanwhile"
    );

    blocking(|| broker.start_again());
    if round.is_multiple_of(2) {
        let session = history.next_session();
        let want = rng.range(100, 2_000) as usize;
        let log = consume_between_rounds(&broker.amqp_url(), queues, session, want, rng).await;
        eprintln!("after round {round}: consumed {} message(s)", log.len());
        history.seen_log.extend(log);
    } else {
        let connection = connect(&broker.amqp_url()).await;
        for queue in queues {
            assert_queue_exists(&connection, queue, "a durable queue, after kill -9").await;
        }
        close_quietly(connection).await;
    }
}

/// A clean restart (on another port), then everything that is left; returns how many
/// messages that was.
async fn final_drain(
    broker: &mut RestartableBroker,
    queues: &[String],
    history: &mut CrashHistory,
) -> usize {
    let status = blocking(|| broker.stop());
    assert!(
        status.success(),
        "expected warren to exit 0 on SIGTERM, got {status}"
    );
    blocking(|| broker.start_again_on_new_port());
    let final_session = history.next_session();
    let drained = drain_all(&broker.amqp_url(), queues, final_session).await;
    let final_count = drained.len();
    history.seen_log.extend(drained);
    final_count
}

#[test]
fn confirmed_persistent_messages_survive_kill_9() {
    run(async {
        let seed = seed();
        eprintln!("confirmed_persistent_messages_survive_kill_9: seed {seed} (replay with {SEED_ENV}={seed})");
        let mut rng = Rng::new(seed);
        // Small segments, so that recovery reads many files and fully acked ones get deleted.
        let Some(mut broker) = start_broker(
            &["--shards", "2", "--segment-size", "1MiB"],
            "confirmed_persistent_messages_survive_kill_9",
        ) else {
            return;
        };
        // One queue on each shard.
        let queues = queue_per_shard("crash", SHARDS);
        declare_durable_queues(&broker.amqp_url(), &queues).await;

        let mut history = CrashHistory::new();
        for round in 0..ROUNDS {
            crash_round(&mut broker, &queues, round, &mut rng, &mut history).await;
        }
        let final_count = final_drain(&mut broker, &queues, &mut history).await;

        verify_crash_history(&history);
        let confirmed_total: usize = history.confirmed.iter().map(HashSet::len).sum();
        let sent_total: usize = history.sent.iter().map(HashSet::len).sum();
        eprintln!(
            "summary: seed {seed}, {ROUNDS} kills, {} broker starts; {sent_total} published, {confirmed_total} confirmed, {} deliveries in all, {final_count} left at the end",
            broker.starts(),
            history.seen_log.len(),
        );
    });
}

/// What the crash test's deliveries say, message by message (a message is `(publisher, n)`).
#[derive(Default)]
struct Replay {
    /// How often each message was delivered.
    deliveries: HashMap<(usize, u64), usize>,
    /// Last delivery before the final drain: was it acked?
    last_acked: HashMap<(usize, u64), bool>,
    /// The messages of the final drain.
    in_final: HashSet<(usize, u64)>,
    /// Per (session, publisher): the n delivered last.
    last_in_session: HashMap<(usize, usize), u64>,
    /// Per publisher: the n delivered for the first time last.
    last_first_seen: HashMap<usize, u64>,
    duplicates: usize,
    acked_then_back: usize,
}

impl Replay {
    /// Goes through `history`'s deliveries in the order they were received, checking each:
    /// only published messages; every delivery after the first flagged redelivered; first
    /// deliveries, and the deliveries of one session, in each publisher's publish order.
    fn of(history: &CrashHistory) -> Replay {
        let mut replay = Replay::default();
        for s in &history.seen_log {
            assert!(
                history.sent[s.p].contains(&s.n),
                "expected only published messages, got p{}-{} which was never published",
                s.p,
                s.n
            );
            replay.see(s, history.session);
        }
        replay
    }

    fn see(&mut self, s: &Seen, final_session: usize) {
        let key = (s.p, s.n);
        let count = self.deliveries.entry(key).or_insert(0);
        *count += 1;
        let count = *count;
        if count > 1 {
            self.duplicates += 1;
            assert!(
                s.redelivered,
                "expected p{}-{} redelivered=true on delivery #{} (session {}), got false",
                s.p, s.n, count, s.session
            );
            if self.last_acked.get(&key) == Some(&true) {
                self.acked_then_back += 1;
            }
        } else if let Some(&last) = self.last_first_seen.get(&s.p) {
            assert!(
                s.n > last,
                "expected publisher {}'s messages first delivered in publish order, got p{}-{} after p{}-{last}",
                s.p,
                s.p,
                s.n,
                s.p
            );
        }
        if count == 1 {
            self.last_first_seen.insert(s.p, s.n);
        }
        if let Some(&last) = self.last_in_session.get(&(s.session, s.p)) {
            assert!(
                s.n > last,
                "expected publisher {}'s messages in publish order within session {}, got p{}-{} after p{}-{last}",
                s.p,
                s.session,
                s.p,
                s.n,
                s.p
            );
        }
        self.last_in_session.insert((s.session, s.p), s.n);
        if s.session == final_session {
            self.in_final.insert(key);
        } else {
            self.last_acked.insert(key, s.acked);
        }
    }

    /// The confirmed messages lost, sorted: a confirmed message must be in the final drain
    /// unless it was acked the last time it was delivered before.
    fn lost(&self, confirmed: &[HashSet<u64>]) -> Vec<(usize, u64)> {
        let mut lost = Vec::new();
        for (p, confirmed) in confirmed.iter().enumerate() {
            for &n in confirmed {
                let key = (p, n);
                if self.last_acked.get(&key) != Some(&true) && !self.in_final.contains(&key) {
                    lost.push(key);
                }
            }
        }
        lost.sort_unstable();
        lost
    }
}

/// Checks the whole history of the crash test: every delivery in the order it was received,
/// `history.session` being the drain after the last (clean) restart.
fn verify_crash_history(history: &CrashHistory) {
    let nacked = &history.nacked;
    assert!(
        nacked.is_empty(),
        "expected no basic.nack, got {} (first: {:?})",
        nacked.len(),
        &nacked[..nacked.len().min(5)]
    );
    let replay = Replay::of(history);
    let lost = replay.lost(&history.confirmed);
    let confirmed = &history.confirmed;
    let confirmed_total: usize = confirmed.iter().map(HashSet::len).sum();
    let unconfirmed_kept = replay
        .in_final
        .iter()
        .filter(|(p, n)| !confirmed[*p].contains(n))
        .count();
    eprintln!(
        "verified: {confirmed_total} confirmed, {} distinct messages delivered, {} consumed at the end ({unconfirmed_kept} of them never confirmed), {} lost, {} duplicate deliveries ({} after an ack lost in a crash)",
        replay.deliveries.len(),
        replay.in_final.len(),
        lost.len(),
        replay.duplicates,
        replay.acked_then_back
    );
    assert!(
        lost.is_empty(),
        "expected no confirmed message lost, got {} lost (first: {:?})",
        lost.len(),
        lost.iter()
            .take(10)
            .map(|(p, n)| format!("p{p}-{n}"))
            .collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------
// 2. Transient messages, non-durable and exclusive queues do not survive
// ---------------------------------------------------------------------------

#[test]
fn transient_messages_and_non_durable_queues_do_not_survive() {
    run(async {
        for kill in [true, false] {
            transient_scenario(kill).await;
        }
    });
}

/// The queues of the survival scenario.
struct SurvivalQueues<'a> {
    /// Durable, on shard 0.
    durable: &'a str,
    /// Not durable, on shard 1.
    transient: &'a str,
    /// Exclusive (and durable): it belongs to the connection that declared it.
    exclusive: &'a str,
}

impl SurvivalQueues<'_> {
    async fn declare(&self, channel: &Channel) {
        declare_queue(channel, self.durable, durable(), FieldTable::default()).await;
        declare_queue(
            channel,
            self.transient,
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
        declare_queue(
            channel,
            self.exclusive,
            QueueDeclareOptions {
                durable: true,
                exclusive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    }

    /// Publishes (confirmed) 10 transient and 10 persistent messages to the durable queue and
    /// 10 persistent ones to each of the others, and checks that each queue holds them;
    /// returns the bodies of the persistent messages in the durable queue, in order.
    async fn publish(&self, connection: &Connection, channel: &Channel) -> Vec<String> {
        let mut persistent = Vec::new();
        for i in 0..10 {
            // Transient: delivery_mode 1, or no delivery_mode at all.
            let transient = if i % 2 == 0 {
                BasicProperties::default().with_delivery_mode(1)
            } else {
                BasicProperties::default()
            };
            let t = format!("transient-{i}");
            publish_confirmed(channel, "", self.durable, true, t.as_bytes(), transient).await;
            let p = format!("persistent-{i}");
            let properties = rich_properties(&p, true);
            publish_confirmed(channel, "", self.durable, true, p.as_bytes(), properties).await;
            persistent.push(p);
            for queue in [self.transient, self.exclusive] {
                let body = format!("in-{queue}-{i}");
                let properties = rich_properties(&body, true);
                let returned =
                    publish_confirmed(channel, "", queue, true, body.as_bytes(), properties).await;
                assert!(
                    !returned,
                    "expected {queue} to take {body}, got it returned"
                );
            }
        }
        for (queue, count) in [
            (self.durable, 20),
            (self.transient, 10),
            (self.exclusive, 10),
        ] {
            assert_eq!(
                assert_queue_exists(connection, queue, "declared").await,
                count
            );
        }
        persistent
    }

    /// After a restart (`how`): only the `persistent` messages are left in the durable queue,
    /// in order with their properties, the other queues are gone, and the durable queue still
    /// works.
    async fn check_after_restart(&self, url: &str, how: &str, persistent: &[String]) {
        let durable_queue = self.durable;
        let connection = connect(url).await;
        let count =
            assert_queue_exists(&connection, durable_queue, &format!("durable, after {how}")).await;
        assert_eq!(
            count, 10,
            "expected only the 10 persistent messages in {durable_queue} after {how}, got {count}"
        );
        let channel = open_channel(&connection).await;
        let got = get_all(&channel, durable_queue).await;
        assert_eq!(
            bodies(&got),
            persistent,
            "expected the persistent messages, in publish order, after {how}"
        );
        for (delivery, tag) in got.iter().zip(persistent) {
            assert_eq!(
                delivery.properties,
                rich_properties(tag, true),
                "expected the properties of {tag} intact after {how}"
            );
        }
        let why = format!("not durable, after {how}");
        assert_queue_gone(&connection, self.transient, &why).await;
        let why = format!("exclusive, its connection ended by {how}");
        assert_queue_gone(&connection, self.exclusive, &why).await;
        // The durable queue still works.
        let channel = confirm_channel(&connection).await;
        let properties = BasicProperties::default();
        publish_confirmed(&channel, "", durable_queue, true, b"after", properties).await;
        assert_eq!(bodies(&get_all(&channel, durable_queue).await), ["after"]);
        close_quietly(connection).await;
    }
}

async fn transient_scenario(kill: bool) {
    let how = if kill { "kill -9" } else { "SIGTERM" };
    let Some(mut broker) = start_broker(
        &SHARD_ARGS,
        "transient_messages_and_non_durable_queues_do_not_survive",
    ) else {
        return;
    };
    // The durable queue on shard 0, the non-durable one on shard 1.
    let names = queue_per_shard("survival", SHARDS);
    let queues = SurvivalQueues {
        durable: &names[0],
        transient: &names[1],
        exclusive: "survival-exclusive",
    };

    let connection = connect(&broker.amqp_url()).await;
    let channel = confirm_channel(&connection).await;
    queues.declare(&channel).await;
    let persistent = queues.publish(&connection, &channel).await;

    // The exclusive queue's connection is still open: the restart ends it.
    if kill {
        blocking(|| broker.restart_after_kill_9());
    } else {
        blocking(|| broker.restart_clean());
    }
    drop(channel);
    drop(connection);

    queues
        .check_after_restart(&broker.amqp_url(), how, &persistent)
        .await;
}

// ---------------------------------------------------------------------------
// 3. Durable topology survives a restart
// ---------------------------------------------------------------------------

/// A publish through the topology and the queues it must reach.
struct Route {
    exchange: &'static str,
    routing_key: &'static str,
    headers: Option<FieldTable>,
    queues: Vec<&'static str>,
}

const Q_DIRECT: &str = "topo-direct";
const Q_TOPIC: &str = "topo-topic";
const Q_FANOUT: &str = "topo-fanout";
const Q_HEADERS: &str = "topo-headers";
const Q_E2E: &str = "topo-e2e";
const Q_TRANSIENT: &str = "topo-transient";
const DURABLE_QUEUES: [&str; 5] = [Q_DIRECT, Q_TOPIC, Q_FANOUT, Q_HEADERS, Q_E2E];
const DURABLE_EXCHANGES: [&str; 6] = [
    "topo.direct",
    "topo.topic",
    "topo.fanout",
    "topo.headers",
    "topo.e2e",
    "topo.extra",
];

/// The routes of the topology test; the flags say what exists at that point.
fn routes(
    transient_queue_alive: bool,
    extra_exchange: bool,
    audit_bound: bool,
    added_bound: bool,
) -> Vec<Route> {
    let route = |exchange, routing_key, headers, queues| Route {
        exchange,
        routing_key,
        headers,
        queues,
    };
    let mut fanout = vec![Q_FANOUT];
    if transient_queue_alive {
        fanout.push(Q_TRANSIENT);
    }
    let report = table(&[
        ("format", long_string("pdf")),
        ("type", long_string("report")),
        ("extra", AMQPValue::LongInt(1)),
    ]);
    let partial = table(&[("format", long_string("pdf"))]);
    // `queue` while `bound`, else nothing.
    let when = |bound: bool, queue| if bound { vec![queue] } else { vec![] };
    let mut routes = vec![
        route("topo.direct", "rk.direct", None, vec![Q_DIRECT]),
        route("topo.direct", "rk.other", None, vec![]),
        route("topo.direct", "rk.added", None, when(added_bound, Q_DIRECT)),
        route("topo.topic", "orders.eu.created", None, vec![Q_TOPIC]),
        route("topo.topic", "orders.eu.deleted", None, vec![]),
        route(
            "topo.topic",
            "billing.audit",
            None,
            when(audit_bound, Q_TOPIC),
        ),
        // topo.topic -> topo.e2e (exchange-to-exchange, "e2e.*") -> Q_E2E ("e2e.key").
        route("topo.topic", "e2e.key", None, vec![Q_E2E]),
        route("topo.topic", "e2e.other", None, vec![]),
        route("topo.fanout", "whatever", None, fanout),
        route("topo.headers", "", Some(report), vec![Q_HEADERS]),
        // x-match all: one of the two headers is missing.
        route("topo.headers", "", Some(partial), vec![]),
    ];
    if extra_exchange {
        routes.push(route("topo.extra", "", None, vec![Q_FANOUT]));
    }
    routes
}

/// Bodies, with their properties, that each queue must hold, in order.
type Expected = HashMap<&'static str, Vec<(String, BasicProperties)>>;

/// Publishes every route (persistent, mandatory, confirmed), checks which ones were returned
/// as unroutable, and returns the bodies each queue must now hold, in order.
async fn publish_routes(channel: &Channel, routes: &[Route], phase: &str) -> Expected {
    let mut expected = Expected::new();
    for (i, route) in routes.iter().enumerate() {
        let tag = format!("{phase}-{i}-{}-{}", route.exchange, route.routing_key);
        let mut properties = rich_properties(&tag, true);
        if let Some(headers) = &route.headers {
            properties = properties.with_headers(headers.clone());
        }
        let returned = publish_confirmed(
            channel,
            route.exchange,
            route.routing_key,
            true,
            tag.as_bytes(),
            properties.clone(),
        )
        .await;
        assert_eq!(
            returned,
            route.queues.is_empty(),
            "expected {tag} {} ({phase})",
            if route.queues.is_empty() {
                "returned as unroutable"
            } else {
                "routed"
            }
        );
        for queue in &route.queues {
            expected
                .entry(queue)
                .or_default()
                .push((tag.clone(), properties.clone()));
        }
    }
    expected
}

/// Checks that every durable queue holds exactly `expected` (in order, properties intact).
async fn assert_queue_contents(connection: &Connection, expected: &Expected, when: &str) {
    let channel = open_channel(connection).await;
    for queue in DURABLE_QUEUES {
        let got = get_all(&channel, queue).await;
        let want = expected.get(queue).cloned().unwrap_or_default();
        assert_eq!(
            bodies(&got),
            want.iter().map(|(tag, _)| tag.clone()).collect::<Vec<_>>(),
            "expected the contents of {queue} {when}"
        );
        for (delivery, (tag, properties)) in got.iter().zip(&want) {
            assert_eq!(
                &delivery.properties, properties,
                "expected the properties of {tag} intact {when}"
            );
        }
    }
    let _ = channel.close(200, "done").await;
}

async fn assert_topology(connection: &Connection, when: &str) {
    for exchange in DURABLE_EXCHANGES {
        assert!(
            exchange_exists(connection, exchange).await,
            "expected durable exchange {exchange} to exist {when}, got 404"
        );
    }
    for queue in DURABLE_QUEUES {
        assert_queue_exists(connection, queue, &format!("durable, {when}")).await;
    }
    assert!(
        !exchange_exists(connection, "topo.transient").await,
        "expected the non-durable exchange topo.transient gone {when}, got it"
    );
    assert_queue_gone(connection, Q_TRANSIENT, &format!("not durable, {when}")).await;
}

/// Declares the topology of the test: the durable exchanges and queues (and one of each that
/// is not durable), bound directly, through an exchange-to-exchange binding and through the
/// non-durable exchange.
async fn declare_topology(channel: &Channel) {
    declare_exchange(channel, "topo.direct", ExchangeKind::Direct, true).await;
    declare_exchange(channel, "topo.topic", ExchangeKind::Topic, true).await;
    declare_exchange(channel, "topo.fanout", ExchangeKind::Fanout, true).await;
    declare_exchange(channel, "topo.headers", ExchangeKind::Headers, true).await;
    declare_exchange(channel, "topo.e2e", ExchangeKind::Direct, true).await;
    declare_exchange(channel, "topo.extra", ExchangeKind::Fanout, true).await;
    declare_exchange(channel, "topo.transient", ExchangeKind::Direct, false).await;
    for queue in DURABLE_QUEUES {
        declare_queue(channel, queue, durable(), FieldTable::default()).await;
    }
    declare_queue(
        channel,
        Q_TRANSIENT,
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await;
    let none = FieldTable::default;
    bind(channel, Q_DIRECT, "topo.direct", "rk.direct", none()).await;
    bind(channel, Q_TOPIC, "topo.topic", "orders.*.created", none()).await;
    bind(channel, Q_TOPIC, "topo.topic", "#.audit", none()).await;
    bind(channel, Q_FANOUT, "topo.fanout", "", none()).await;
    bind(channel, Q_TRANSIENT, "topo.fanout", "", none()).await;
    let x_match_all = table(&[
        ("x-match", long_string("all")),
        ("format", long_string("pdf")),
        ("type", long_string("report")),
    ]);
    bind(channel, Q_HEADERS, "topo.headers", "", x_match_all).await;
    within(
        "exchange.bind-ok",
        channel.exchange_bind(
            "topo.e2e",
            "topo.topic",
            "e2e.*",
            ExchangeBindOptions::default(),
            none(),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("expected exchange.bind-ok, got {e}"));
    bind(channel, Q_E2E, "topo.e2e", "e2e.key", none()).await;
    bind(channel, Q_DIRECT, "topo.transient", "via-transient", none()).await;
    bind(channel, Q_FANOUT, "topo.extra", "", none()).await;
}

/// Changes made after recovery (which must be durable too): unbinds `#.audit`, binds
/// `rk.added`, deletes topo.extra.
async fn change_topology(channel: &Channel) {
    within(
        "queue.unbind-ok",
        channel.queue_unbind(Q_TOPIC, "topo.topic", "#.audit", FieldTable::default()),
    )
    .await
    .unwrap_or_else(|e| panic!("expected queue.unbind-ok, got {e}"));
    bind(
        channel,
        Q_DIRECT,
        "topo.direct",
        "rk.added",
        FieldTable::default(),
    )
    .await;
    within(
        "exchange.delete-ok",
        channel.exchange_delete("topo.extra", ExchangeDeleteOptions::default()),
    )
    .await
    .unwrap_or_else(|e| panic!("expected exchange.delete-ok, got {e}"));
}

/// After the second (clean) restart: topo.extra stays deleted, the other durable exchanges
/// exist, the queues hold what was `pending` and the changed topology routes.
async fn check_after_clean_restart(connection: &Connection, pending: &Expected) {
    assert!(
        !exchange_exists(connection, "topo.extra").await,
        "expected the deleted durable exchange topo.extra gone after a restart, got it"
    );
    for exchange in DURABLE_EXCHANGES.iter().filter(|e| **e != "topo.extra") {
        assert!(
            exchange_exists(connection, exchange).await,
            "expected durable exchange {exchange} to exist after the second restart, got 404"
        );
    }
    assert_queue_contents(
        connection,
        pending,
        "after a clean restart (published before)",
    )
    .await;
    let channel = confirm_channel(connection).await;
    let last = publish_routes(&channel, &routes(false, false, false, true), "last").await;
    assert_queue_contents(connection, &last, "after a clean restart").await;
}

#[test]
fn durable_topology_survives_restart() {
    run(async {
        let Some(mut broker) = start_broker(&SHARD_ARGS, "durable_topology_survives_restart")
        else {
            return;
        };
        let shards: HashSet<usize> = DURABLE_QUEUES
            .iter()
            .map(|q| queue_shard("/", q, SHARDS))
            .collect();
        assert_eq!(shards.len(), SHARDS, "expected the queues on every shard");

        let connection = connect(&broker.amqp_url()).await;
        let channel = confirm_channel(&connection).await;
        declare_topology(&channel).await;
        // Before: messages that stay in the queues across the crash.
        let before_routes = routes(true, true, true, false);
        let mut before = publish_routes(&channel, &before_routes, "before").await;
        // The non-durable queue's copies are not expected back.
        before.remove(Q_TRANSIENT);
        drop(channel);
        drop(connection);

        blocking(|| broker.restart_after_kill_9());

        let connection = connect(&broker.amqp_url()).await;
        assert_topology(&connection, "after kill -9").await;
        assert_queue_contents(&connection, &before, "after kill -9 (published before)").await;
        let after_routes = routes(false, true, true, false);
        let channel = confirm_channel(&connection).await;
        let after = publish_routes(&channel, &after_routes, "after").await;
        assert_queue_contents(&connection, &after, "after kill -9").await;

        change_topology(&channel).await;
        let pending_routes = routes(false, false, false, true);
        let pending = publish_routes(&channel, &pending_routes, "pending").await;
        drop(channel);
        close_quietly(connection).await;

        blocking(|| broker.restart_clean());

        let connection = connect(&broker.amqp_url()).await;
        check_after_clean_restart(&connection, &pending).await;
        close_quietly(connection).await;
    });
}

// ---------------------------------------------------------------------------
// 4. The redelivered flag survives a restart
// ---------------------------------------------------------------------------

async fn get_one(channel: &Channel, queue: &str, no_ack: bool) -> Delivery {
    get(channel, queue, no_ack)
        .await
        .unwrap_or_else(|| panic!("expected a message in {queue}, got basic.get-empty"))
}

#[test]
fn redelivered_state_survives() {
    run(async {
        let Some(mut broker) = start_broker(&[], "redelivered_state_survives") else {
            return;
        };
        let queue = "redelivery";
        let connection = connect(&broker.amqp_url()).await;
        let channel = confirm_channel(&connection).await;
        declare_queue(&channel, queue, durable(), FieldTable::default()).await;
        for m in ["m1", "m2", "m3"] {
            publish_confirmed(
                &channel,
                "",
                queue,
                true,
                m.as_bytes(),
                rich_properties(m, true),
            )
            .await;
        }

        // m1 delivered to a consumer, not acked, channel closed: back with redelivered=true.
        let consumer_channel = open_channel(&connection).await;
        qos(&consumer_channel, 1).await;
        let mut rx = start_consumers(&consumer_channel, &[queue.to_string()], 0, false).await;
        let first = within("a delivery", rx.recv())
            .await
            .unwrap_or_else(|| panic!("expected a delivery, got the consumer closed"));
        assert_eq!(body(&first), "m1", "expected m1 delivered first");
        assert!(
            !first.redelivered,
            "expected m1 first delivered with redelivered=false"
        );
        close_channel(&consumer_channel).await;
        close_quietly(connection).await;

        blocking(|| broker.restart_clean());

        let connection = connect(&broker.amqp_url()).await;
        let channel = open_channel(&connection).await;
        let m1 = get_one(&channel, queue, false).await;
        assert_eq!(body(&m1), "m1", "expected m1 first after a clean restart");
        assert!(
            m1.redelivered,
            "expected m1 (delivered, then requeued) redelivered=true after a clean restart, got false"
        );
        assert_eq!(m1.properties, rich_properties("m1", true));
        m1.ack(BasicAckOptions::default())
            .await
            .unwrap_or_else(|e| panic!("expected basic.ack to be sent, got {e}"));
        // m2 delivered and left unacked while the broker is killed.
        let m2 = get_one(&channel, queue, false).await;
        assert_eq!(body(&m2), "m2");

        blocking(|| broker.restart_after_kill_9());
        drop(channel);
        drop(connection);

        let connection = connect(&broker.amqp_url()).await;
        let channel = open_channel(&connection).await;
        let mut got = get_all(&channel, queue).await;
        // m1's ack may not have reached the disk before the kill: then m1 is back, redelivered.
        if got.first().map(body).as_deref() == Some("m1") {
            assert!(
                got[0].redelivered,
                "expected m1, acked before the kill and back after it, redelivered=true"
            );
            got.remove(0);
        }
        assert_eq!(
            bodies(&got),
            ["m2", "m3"],
            "expected m2 and m3, in order, after kill -9"
        );
        assert!(
            got[0].redelivered,
            "expected m2 (delivered, unacked when the broker was killed) redelivered=true, got false"
        );
        for delivery in &got {
            assert_eq!(
                delivery.properties,
                rich_properties(&body(delivery), true),
                "expected the properties of {} intact",
                body(delivery)
            );
        }
        close_quietly(connection).await;
    });
}
