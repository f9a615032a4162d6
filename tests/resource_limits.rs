//! Resource limits: the memory budget for queued message bodies (`--memory-budget`) and the
//! memory and disk alarms (`--memory-high-watermark`, `--disk-free-limit`).
//!
//! * A backlog many times the budget, persistent messages in a durable queue and transient
//!   ones in a non-durable queue, is taken (publisher confirms), kept while the broker's
//!   resident memory stays under the budget plus a stated margin, and drains completely:
//!   every message exactly once, in order, body intact. basic.get reads paged-out bodies back.
//! * While an alarm is in force, a connection that published gets `connection.blocked` with
//!   RabbitMQ's reason and is no longer read; a connection that never published is never told
//!   and keeps declaring, consuming and getting. The alarm tests speak AMQP on a raw socket
//!   (lapin records connection.blocked without its reason and stops writing while blocked,
//!   which would hide whether the broker still reads), advertising the `connection.blocked`
//!   client capability as RabbitMQ's own clients do.
//!
//! Only generous timeouts depend on time: a wait that ends early makes a check weaker, never
//! fails a correct broker.

mod common;

use std::collections::{BTreeSet, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::Broker;
use lapin::message::{Delivery, DeliveryResult};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::PublisherConfirm;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

const MIB: u64 = 1 << 20;

// ---------------------------------------------------------------------------
// Message bodies: the index in the first 8 bytes, then a pattern derived from the index
// ---------------------------------------------------------------------------

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The `word`-th 8-byte word of message `index`'s body (word 0 is the index itself).
fn pattern_word(index: u64, word: u64) -> u64 {
    if word == 0 {
        index
    } else {
        splitmix64((index << 24) ^ word)
    }
}

/// A `len`-byte body (a multiple of 8) for message `index`.
fn make_body(index: u64, len: usize) -> Vec<u8> {
    assert_eq!(len % 8, 0, "body length must be a multiple of 8");
    let mut body = Vec::with_capacity(len);
    for word in 0..(len / 8) as u64 {
        body.extend_from_slice(&pattern_word(index, word).to_be_bytes());
    }
    body
}

/// Checks that `data` is message `expected`'s `len`-byte body; panics naming the first
/// difference.
fn check_body(queue: &str, expected: u64, data: &[u8], len: usize) {
    assert_eq!(
        data.len(),
        len,
        "expected message {expected} of {queue} to have a {len}-byte body, got {} bytes",
        data.len()
    );
    let index = u64::from_be_bytes(data[..8].try_into().expect("8 bytes"));
    assert_eq!(
        index, expected,
        "expected message {expected} of {queue} next (in publish order), got message {index}"
    );
    for (word, chunk) in data.chunks_exact(8).enumerate() {
        let got = u64::from_be_bytes(chunk.try_into().expect("8 bytes"));
        let want = pattern_word(expected, word as u64);
        assert_eq!(
            got,
            want,
            "expected message {expected} of {queue} intact, got a different word at byte offset {}",
            word * 8
        );
    }
}

// ---------------------------------------------------------------------------
// Resident memory of the broker
// ---------------------------------------------------------------------------

/// VmRSS of `pid` in bytes (0 if the process is gone).
fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

const PHASE_FILL: u8 = 0;
const PHASE_DRAIN: u8 = 1;

/// Samples the broker's resident memory every 10 ms on a thread of its own, keeping the
/// maximum of each phase (fill, drain).
struct RssSampler {
    phase: Arc<AtomicU8>,
    max: Arc<[AtomicU64; 2]>,
    samples: Arc<AtomicU64>,
    running: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let phase = Arc::new(AtomicU8::new(PHASE_FILL));
        let max = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let samples = Arc::new(AtomicU64::new(0));
        let running = Arc::new(AtomicBool::new(true));
        let thread = {
            let (phase, max, samples, running) =
                (phase.clone(), max.clone(), samples.clone(), running.clone());
            thread::spawn(move || {
                while running.load(Ordering::Relaxed) {
                    let rss = rss_bytes(pid);
                    max[phase.load(Ordering::Relaxed) as usize].fetch_max(rss, Ordering::Relaxed);
                    samples.fetch_add(1, Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(10));
                }
            })
        };
        RssSampler {
            phase,
            max,
            samples,
            running,
            thread: Some(thread),
        }
    }

    fn set_phase(&self, phase: u8) {
        self.phase.store(phase, Ordering::Relaxed);
    }

    fn max(&self, phase: u8) -> u64 {
        self.max[phase as usize].load(Ordering::Relaxed)
    }

    fn samples(&self) -> u64 {
        self.samples.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------
// lapin helpers
// ---------------------------------------------------------------------------

fn run<F: std::future::Future<Output = ()>>(timeout: Duration, body: F) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        tokio::time::timeout(timeout, body)
            .await
            .unwrap_or_else(|_| panic!("expected the test to finish within {timeout:?}"));
    });
}

