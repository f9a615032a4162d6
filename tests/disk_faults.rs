//! Disk faults: after any single failed open, write, fsync or unlink, Warren promises nothing
//! that is not on disk, keeps serving, and recovers without a restart.
//!
//! Each test walks every operation of one kind in a scripted workload (declare, bind, publish
//! persistent with confirms, consume and ack, a transaction, paging out and back in, segment
//! roll and delete): run `n` makes the `n`th such operation fail (`WARREN_FS_FAULT`, see
//! `src/io/fs/sim.rs`; EIO, ENOSPC and short writes in turn), until a run in which the
//! workload never reaches an `n`th operation. In every run:
//!
//! - every publish gets `basic.ack` or `basic.nack` (or its connection is closed with an
//!   error), and every message acked or committed is there after a `kill -9` and restart,
//!   once and in order, unless a consumer acked it;
//! - every `-ok` of a durable definition names something that is there after the restart;
//! - pages read back hold the bodies that were published;
//! - once the fault has passed, the broker serves a new connection and confirms a new
//!   durable queue and a persistent message, without a restart.
//!
//! `WARREN_FAULT_STRIDE=k` walks every `k`th operation only (for the slower debug builds).

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use support::broker::{external_port, free_port, Broker};
use support::{queue_per_shard, TempDir};

const ARGS: [&str; 6] = [
    "--shards",
    "2",
    "--segment-size",
    "32KiB",
    "--memory-budget",
    "128KiB",
];
const EXCHANGE: &str = "fault.x";
const PERSISTENT: usize = 24;
const PAGED: usize = 24;
const LIMIT: u64 = 600;
const STEP: Duration = Duration::from_secs(10);

type Outcome<T> = Result<T, String>;

/// What the broker promised during one run.
#[derive(Default, Debug)]
struct Promises {
    queues: Vec<String>,
    exchange: bool,
    bindings: Vec<String>,
    /// Messages confirmed with basic.ack or committed, by body.
    kept: BTreeSet<String>,
    /// Messages a consumer acked (they may come back).
    consumed: BTreeSet<String>,
    /// Everything published (anything else found is wrong).
    published: BTreeSet<String>,
}

async fn step<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, lapin::Error>>,
) -> Outcome<T> {
    match tokio::time::timeout(STEP, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {STEP:?}")),
    }
}

