//! Power cuts: nothing Warren confirmed is lost when the machine loses power.
//!
//! `kill -9` keeps the page cache, so it cannot tell a missing fsync from a present one. Here
//! the broker runs a workload with its file operations journaled (`WARREN_FS_JOURNAL`), and
//! the client notes, for every `-ok` and every publisher confirm, how long the journal was
//! when it arrived. Then, for many random cut points in the journal, a model of the disk
//! (`support::powercut`) keeps what was synced before the cut and, at random, loses or tears
//! what was only written; a fresh broker starts on that disk and must hold every confirmed
//! persistent message (exactly once, in order) and every `-ok`'d durable definition, and must
//! start at all.
//!
//! `WARREN_POWERCUT_POINTS` (default 200) sets the number of cut points,
//! `WARREN_POWERCUT_SEED` replays a run (the seed is printed).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, ExchangeKind};
use support::broker::external_port;
use support::broker::{free_port, Broker};
use support::lapin_client::{
    ack, bind, confirm_channel, connect, declare_queue, durable, get, open_channel,
    publish_for_confirm, within,
};
use support::powercut::{entry_ends, parse, Disk};
use support::{queue_per_shard, TempDir};

const ARGS: [&str; 4] = ["--shards", "2", "--segment-size", "64KiB"];
const MESSAGES: usize = 600;
const WINDOW: usize = 16;
const CONSUMER_ACKS: usize = 120;
const EXCHANGE: &str = "power.x";

/// What the client was told, each with the journal length when it arrived.
#[derive(Default)]
struct Promises {
    queues: Vec<(String, u64)>,
    /// (queue, message number) -> journal length at its confirm.
    confirmed: BTreeMap<(String, usize), u64>,
    /// Messages a consumer acked (they may or may not come back).
    consumed: BTreeSet<(String, usize)>,
    exchange_ok_at: u64,
    bindings: Vec<(String, u64)>,
}

fn journal_len(journal: &Path) -> u64 {
    std::fs::metadata(journal).map(|m| m.len()).unwrap_or(0)
}

fn body_of(queue: &str, n: usize) -> Vec<u8> {
    let mut body = format!("{queue}:{n:05}:").into_bytes();
    body.resize(300, b'.');
    body
}

fn parse_body(body: &[u8]) -> (String, usize) {
    let text = String::from_utf8_lossy(body);
    let mut parts = text.split(':');
    let queue = parts.next().unwrap_or_default().to_string();
    let n = parts.next().and_then(|n| n.parse().ok());
    (
        queue,
        n.unwrap_or_else(|| panic!("expected a numbered body, got {text:?}")),
    )
}

async fn declare_topology(url: &str, queues: &[String], journal: &Path, p: &mut Promises) {
    let connection = connect(url).await;
    let channel = open_channel(&connection).await;
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    within(
        "exchange.declare-ok",
        channel.exchange_declare(
            EXCHANGE,
            ExchangeKind::Direct,
            options,
            FieldTable::default(),
        ),
    )
    .await
    .expect("exchange.declare-ok");
    p.exchange_ok_at = journal_len(journal);
    for queue in queues {
        declare_queue(&channel, queue, durable(), FieldTable::default()).await;
        p.queues.push((queue.clone(), journal_len(journal)));
        bind(&channel, queue, EXCHANGE, queue, FieldTable::default()).await;
        p.bindings.push((queue.clone(), journal_len(journal)));
    }
}

/// Publishes `MESSAGES` persistent messages round robin over `queues`, `WINDOW` in flight.
async fn publish(url: &str, queues: &[String], journal: &Path, p: &mut Promises) {
    let connection = connect(url).await;
    let channel = confirm_channel(&connection).await;
    let persistent = BasicProperties::default().with_delivery_mode(2);
    let mut in_flight = std::collections::VecDeque::new();
    for n in 0..MESSAGES {
        let queue = &queues[n % queues.len()];
        let body = body_of(queue, n);
        let confirm = publish_for_confirm(&channel, EXCHANGE, queue, &body, persistent.clone());
        in_flight.push_back(((queue.clone(), n), confirm.await));
        if in_flight.len() >= WINDOW || n + 1 == MESSAGES {
            while let Some((id, confirm)) = in_flight.pop_front() {
                let confirmation = within("a confirm", confirm).await.expect("a confirm");
                assert!(
                    matches!(confirmation, Confirmation::Ack(None)),
                    "expected basic.ack for {id:?}, got {confirmation:?}"
                );
                p.confirmed.insert(id, journal_len(journal));
            }
        }
    }
}

/// Consumes and acks `CONSUMER_ACKS` messages of `queue`.
async fn consume(url: &str, queue: &str, p: &mut Promises) {
    let connection = connect(url).await;
    let channel = open_channel(&connection).await;
    let mut deliveries = support::lapin_client::consume(&channel, queue, "power-cut", false).await;
    for _ in 0..CONSUMER_ACKS {
        let delivery = deliveries.next("a delivery to ack").await;
        p.consumed.insert(parse_body(&delivery.data));
        ack(&delivery).await;
    }
}

/// Runs the workload on a journaled broker, kills it, returns the promises and the journal.
fn record_run(data: &Path, journal: &Path, queues: &[String]) -> Promises {
    let setup = |c: &mut std::process::Command| {
        c.env("WARREN_FS_JOURNAL", journal);
    };
    let broker = Broker::try_start_on(free_port(), data, &ARGS, &setup).expect("broker starts");
    let url = broker.amqp_url();
    let mut promises = Promises::default();
    support::run_async(Duration::from_secs(120), async {
        declare_topology(&url, queues, journal, &mut promises).await;
        publish(&url, queues, journal, &mut promises).await;
        consume(&url, &queues[0], &mut promises).await;
    });
    broker.kill_9();
    promises
}