async fn channel(url: &str) -> (Connection, Channel) {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("expected a connection to {url}, got {e}"));
    let channel = connection
        .create_channel()
        .await
        .unwrap_or_else(|e| panic!("expected channel.open-ok, got {e}"));
    (connection, channel)
}

async fn declare(channel: &Channel, queue: &str, durable: bool) {
    let options = QueueDeclareOptions {
        durable,
        ..Default::default()
    };
    channel
        .queue_declare(queue, options, FieldTable::default())
        .await
        .unwrap_or_else(|e| panic!("expected queue.declare-ok for {queue}, got {e}"));
}

/// Ready messages in `queue`, from a passive queue.declare.
async fn message_count(channel: &Channel, queue: &str) -> u32 {
    let options = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue, options, FieldTable::default())
        .await
        .unwrap_or_else(|e| panic!("expected passive queue.declare-ok for {queue}, got {e}"))
        .message_count()
}

async fn expect_ack(queue: &str, index: u64, confirm: PublisherConfirm) {
    let confirmation = confirm
        .await
        .unwrap_or_else(|e| panic!("expected a confirm for message {index} of {queue}, got {e}"));
    assert!(
        confirmation.is_ack(),
        "expected basic.ack for message {index} of {queue}, got {confirmation:?}"
    );
}

/// Publishes messages `0..count` of `body_len` bytes to `queue` through the default exchange
/// in confirm mode, with at most `window` unconfirmed, and waits for every confirm (all must
/// be acks). `delivery_mode` 2 is persistent, 1 transient.
async fn publish_confirmed(
    url: &str,
    queue: &str,
    count: u64,
    body_len: usize,
    delivery_mode: impl Fn(u64) -> u8,
    window: usize,
) {
    let (_connection, channel) = channel(url).await;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap_or_else(|e| panic!("expected confirm.select-ok, got {e}"));
    let mut pending: VecDeque<(u64, PublisherConfirm)> = VecDeque::new();
    for index in 0..count {
        let confirm = channel
            .basic_publish(
                "",
                queue,
                BasicPublishOptions::default(),
                &make_body(index, body_len),
                BasicProperties::default().with_delivery_mode(delivery_mode(index)),
            )
            .await
            .unwrap_or_else(|e| panic!("expected message {index} of {queue} to be sent, got {e}"));
        pending.push_back((index, confirm));
        if pending.len() >= window {
            let (index, confirm) = pending.pop_front().expect("a pending confirm");
            expect_ack(queue, index, confirm).await;
        }
    }
    for (index, confirm) in pending {
        expect_ack(queue, index, confirm).await;
    }
}

/// Consumes `count` messages from `queue` (manual ack, prefetch `prefetch`) and checks that
/// they are messages `0..count` in order, each once, bodies intact, none redelivered; then that
/// the queue is empty and nothing more arrives.
async fn drain_in_order(url: &str, queue: &str, count: u64, body_len: usize, prefetch: u16) {
    let (_connection, channel) = channel(url).await;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .unwrap_or_else(|e| panic!("expected basic.qos-ok, got {e}"));
    let consumer = channel
        .basic_consume(
            queue,
            &format!("drain-{queue}"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("expected basic.consume-ok on {queue}, got {e}"));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Delivery>();
    // The closure runs on lapin's reader, in frame order; the future it returns is not needed.
    consumer.set_delegate(move |delivery: DeliveryResult| {
        if let Ok(Some(delivery)) = delivery {
            let _ = tx.send(delivery);
        }
        async {}
    });
    for expected in 0..count {
        let delivery = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("expected message {expected} of {queue} (of {count}), got nothing in 30 s")
            })
            .unwrap_or_else(|| {
                panic!("expected message {expected} of {queue}, got the consumer closed")
            });
        check_body(queue, expected, &delivery.data, body_len);
        assert!(
            !delivery.redelivered,
            "expected message {expected} of {queue} delivered for the first time, got redelivered"
        );
        delivery
            .ack(BasicAckOptions::default())
            .await
            .unwrap_or_else(|e| panic!("expected to ack message {expected} of {queue}, got {e}"));
    }
    assert_eq!(
        message_count(&channel, queue).await,
        0,
        "expected {queue} empty after {count} messages"
    );
    // Exactly once: nothing after the last message (a short wait can only miss a duplicate).
    if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        let index = u64::from_be_bytes(extra.data[..8].try_into().expect("8 bytes"));
        panic!("expected nothing after {count} messages of {queue}, got message {index} again");
    }
}

// ---------------------------------------------------------------------------
// Memory budget
// ---------------------------------------------------------------------------