async fn connect(url: &str) -> Outcome<Connection> {
    step(
        "connect",
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

async fn declare(url: &str, queues: &[String], p: &mut Promises) -> Outcome<()> {
    let c = connect(url).await?;
    let ch = step("channel", c.create_channel()).await?;
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    let none = FieldTable::default;
    step(
        "exchange.declare",
        ch.exchange_declare(EXCHANGE, ExchangeKind::Direct, options, none()),
    )
    .await?;
    p.exchange = true;
    for q in queues {
        step("queue.declare", ch.queue_declare(q, durable(), none())).await?;
        p.queues.push(q.clone());
        step(
            "queue.bind",
            ch.queue_bind(q, EXCHANGE, q, QueueBindOptions::default(), none()),
        )
        .await?;
        p.bindings.push(q.clone());
    }
    Ok(())
}

/// Persistent messages, each confirmed before the next (so each is a batch of its own).
async fn publish(url: &str, queues: &[String], p: &mut Promises) -> Outcome<()> {
    let c = connect(url).await?;
    let ch = step("channel", c.create_channel()).await?;
    step("confirm.select", ch.confirm_select(Default::default())).await?;
    for n in 0..PERSISTENT {
        let q = &queues[n % queues.len()];
        let body = format!("{q}:{n:04}");
        p.published.insert(body.clone());
        let options = BasicPublishOptions::default();
        let confirm = step(
            "publish",
            ch.basic_publish(EXCHANGE, q, options, body.as_bytes(), persistent()),
        )
        .await?;
        match step("confirm", confirm).await? {
            Confirmation::Ack(_) => {
                p.kept.insert(body);
            }
            Confirmation::Nack(_) => {}
            other => return Err(format!("expected ack or nack, got {other:?}")),
        }
    }
    Ok(())
}

/// Consumes and acks `count` messages of `queue`.
async fn consume(url: &str, queue: &str, count: usize, p: &mut Promises) -> Outcome<()> {
    let c = connect(url).await?;
    let ch = step("channel", c.create_channel()).await?;
    for _ in 0..count {
        let got = step(
            "basic.get",
            ch.basic_get(queue, BasicGetOptions { no_ack: false }),
        )
        .await?;
        let Some(message) = got else { break };
        p.consumed
            .insert(String::from_utf8_lossy(&message.delivery.data).into_owned());
        step("ack", message.delivery.ack(BasicAckOptions::default())).await?;
    }
    Ok(())
}

async fn transaction(url: &str, queue: &str, p: &mut Promises) -> Outcome<()> {
    let c = connect(url).await?;
    let ch = step("channel", c.create_channel()).await?;
    step("tx.select", ch.tx_select()).await?;
    let mut bodies = Vec::new();
    for n in 0..3 {
        let body = format!("{queue}:tx{n}");
        p.published.insert(body.clone());
        let options = BasicPublishOptions::default();
        step(
            "publish",
            ch.basic_publish(EXCHANGE, queue, options, body.as_bytes(), persistent()),
        )
        .await?;
        bodies.push(body);
    }
    step("tx.commit", ch.tx_commit()).await?;
    p.kept.extend(bodies);
    Ok(())
}

/// Transient messages past the memory budget go to disk and must come back intact.
async fn page_out_and_in(url: &str, queue: &str) -> Outcome<()> {
    let c = connect(url).await?;
    let ch = step("channel", c.create_channel()).await?;
    step(
        "queue.declare",
        ch.queue_declare(queue, QueueDeclareOptions::default(), FieldTable::default()),
    )
    .await?;
    let body = |n: usize| format!("{n:04}").repeat(2048);
    for n in 0..PAGED {
        let options = BasicPublishOptions::default();
        step(
            "publish",
            ch.basic_publish(
                "",
                queue,
                options,
                body(n).as_bytes(),
                BasicProperties::default(),
            ),
        )
        .await?;
    }
    for n in 0..PAGED {
        let got = step(
            "basic.get",
            ch.basic_get(queue, BasicGetOptions { no_ack: true }),
        )
        .await?;
        let Some(message) = got else {
            return Err(format!("paged message {n} missing"));
        };
        if message.delivery.data != body(n).as_bytes() {
            return Err(format!("paged message {n} came back wrong"));
        }
    }
    Ok(())
}

async fn delete(url: &str, queue: &str) -> Outcome<()> {
    let c = connect(url).await?;
    let ch = step("channel", c.create_channel()).await?;
    step(
        "queue.delete",
        ch.queue_delete(queue, QueueDeleteOptions::default()),
    )
    .await?;
    Ok(())
}

/// The scripted workload; each step on its own connection, so one closed by an error does not
/// stop the others. Returns the promises and the errors seen.
async fn workload(url: &str, queues: &[String]) -> (Promises, Vec<String>) {
    let mut p = Promises::default();
    let mut errors = Vec::new();
    let gone = format!("{}-gone", queues[0]);
    let mut all = queues.to_vec();
    all.push(gone.clone());
    let results = [
        declare(url, &all, &mut p).await,
        publish(url, queues, &mut p).await,
        consume(url, &queues[0], 4, &mut p).await,
        transaction(url, &queues[1], &mut p).await,
        page_out_and_in(url, "fault.paged").await,
        delete(url, &gone).await,
        consume(url, &queues[0], PERSISTENT, &mut p).await,
    ];
    errors.extend(results.into_iter().filter_map(Result::err));
    p.queues.retain(|q| *q != gone);
    (p, errors)
}

/// Once the fault has passed, a new connection is served and durability works again.
async fn serves_after_the_fault(url: &str, attempt: u8, p: &mut Promises) -> Outcome<()> {
    let body = format!("fault.after:{attempt}");
    p.published.insert(body.clone());
    let c = connect(url).await?;
    let ch = step("channel", c.create_channel()).await?;
    step(
        "queue.declare",
        ch.queue_declare("fault.after", durable(), FieldTable::default()),
    )
    .await?;
    step("confirm.select", ch.confirm_select(Default::default())).await?;
    let options = BasicPublishOptions::default();
    let confirm = step(
        "publish",
        ch.basic_publish("", "fault.after", options, body.as_bytes(), persistent()),
    )
    .await?;
    match step("confirm", confirm).await? {
        Confirmation::Ack(_) => {}
        other => return Err(format!("expected basic.ack after the fault, got {other:?}")),
    }
    p.queues.push("fault.after".to_string());
    p.kept.insert(body);
    Ok(())
}

/// After a restart: every promise holds.
async fn check(url: &str, p: &Promises) -> Outcome<()> {
    let c = connect(url).await?;
    for q in &p.queues {
        let ch = step("channel", c.create_channel()).await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..durable()
        };
        step(
            &format!("queue {q} (declared with -ok) after restart"),
            ch.queue_declare(q, passive, FieldTable::default()),
        )
        .await?;
        let mut seen = Vec::new();
        while let Some(m) = step(
            "basic.get",
            ch.basic_get(q, BasicGetOptions { no_ack: true }),
        )
        .await?
        {
            seen.push(String::from_utf8_lossy(&m.delivery.data).into_owned());
        }
        check_queue(q, &seen, p)?;
    }
    if p.exchange {
        let ch = step("channel", c.create_channel()).await?;
        let passive = ExchangeDeclareOptions {
            passive: true,
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        step(
            "exchange (declared with -ok) after restart",
            ch.exchange_declare(
                EXCHANGE,
                ExchangeKind::Direct,
                passive,
                FieldTable::default(),
            ),
        )
        .await?;
    }
    Ok(())
}

fn check_queue(q: &str, seen: &[String], p: &Promises) -> Outcome<()> {
    let unique: BTreeSet<&String> = seen.iter().collect();
    if unique.len() != seen.len() {
        return Err(format!("{q} holds duplicates: {seen:?}"));
    }
    if let Some(stray) = seen.iter().find(|b| !p.published.contains(*b)) {
        return Err(format!("{q} holds {stray}, never published"));
    }
    let ordered: Vec<&String> = seen.iter().filter(|b| !b.contains(":tx")).collect();
    if ordered.windows(2).any(|w| w[0] > w[1]) {
        return Err(format!("{q} out of order: {seen:?}"));
    }
    let prefix = format!("{q}:");
    for kept in p.kept.iter().filter(|b| b.starts_with(&prefix)) {
        if !unique.contains(kept) && !p.consumed.contains(kept) {
            return Err(format!("{q} lost {kept}, which was confirmed"));
        }
    }
    Ok(())
}

/// One run with the `n`th operation of `op` failing. None when the workload never reached it.
fn run_with_fault(op: &str, n: u64, queues: &[String]) -> Option<Result<(), String>> {
    let failure = match (op, n % 3) {
        ("write", 0) => "short",
        (_, 1) => "ENOSPC",
        _ => "EIO",
    };
    let dir = TempDir::new("faults");
    let fault = format!("{op}:{n}:{failure}");
    let setup = |c: &mut std::process::Command| {
        c.env("WARREN_FS_FAULT", &fault);
    };
    let mut broker =
        Broker::try_start_on(free_port(), dir.path(), &ARGS, &setup).expect("broker starts");
    let url = broker.amqp_url();
    let mut result = Ok(());
    let mut promises = Promises::default();
    support::run_async(Duration::from_secs(120), async {
        let (p, _errors) = workload(&url, queues).await;
        promises = p;
        // The fault may fall in this last step too: a single fault fails one attempt only.
        result = serves_after_the_fault(&url, 0, &mut promises).await;
        if result.is_err() {
            result = serves_after_the_fault(&url, 1, &mut promises).await;
        }
    });
    let injected = broker.output().contains("injected fault");
    broker.kill_9();
    if !injected {
        return None;
    }
    Some(
        result
            .and_then(|()| restart_and_check(dir.path(), &promises))
            .map_err(|e| format!("{fault}: {e}")),
    )
}

fn restart_and_check(dir: &Path, p: &Promises) -> Result<(), String> {
    let broker = Broker::try_start_on(free_port(), dir, &ARGS, &|_| {})?;
    let url = broker.amqp_url();
    let mut result = Ok(());
    support::run_async(Duration::from_secs(60), async {
        result = check(&url, p).await;
    });
    broker.kill_9();
    result
}

fn stride() -> u64 {
    std::env::var("WARREN_FAULT_STRIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// Walks every operation of kind `op`.
fn walk(op: &str) {
    if external_port().is_some() {
        return;
    }
    let queues = queue_per_shard(&format!("fault-{op}"), 2);
    let mut failures = Vec::new();
    let (mut n, mut hit) = (1, 0);
    while n <= LIMIT {
        match run_with_fault(op, n, &queues) {
            None => break,
            Some(Err(why)) => failures.push(why),
            Some(Ok(())) => {}
        }
        hit += 1;
        n += stride();
    }
    println!(
        "{op}: {hit} fault points walked (every {}th of {})",
        stride(),
        n - 1
    );
    assert!(hit > 0, "expected the workload to reach at least one {op}");
    assert!(
        n <= LIMIT,
        "expected the workload to have fewer than {LIMIT} {op}s"
    );
    assert!(
        failures.is_empty(),
        "expected every {op} fault to be handled, got:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_failed_write_is_handled() {
    walk("write");
}

#[test]
fn every_failed_fsync_is_handled() {
    walk("fsync");
}

#[test]
fn every_failed_open_is_handled() {
    walk("open");
}

#[test]
fn every_failed_unlink_is_handled() {
    walk("unlink");
}