/// A tiny xorshift generator, so a seed replays a run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if n == 0 {
            0
        } else {
            (self.0 % n as u64) as usize
        }
    }
}

/// Starts a broker on the cut disk and checks every promise made before `cut`.
fn check_cut(dir: &Path, cut: u64, queues: &[String], p: &Promises) -> Result<(), String> {
    let broker = Broker::try_start_on(free_port(), dir, &ARGS, &|_| {})
        .map_err(|e| format!("the broker refused to start: {e}"))?;
    let url = broker.amqp_url();
    let mut result = Ok(());
    support::run_async(Duration::from_secs(60), async {
        result = check_promises(&url, cut, queues, p).await;
    });
    broker.kill_9();
    result
}

async fn check_promises(
    url: &str,
    cut: u64,
    queues: &[String],
    p: &Promises,
) -> Result<(), String> {
    let connection = connect(url).await;
    for (queue, ok_at) in &p.queues {
        let channel = open_channel(&connection).await;
        let passive = QueueDeclareOptions {
            passive: true,
            ..durable()
        };
        let found = channel
            .queue_declare(queue, passive, FieldTable::default())
            .await;
        if *ok_at <= cut && found.is_err() {
            return Err(format!(
                "queue {queue} was declared (ok at {ok_at}) but is gone"
            ));
        }
    }
    let channel = open_channel(&connection).await;
    for queue in queues {
        check_messages(&channel, queue, cut, p).await?;
    }
    check_bindings(url, cut, p).await
}

/// The queue holds each confirmed, unconsumed message once, in publish order.
async fn check_messages(
    channel: &Channel,
    queue: &str,
    cut: u64,
    p: &Promises,
) -> Result<(), String> {
    if !p.queues.iter().any(|(q, at)| q == queue && *at <= cut) {
        return Ok(());
    }
    let mut seen = Vec::new();
    while let Some(delivery) = get(channel, queue, true).await {
        let (q, n) = parse_body(&delivery.data);
        if q != queue {
            return Err(format!("message {q}:{n} found in {queue}"));
        }
        seen.push(n);
    }
    if let Some(w) = seen.windows(2).find(|w| w[0] >= w[1]) {
        return Err(format!(
            "{queue}: {} then {}: duplicated or out of order",
            w[0], w[1]
        ));
    }
    let seen: BTreeSet<usize> = seen.into_iter().collect();
    for ((q, n), at) in &p.confirmed {
        let gone = !seen.contains(n) && !p.consumed.contains(&(q.clone(), *n));
        if q == queue && *at <= cut && gone {
            return Err(format!("{queue}: message {n} confirmed at {at} is lost"));
        }
    }
    Ok(())
}

/// Each `-ok`'d binding still routes: a mandatory publish is not returned.
async fn check_bindings(url: &str, cut: u64, p: &Promises) -> Result<(), String> {
    let connection = connect(url).await;
    let channel = confirm_channel(&connection).await;
    for (queue, at) in p.bindings.iter().filter(|(_, at)| *at <= cut) {
        let confirm = channel
            .basic_publish(
                EXCHANGE,
                queue,
                lapin::options::BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                b"probe",
                BasicProperties::default(),
            )
            .await
            .map_err(|e| format!("publish probe: {e}"))?;
        match confirm.await {
            Ok(Confirmation::Ack(None)) => {}
            other => {
                return Err(format!(
                    "binding of {queue} (ok at {at}) is gone: {other:?}"
                ))
            }
        }
    }
    Ok(())
}

fn seed() -> u64 {
    std::env::var("WARREN_POWERCUT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            nanos | 1
        })
}

fn points() -> usize {
    std::env::var("WARREN_POWERCUT_POINTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200)
}

#[test]
fn confirmed_messages_and_definitions_survive_random_power_cuts() {
    if external_port().is_some() {
        return;
    }
    let seed = seed();
    println!("power-cut seed {seed} (WARREN_POWERCUT_SEED={seed} replays it)");
    let work = TempDir::new("power-cut");
    let data: PathBuf = work.path().join("data");
    let journal = work.path().join("journal");
    std::fs::create_dir_all(&data).expect("data dir");
    let queues = queue_per_shard("power", 2);
    let promises = record_run(&data, &journal, &queues);
    let bytes = std::fs::read(&journal).expect("the journal");
    let entries = parse(&bytes);
    let ends = entry_ends(&bytes);
    assert!(
        entries.len() > 100,
        "expected a journal of the workload, got {} entries",
        entries.len()
    );
    let mut rng = Rng(seed);
    let mut failures = Vec::new();
    for point in 0..points() {
        let cut_entry = rng.below(entries.len());
        let cut = ends[cut_entry] as u64;
        let disk = Disk::replay(&entries[..=cut_entry]);
        let dir = work.path().join(format!("cut-{point}"));
        disk.materialize(&dir, &mut |n| rng.below(n));
        if let Err(why) = check_cut(&dir, cut, &queues, &promises) {
            failures.push(format!(
                "cut #{point} after entry {cut_entry} (byte {cut}): {why}"
            ));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(
        failures.is_empty(),
        "expected every promise to survive {} power cuts (seed {seed}), got {} failures:\n{}",
        points(),
        failures.len(),
        failures.join("\n")
    );
}