const BUDGET_MIB: u64 = 32;
/// Allowed above the budget: the broker's baseline (code, the shard's runtime, rings and io_uring
/// buffers, measured before the fill), socket read buffers and frames in flight (up to
/// `CONFIRM_WINDOW` unconfirmed 256 KiB messages per publisher), the store's write batches and
/// page-in reads, deliveries in flight to the consumers (prefetch 50 x 256 KiB per queue = 12.5
/// MiB each) and what the allocator has not yet handed back while churning through bodies at
/// hundreds of MB/s (freed memory goes back to the OS only every 125 ms). Measured on a 2-core
/// VM in release mode: baseline 10-12 MiB, max 120-158 MiB filling, 116-150 MiB draining (also
/// with both cores kept busy by other processes), about 80 MiB at rest after the fill. Without
/// paging (a 4 GiB budget) the broker holds about 500 MiB once filled.
const MARGIN_MIB: u64 = 160;
const BIG_BODY: usize = 256 * 1024;
/// 800 + 800 messages of 256 KiB: 400 MiB, 12.5 times the budget.
const DURABLE_MESSAGES: u64 = 800;
const TRANSIENT_MESSAGES: u64 = 800;
const CONFIRM_WINDOW: usize = 16;
const PREFETCH: u16 = 50;

#[test]
fn a_backlog_past_the_memory_budget_drains_completely_within_budget() {
    let budget = format!("{BUDGET_MIB}MiB");
    let broker = Broker::start(&["--shards", "1", "--memory-budget", &budget]);
    let Some(pid) = broker.pid() else {
        return; // an external broker: neither its budget nor its memory is ours to measure
    };
    let url = broker.amqp_url();
    let limit = (BUDGET_MIB + MARGIN_MIB) * MIB;
    let baseline = rss_bytes(pid);
    let sampler = RssSampler::start(pid);
    let (durable_q, transient_q) = ("budget-durable", "budget-transient");
    let started = Instant::now();

    run(Duration::from_secs(180), async {
        let (_connection, ch) = channel(&url).await;
        declare(&ch, durable_q, true).await;
        declare(&ch, transient_q, false).await;

        // Fill both queues at once, no consumer: persistent messages into the durable queue,
        // transient ones into the non-durable queue.
        tokio::join!(
            publish_confirmed(
                &url,
                durable_q,
                DURABLE_MESSAGES,
                BIG_BODY,
                |_| 2,
                CONFIRM_WINDOW
            ),
            publish_confirmed(
                &url,
                transient_q,
                TRANSIENT_MESSAGES,
                BIG_BODY,
                |_| 1,
                CONFIRM_WINDOW
            ),
        );
        assert_eq!(
            message_count(&ch, durable_q).await,
            DURABLE_MESSAGES as u32,
            "expected every confirmed message waiting in {durable_q}"
        );
        assert_eq!(
            message_count(&ch, transient_q).await,
            TRANSIENT_MESSAGES as u32,
            "expected every confirmed message waiting in {transient_q}"
        );
        let filled = started.elapsed();
        // Let the sampler see the filled broker at rest too.
        tokio::time::sleep(Duration::from_millis(300)).await;
        sampler.set_phase(PHASE_DRAIN);
        let fill_max = sampler.max(PHASE_FILL);
        eprintln!(
            "fill: {} MiB queued in {filled:.1?}; broker RSS baseline {} MiB, max {} MiB \
             (budget {BUDGET_MIB} MiB + margin {MARGIN_MIB} MiB = {} MiB)",
            (DURABLE_MESSAGES + TRANSIENT_MESSAGES) * BIG_BODY as u64 / MIB,
            baseline / MIB,
            fill_max / MIB,
            limit / MIB
        );
        assert!(
            fill_max < limit,
            "expected the broker's resident memory under {} MiB while 400 MiB queued, got {} MiB",
            limit / MIB,
            fill_max / MIB
        );

        // Drain both at once, in order, each message once, bodies intact.
        let drain_started = Instant::now();
        tokio::join!(
            drain_in_order(&url, durable_q, DURABLE_MESSAGES, BIG_BODY, PREFETCH),
            drain_in_order(&url, transient_q, TRANSIENT_MESSAGES, BIG_BODY, PREFETCH),
        );
        eprintln!("drain: both queues in {:.1?}", drain_started.elapsed());
    });

    let drain_max = sampler.max(PHASE_DRAIN);
    let samples = sampler.samples();
    drop(sampler);
    eprintln!(
        "drain: broker RSS max {} MiB; {samples} samples; total {:.1?}",
        drain_max / MIB,
        started.elapsed()
    );
    assert!(
        samples > 10,
        "expected RSS samples throughout, got {samples}"
    );
    assert!(
        drain_max < limit,
        "expected the broker's resident memory under {} MiB while draining 400 MiB, got {} MiB",
        limit / MIB,
        drain_max / MIB
    );
}

#[test]
fn basic_get_reads_paged_bodies_back() {
    const COUNT: u64 = 200;
    const BODY: usize = 64 * 1024;
    let broker = Broker::start(&["--shards", "1", "--memory-budget", "1MiB"]);
    let url = broker.amqp_url();
    let queue = broker.queue_name("budget-get");
    run(Duration::from_secs(60), async {
        let (_connection, ch) = channel(&url).await;
        declare(&ch, &queue, true).await;
        // 12.5 MiB, persistent and transient alternating, against a 1 MiB budget.
        publish_confirmed(&url, &queue, COUNT, BODY, |i| 1 + (i % 2) as u8, 16).await;
        assert_eq!(message_count(&ch, &queue).await, COUNT as u32);
        for expected in 0..COUNT {
            let got = ch
                .basic_get(&queue, BasicGetOptions { no_ack: false })
                .await
                .unwrap_or_else(|e| panic!("expected basic.get on {queue} to succeed, got {e}"))
                .unwrap_or_else(|| {
                    panic!("expected message {expected} of {queue}, got basic.get-empty")
                });
            check_body(&queue, expected, &got.delivery.data, BODY);
            assert_eq!(
                u64::from(got.message_count),
                COUNT - expected - 1,
                "expected get-ok for message {expected} to count the messages left behind it"
            );
            got.delivery
                .ack(BasicAckOptions::default())
                .await
                .unwrap_or_else(|e| panic!("expected to ack message {expected}, got {e}"));
        }
        let empty = ch
            .basic_get(&queue, BasicGetOptions { no_ack: true })
            .await
            .unwrap_or_else(|e| panic!("expected basic.get on {queue} to succeed, got {e}"));
        assert!(
            empty.is_none(),
            "expected basic.get-empty after {COUNT} messages, got another message"
        );
    });
}

// ---------------------------------------------------------------------------
// A raw AMQP 0-9-1 client that advertises the connection.blocked capability
// ---------------------------------------------------------------------------

const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_HEARTBEAT: u8 = 8;
const FRAME_END: u8 = 0xCE;
const FRAME_MAX: u32 = 131_072;
/// How long a reply the test waits for may take.
const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

const CONNECTION_START: (u16, u16) = (10, 10);
const CONNECTION_START_OK: (u16, u16) = (10, 11);
const CONNECTION_TUNE: (u16, u16) = (10, 30);
const CONNECTION_TUNE_OK: (u16, u16) = (10, 31);
const CONNECTION_OPEN: (u16, u16) = (10, 40);
const CONNECTION_OPEN_OK: (u16, u16) = (10, 41);
const CONNECTION_CLOSE: (u16, u16) = (10, 50);
const CONNECTION_BLOCKED: (u16, u16) = (10, 60);
const CONNECTION_UNBLOCKED: (u16, u16) = (10, 61);
const CHANNEL_OPEN: (u16, u16) = (20, 10);
const CHANNEL_OPEN_OK: (u16, u16) = (20, 11);
const CHANNEL_CLOSE: (u16, u16) = (20, 40);
const QUEUE_DECLARE: (u16, u16) = (50, 10);
const QUEUE_DECLARE_OK: (u16, u16) = (50, 11);
const BASIC_CONSUME: (u16, u16) = (60, 20);
const BASIC_CONSUME_OK: (u16, u16) = (60, 21);
const BASIC_PUBLISH: (u16, u16) = (60, 40);
const BASIC_RETURN: (u16, u16) = (60, 50);
const BASIC_DELIVER: (u16, u16) = (60, 60);
const BASIC_GET: (u16, u16) = (60, 70);
const BASIC_GET_OK: (u16, u16) = (60, 71);
const BASIC_GET_EMPTY: (u16, u16) = (60, 72);
const BASIC_ACK: (u16, u16) = (60, 80);
const BASIC_NACK: (u16, u16) = (60, 120);
const CONFIRM_SELECT: (u16, u16) = (85, 10);
const CONFIRM_SELECT_OK: (u16, u16) = (85, 11);

fn method_name(id: (u16, u16)) -> String {
    let name = match id {
        CONNECTION_START => "connection.start",
        CONNECTION_TUNE => "connection.tune",
        CONNECTION_OPEN_OK => "connection.open-ok",
        CONNECTION_CLOSE => "connection.close",
        CONNECTION_BLOCKED => "connection.blocked",
        CONNECTION_UNBLOCKED => "connection.unblocked",
        CHANNEL_OPEN_OK => "channel.open-ok",
        CHANNEL_CLOSE => "channel.close",
        QUEUE_DECLARE_OK => "queue.declare-ok",
        BASIC_CONSUME_OK => "basic.consume-ok",
        BASIC_RETURN => "basic.return",
        BASIC_DELIVER => "basic.deliver",
        BASIC_GET_OK => "basic.get-ok",
        BASIC_GET_EMPTY => "basic.get-empty",
        BASIC_ACK => "basic.ack",
        BASIC_NACK => "basic.nack",
        CONFIRM_SELECT_OK => "confirm.select-ok",
        (class, method) => return format!("method {class}.{method}"),
    };
    name.to_string()
}

fn short_str(out: &mut Vec<u8>, s: &str) {
    assert!(s.len() < 256, "short string too long: {s:?}");
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

fn long_str(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn frame(frame_type: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.push(frame_type);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.push(FRAME_END);
    out
}

fn method_frame(channel: u16, id: (u16, u16), args: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(args.len() + 4);
    payload.extend_from_slice(&id.0.to_be_bytes());
    payload.extend_from_slice(&id.1.to_be_bytes());
    payload.extend_from_slice(args);
    frame(FRAME_METHOD, channel, &payload)
}

/// basic.publish to `queue` through the default exchange, no properties, one body frame.
fn publish_frames(channel: u16, queue: &str, body: &[u8]) -> Vec<u8> {
    let mut args = vec![0, 0];
    short_str(&mut args, "");
    short_str(&mut args, queue);
    args.push(0); // not mandatory, not immediate
    let mut header = Vec::new();
    header.extend_from_slice(&60u16.to_be_bytes());
    header.extend_from_slice(&0u16.to_be_bytes());
    header.extend_from_slice(&(body.len() as u64).to_be_bytes());
    header.extend_from_slice(&0u16.to_be_bytes());
    let mut out = method_frame(channel, BASIC_PUBLISH, &args);
    out.extend(frame(FRAME_HEADER, channel, &header));
    out.extend(frame(FRAME_BODY, channel, body));
    out
}

/// A method the broker sent, with the body of its content if it carries one.
struct Incoming {
    channel: u16,
    id: (u16, u16),
    args: Vec<u8>,
    body: Option<Vec<u8>>,
}

impl Incoming {
    fn describe(&self) -> String {
        let mut out = format!("{} on channel {}", method_name(self.id), self.channel);
        if matches!(self.id, CONNECTION_CLOSE | CHANNEL_CLOSE) && self.args.len() >= 3 {
            let code = u16::from_be_bytes([self.args[0], self.args[1]]);
            let n = self.args[2] as usize;
            let text = String::from_utf8_lossy(&self.args[3..(3 + n).min(self.args.len())]);
            out.push_str(&format!(" ({code} {text})"));
        }
        if let Some(body) = &self.body {
            out.push_str(&format!(" with body {:?}", String::from_utf8_lossy(body)));
        }
        out
    }

    /// The first argument as a short string (connection.blocked's reason, a consumer tag, a
    /// queue name).
    fn first_short_str(&self) -> String {
        let n = *self.args.first().expect("a short string argument") as usize;
        String::from_utf8_lossy(&self.args[1..1 + n]).into_owned()
    }

    /// (delivery tag, multiple) of basic.ack or basic.nack.
    fn ack(&self) -> (u64, bool) {
        let tag = u64::from_be_bytes(self.args[..8].try_into().expect("8 bytes"));
        (tag, self.args[8] & 1 == 1)
    }

    /// Delivery tag of basic.deliver (after the consumer tag) or basic.get-ok.
    fn delivery_tag(&self) -> u64 {
        let at = if self.id == BASIC_DELIVER {
            1 + self.args[0] as usize
        } else {
            0
        };
        u64::from_be_bytes(self.args[at..at + 8].try_into().expect("8 bytes"))
    }

    fn body_text(&self) -> String {
        String::from_utf8_lossy(self.body.as_deref().unwrap_or_default()).into_owned()
    }
}

enum RecvError {
    /// Nothing within the wait.
    Quiet,
    /// The socket closed or failed, or the bytes made no sense.
    Broken(String),
}

impl std::fmt::Display for RecvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecvError::Quiet => write!(f, "nothing"),
            RecvError::Broken(why) => write!(f, "{why}"),
        }
    }
}

struct RawClient {
    name: &'static str,
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    /// Connects as guest/guest to vhost `/`, advertising (like RabbitMQ's own clients) the
    /// `connection.blocked` capability besides publisher confirms. Checks that the broker
    /// advertises `connection.blocked` too.
    fn connect(port: u16, name: &'static str) -> RawClient {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("expected {name} to connect to 127.0.0.1:{port}, got {e}"));
        stream
            .set_write_timeout(Some(REPLY_TIMEOUT))
            .expect("set_write_timeout");
        let _ = stream.set_nodelay(true);
        let mut client = RawClient {
            name,
            stream,
            buf: Vec::new(),
        };
        client.write(b"AMQP\x00\x00\x09\x01");
        let start = client.expect(0, CONNECTION_START);
        let advertised = b"\x12connection.blockedt\x01";
        assert!(
            start
                .args
                .windows(advertised.len())
                .any(|w| w == advertised),
            "expected connection.start to advertise the connection.blocked capability, got none"
        );

        let mut capabilities = Vec::new();
        for key in ["connection.blocked", "publisher_confirms", "basic.nack"] {
            short_str(&mut capabilities, key);
            capabilities.extend_from_slice(b"t\x01");
        }
        let mut properties = Vec::new();
        short_str(&mut properties, "product");
        properties.push(b'S');
        long_str(&mut properties, b"warren resource_limits test client");
        short_str(&mut properties, "capabilities");
        properties.push(b'F');
        long_str(&mut properties, &capabilities);
        let mut start_ok = Vec::new();
        long_str(&mut start_ok, &properties);
        short_str(&mut start_ok, "PLAIN");
        long_str(&mut start_ok, b"\0guest\0guest");
        short_str(&mut start_ok, "en_US");
        client.send(0, CONNECTION_START_OK, &start_ok);

        let tune = client.expect(0, CONNECTION_TUNE);
        let channel_max = u16::from_be_bytes([tune.args[0], tune.args[1]]);
        let frame_max = u32::from_be_bytes(tune.args[2..6].try_into().expect("4 bytes"));
        let frame_max = if frame_max == 0 {
            FRAME_MAX
        } else {
            frame_max.min(FRAME_MAX)
        };
        let mut tune_ok = Vec::new();
        tune_ok.extend_from_slice(&channel_max.to_be_bytes());
        tune_ok.extend_from_slice(&frame_max.to_be_bytes());
        tune_ok.extend_from_slice(&0u16.to_be_bytes()); // no heartbeats
        client.send(0, CONNECTION_TUNE_OK, &tune_ok);
        let mut open = Vec::new();
        short_str(&mut open, "/");
        short_str(&mut open, "");
        open.push(0);
        client.send(0, CONNECTION_OPEN, &open);
        client.expect(0, CONNECTION_OPEN_OK);
        client
    }

    fn write(&mut self, bytes: &[u8]) {
        let name = self.name;
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("expected {name} to write to the broker, got {e}"));
    }

    fn send(&mut self, channel: u16, id: (u16, u16), args: &[u8]) {
        self.write(&method_frame(channel, id, args));
    }

    /// The next frame (heartbeats skipped) as (type, channel, payload), waiting until
    /// `deadline`.
    fn read_frame(&mut self, deadline: Instant) -> Result<(u8, u16, Vec<u8>), RecvError> {
        loop {
            if self.buf.len() >= 7 {
                let size = u32::from_be_bytes(self.buf[3..7].try_into().expect("4 bytes")) as usize;
                if self.buf.len() >= size + 8 {
                    let frame_type = self.buf[0];
                    let channel = u16::from_be_bytes([self.buf[1], self.buf[2]]);
                    let payload = self.buf[7..7 + size].to_vec();
                    let end = self.buf[7 + size];
                    self.buf.drain(..size + 8);
                    if end != FRAME_END {
                        return Err(RecvError::Broken(format!("a frame ending {end:#x}")));
                    }
                    if frame_type == FRAME_HEARTBEAT {
                        continue;
                    }
                    return Ok((frame_type, channel, payload));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvError::Quiet);
            }
            self.stream
                .set_read_timeout(Some(left))
                .expect("set_read_timeout");
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(RecvError::Broken("the broker closed the socket".into())),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(RecvError::Quiet)
                }
                Err(e) => return Err(RecvError::Broken(format!("a read error: {e}"))),
            }
        }
    }

    /// The next method (with its content's body) within `wait`.
    fn recv(&mut self, wait: Duration) -> Result<Incoming, RecvError> {
        let deadline = Instant::now() + wait;
        let (frame_type, channel, payload) = self.read_frame(deadline)?;
        if frame_type != FRAME_METHOD || payload.len() < 4 {
            return Err(RecvError::Broken(format!(
                "a method frame, got frame type {frame_type}"
            )));
        }
        let id = (
            u16::from_be_bytes([payload[0], payload[1]]),
            u16::from_be_bytes([payload[2], payload[3]]),
        );
        let args = payload[4..].to_vec();
        let body = if matches!(id, BASIC_DELIVER | BASIC_GET_OK | BASIC_RETURN) {
            // The rest of the content follows at once: allow the full reply time for it.
            let deadline = Instant::now() + REPLY_TIMEOUT;
            let (header_type, _, header) = self.read_frame(deadline)?;
            if header_type != FRAME_HEADER || header.len() < 12 {
                return Err(RecvError::Broken(format!(
                    "a content header, got frame type {header_type}"
                )));
            }
            let size = u64::from_be_bytes(header[4..12].try_into().expect("8 bytes")) as usize;
            let mut body = Vec::with_capacity(size);
            while body.len() < size {
                let (body_type, _, chunk) = self.read_frame(deadline)?;
                if body_type != FRAME_BODY {
                    return Err(RecvError::Broken(format!(
                        "a body frame, got frame type {body_type}"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Some(body)
        } else {
            None
        };
        Ok(Incoming {
            channel,
            id,
            args,
            body,
        })
    }

    /// The next method, which must be `id` on `channel`.
    fn expect(&mut self, channel: u16, id: (u16, u16)) -> Incoming {
        let name = self.name;
        match self.recv(REPLY_TIMEOUT) {
            Ok(m) if m.channel == channel && m.id == id => m,
            Ok(m) => panic!(
                "expected {name} to get {} on channel {channel}, got {}",
                method_name(id),
                m.describe()
            ),
            Err(e) => panic!(
                "expected {name} to get {} on channel {channel} within {REPLY_TIMEOUT:?}, got {e}",
                method_name(id)
            ),
        }
    }

    /// Asserts that nothing arrives within `quiet` (a short wait can only miss something).
    fn expect_nothing(&mut self, quiet: Duration, why: &str) {
        let name = self.name;
        match self.recv(quiet) {
            Err(RecvError::Quiet) => {}
            Ok(m) => panic!("expected nothing for {name} ({why}), got {}", m.describe()),
            Err(e) => panic!("expected nothing for {name} ({why}), got {e}"),
        }
    }

    fn open_channel(&mut self, channel: u16) {
        self.send(channel, CHANNEL_OPEN, &[0]);
        self.expect(channel, CHANNEL_OPEN_OK);
    }

    fn queue_declare_frame(channel: u16, queue: &str, passive: bool) -> Vec<u8> {
        let mut args = vec![0, 0];
        short_str(&mut args, queue);
        args.push(u8::from(passive));
        long_str(&mut args, &[]);
        method_frame(channel, QUEUE_DECLARE, &args)
    }

    /// queue.declare (passive or not; never durable); returns the message count.
    fn queue_declare(&mut self, channel: u16, queue: &str, passive: bool) -> u32 {
        let bytes = RawClient::queue_declare_frame(channel, queue, passive);
        self.write(&bytes);
        let ok = self.expect(channel, QUEUE_DECLARE_OK);
        let n = ok.args[0] as usize;
        u32::from_be_bytes(ok.args[1 + n..5 + n].try_into().expect("4 bytes"))
    }

    fn confirm_select(&mut self, channel: u16) {
        self.send(channel, CONFIRM_SELECT, &[0]);
        self.expect(channel, CONFIRM_SELECT_OK);
    }

    /// basic.consume with manual acks and a server-named tag; returns the tag.
    fn consume(&mut self, channel: u16, queue: &str) -> String {
        let mut args = vec![0, 0];
        short_str(&mut args, queue);
        short_str(&mut args, "");
        args.push(0);
        long_str(&mut args, &[]);
        self.send(channel, BASIC_CONSUME, &args);
        self.expect(channel, BASIC_CONSUME_OK).first_short_str()
    }

    /// basic.get with manual ack: the message, or None on get-empty.
    fn get(&mut self, channel: u16, queue: &str) -> Option<Incoming> {
        let mut args = vec![0, 0];
        short_str(&mut args, queue);
        args.push(0);
        self.send(channel, BASIC_GET, &args);
        let name = self.name;
        match self.recv(REPLY_TIMEOUT) {
            Ok(m) if m.channel == channel && m.id == BASIC_GET_OK => Some(m),
            Ok(m) if m.channel == channel && m.id == BASIC_GET_EMPTY => None,
            Ok(m) => panic!(
                "expected {name} to get basic.get-ok or get-empty, got {}",
                m.describe()
            ),
            Err(e) => panic!("expected {name} to get basic.get-ok or get-empty, got {e}"),
        }
    }

    fn ack(&mut self, channel: u16, delivery_tag: u64) {
        let mut args = delivery_tag.to_be_bytes().to_vec();
        args.push(0);
        self.send(channel, BASIC_ACK, &args);
    }
}

// ---------------------------------------------------------------------------
// Alarms
// ---------------------------------------------------------------------------

/// Messages the publisher writes in one go before it is blocked; the broker may take any
/// prefix of them (it processes what it has read, as RabbitMQ does), possibly none.
const FIRST_BATCH: usize = 5;
/// Publishes written after connection.blocked arrived; none of them may be taken.
const LATER_PUBLISHES: usize = 10;

/// Records basic.ack (single or multiple) for tags `1..=FIRST_BATCH` of channel 1.
fn record_confirm(acked: &mut BTreeSet<u64>, m: &Incoming, name: &str) -> bool {
    if m.channel != 1 || m.id != BASIC_ACK {
        return false;
    }
    let (tag, multiple) = m.ack();
    assert!(
        (1..=FIRST_BATCH as u64).contains(&tag),
        "expected {name}'s confirms to cover only the {FIRST_BATCH} messages published before \
         connection.blocked, got basic.ack for delivery tag {tag}"
    );
    if multiple {
        acked.extend(1..=tag);
    } else {
        acked.insert(tag);
    }
    true
}

/// With an alarm in force from the start (`args`): a connection that publishes gets
/// connection.blocked with `reason` and is not read any more, while a connection that never
/// publishes is never told and keeps declaring, consuming and getting.
fn alarm_blocks_publishers_only(args: &[&str], reason: &str) {
    let broker = Broker::start(args);
    if broker.is_external() {
        return; // the alarm cannot be forced on an external broker
    }
    let port = broker.port();
    let queue = "alarm-q";

    // The observer never publishes.
    let mut observer = RawClient::connect(port, "the observer (never publishes)");
    observer.open_channel(1);
    assert_eq!(observer.queue_declare(1, queue, false), 0);

    // The publisher writes a first batch in one go and must then be told it is blocked.
    let mut publisher = RawClient::connect(port, "the publisher");
    publisher.open_channel(1);
    publisher.confirm_select(1);
    let mut batch = Vec::new();
    for i in 0..FIRST_BATCH {
        batch.extend(publish_frames(1, queue, format!("first-{i}").as_bytes()));
    }
    publisher.write(&batch);
    let mut acked = BTreeSet::new();
    loop {
        let m = publisher.recv(REPLY_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "expected the publisher to get connection.blocked ({reason:?}) within \
                 {REPLY_TIMEOUT:?} of publishing, got {e}"
            )
        });
        if record_confirm(&mut acked, &m, "the publisher") {
            continue;
        }
        assert_eq!(
            (m.channel, m.id),
            (0, CONNECTION_BLOCKED),
            "expected the publisher to get connection.blocked ({reason:?}), got {}",
            m.describe()
        );
        assert_eq!(
            m.first_short_str(),
            reason,
            "expected connection.blocked's reason to be RabbitMQ's"
        );
        break;
    }

    // Now the publisher is not read: neither its publishes nor a passive declare get anywhere.
    let mut later = Vec::new();
    for i in 0..LATER_PUBLISHES {
        later.extend(publish_frames(1, queue, format!("later-{i}").as_bytes()));
    }
    later.extend(RawClient::queue_declare_frame(1, queue, true));
    publisher.write(&later);
    let quiet_until = Instant::now() + Duration::from_secs(1);
    loop {
        let left = quiet_until.saturating_duration_since(Instant::now());
        match publisher.recv(left) {
            Err(RecvError::Quiet) => break,
            Err(e) => panic!("expected the blocked publisher's connection to stay open, got {e}"),
            // A late confirm for the first batch is fine; anything else means it was read.
            Ok(m) if record_confirm(&mut acked, &m, "the publisher") => {}
            Ok(m) => panic!(
                "expected the blocked publisher not to be read (no reply to its passive \
                 queue.declare, no confirms for later publishes), got {}",
                m.describe()
            ),
        }
    }

    // The observer still declares (a new queue, and passively the publisher's queue): what
    // the publisher got in is a prefix of the first batch, including every confirmed message.
    assert_eq!(observer.queue_declare(1, "alarm-observer-q", false), 0);
    let depth = observer.queue_declare(1, queue, true) as usize;
    assert!(
        depth <= FIRST_BATCH,
        "expected at most the {FIRST_BATCH} messages published before connection.blocked in \
         {queue}, got {depth} messages"
    );
    assert!(
        depth >= acked.len(),
        "expected the {} confirmed messages in {queue}, got {depth} messages",
        acked.len()
    );

    // The observer consumes on another channel: it gets those messages, in order, and none of
    // those published after connection.blocked.
    observer.open_channel(2);
    let tag = observer.consume(2, queue);
    let mut delivered = Vec::new();
    loop {
        // Wait in full for the messages the queue reported; after them, briefly for a surplus.
        let wait = if delivered.len() < depth {
            REPLY_TIMEOUT
        } else {
            Duration::from_millis(500)
        };
        match observer.recv(wait) {
            Ok(m) if m.channel == 2 && m.id == BASIC_DELIVER => {
                assert_eq!(m.first_short_str(), tag, "expected our consumer tag");
                observer.ack(2, m.delivery_tag());
                delivered.push(m.body_text());
            }
            Ok(m) => panic!(
                "expected the observer to get basic.deliver for {queue}, got {}",
                m.describe()
            ),
            Err(RecvError::Quiet) if delivered.len() >= depth => break,
            Err(e) => panic!(
                "expected the observer's consumer to get {depth} messages, got {} then {e}",
                delivered.len()
            ),
        }
    }
    let expected: Vec<String> = (0..delivered.len()).map(|i| format!("first-{i}")).collect();
    assert!(
        delivered.len() <= FIRST_BATCH && delivered == expected,
        "expected the consumer to get a prefix of the first batch in order, got {delivered:?}"
    );
    eprintln!(
        "alarm {reason:?}: {} of {FIRST_BATCH} messages published before connection.blocked \
         were taken ({} confirmed); none of the {LATER_PUBLISHES} after",
        delivered.len(),
        acked.len()
    );

    // basic.get still answers, and the queue stays empty: the later publishes are still unread.
    assert!(
        observer.get(1, queue).is_none(),
        "expected basic.get-empty on {queue}: nothing published after connection.blocked"
    );
    assert_eq!(observer.queue_declare(1, queue, true), 0);
    observer.expect_nothing(
        Duration::from_millis(500),
        "a connection that never published is never sent connection.blocked",
    );
    publisher.expect_nothing(
        Duration::from_millis(200),
        "still blocked: the alarm is in force",
    );
}

#[test]
fn disk_alarm_blocks_publishers_but_not_consumers() {
    // No free-disk figure reaches 1000 TB; the memory watermark is set out of reach so that
    // the disk alarm alone is in force.
    alarm_blocks_publishers_only(
        &[
            "--disk-free-limit",
            "1000TB",
            "--memory-high-watermark",
            "1TiB",
        ],
        "low on disk",
    );
}

#[test]
fn memory_alarm_blocks_publishers() {
    // The broker's resident memory is always above 1 MiB; no disk limit.
    alarm_blocks_publishers_only(
        &["--memory-high-watermark", "1MiB", "--disk-free-limit", "0"],
        "low on memory",
    );
}
