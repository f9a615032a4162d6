//! Credit flow: a queue whose consumers are active and behind holds its publishers back, so
//! its backlog stays bounded; when the consumers speed up the publishers go full speed again;
//! a queue nobody consumes takes a backlog far past any publisher's credit.
//!
//! The publisher is a raw socket that writes publish frames as fast as the broker reads
//! them (blocking writes: when the broker stops reading, the writes stop), so what is
//! measured is the broker's backpressure, not a client library's buffering. Bounds are
//! generous: nothing here depends on timing beyond "far fewer" and "far more". Against an
//! external broker (`WARREN_TEST_AMQP_PORT`) the tests are skipped: its credit flow is not
//! Warren's to measure.

mod support;

use std::future::Future;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use lapin::options::BasicAckOptions;
use lapin::Channel;
use support::lapin_client::{
    connect, connect_channel, consume, declare, message_count, open_channel, qos, Deliveries,
};
use support::raw::Client;
use support::{run_async, Broker};

/// Far above the broker's credit per publisher and destination (2,000) plus what one read
/// brings in, far below what an unthrottled publisher queues in a second.
const BACKLOG_BOUND: u32 = 20_000;
/// Bounds each test (reached only when something hangs).
const TEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Publishes the flooding publisher writes in one go.
const BATCH: u64 = 100;

/// Runs `test`, given the port and URL of a broker with two shards, bounded by
/// `TEST_TIMEOUT`; skipped against an external broker.
fn run_on_broker<F: Future<Output = ()>>(test: impl FnOnce(u16, String) -> F) {
    let broker = Broker::start(&["--shards", "2"]);
    if broker.is_external() {
        return;
    }
    run_async(TEST_TIMEOUT, test(broker.port(), broker.amqp_url()));
}

/// A raw publisher on a thread of its own, publishing 16-byte messages to one queue as fast
/// as the broker reads them.
struct Flood {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Flood {
    fn start(port: u16, queue: &'static str) -> Flood {
        let (stop, sent) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let thread = {
            let (stop, sent) = (stop.clone(), sent.clone());
            thread::spawn(move || flood(port, queue, &stop, &sent))
        };
        Flood {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    /// Messages written so far.
    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Messages written per second over `window`.
    async fn rate_over(&self, window: Duration) -> f64 {
        let before = self.sent();
        tokio::time::sleep(window).await;
        (self.sent() - before) as f64 / window.as_secs_f64()
    }

    /// Stops the publisher and returns how many messages it wrote.
    fn stop(mut self) -> u64 {
        self.join();
        self.sent()
    }

    fn join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            if let Err(panic) = thread.join() {
                if !thread::panicking() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.join();
    }
}

/// Publishes 16-byte messages to `queue` until `stop`, counting them in `sent`.
fn flood(port: u16, queue: &str, stop: &AtomicBool, sent: &AtomicU64) {
    let mut publisher = Client::connect_as(port, "the publisher");
    publisher.open_channel(1);
    let batch: Vec<u8> = (0..BATCH)
        .flat_map(|_| Client::publish_bytes(1, "", queue, b"0123456789abcdef"))
        .collect();
    let mut stream = publisher.into_stream();
    stream
        .set_write_timeout(Some(Duration::from_millis(200)))
        .expect("a write timeout");
    let mut at = 0;
    while !stop.load(Ordering::Relaxed) {
        match stream.write(&batch[at..]) {
            Ok(n) => at += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return,
        }
        if at == batch.len() {
            at = 0;
            sent.fetch_add(BATCH, Ordering::Relaxed);
        }
    }
}

/// Acks `deliveries`: while `fast` is false after a 1 ms pause each (about 1,000 acks/s),
/// then with one multiple ack per 10 deliveries.
async fn ack_deliveries(mut deliveries: Deliveries, fast: Arc<AtomicBool>) {
    let mut unacked = 0;
    while let Some(delivery) = deliveries.recv().await {
        unacked += 1;
        if !fast.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(1)).await; // ~1,000 acks/s
        } else if unacked < 10 {
            continue; // fast: one multiple ack per 10 deliveries
        }
        let multiple = BasicAckOptions { multiple: true };
        let _ = delivery.ack(multiple).await;
        unacked = 0;
    }
}

/// The deepest backlog of `queue` seen in ten looks 150 ms apart.
async fn deepest_backlog(channel: &Channel, queue: &str) -> u32 {
    let mut deepest = 0;
    for _ in 0..10 {
        deepest = deepest.max(message_count(channel, queue).await);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    deepest
}

#[test]
fn a_slow_consumer_bounds_the_backlog_and_a_fast_one_frees_the_publisher() {
    run_on_broker(|port, url| async move {
        let conn = connect(&url).await;
        let ch = open_channel(&conn).await;
        let counter = open_channel(&conn).await;
        let queue = "credit-slow";
        declare(&ch, queue, false).await;
        qos(&ch, 20).await;
        let deliveries = consume(&ch, queue, "slow", false).await;
        let fast = Arc::new(AtomicBool::new(false));
        let acking = tokio::spawn(ack_deliveries(deliveries, fast.clone()));
        let publisher = Flood::start(port, queue);
        // Slow phase: the backlog stays bounded while the consumer is active.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let deepest = deepest_backlog(&counter, queue).await;
        let slow_rate = publisher.rate_over(Duration::from_secs(2)).await;
        // Fast phase: the publisher is read at full speed again.
        fast.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let fast_rate = publisher.rate_over(Duration::from_secs(2)).await;
        publisher.stop();
        acking.abort();
        assert!(
            deepest <= BACKLOG_BOUND,
            "expected the backlog of a queue with an active slow consumer to stay under {BACKLOG_BOUND}, it reached {deepest}"
        );
        assert!(
            fast_rate >= 10.0 * slow_rate.max(100.0) && fast_rate >= 10_000.0,
            "expected the publisher to speed up once the consumer did: {slow_rate:.0} msg/s with the slow consumer, {fast_rate:.0} msg/s with the fast one"
        );
    });
}

#[test]
fn a_queue_nobody_consumes_takes_a_backlog_past_any_credit() {
    run_on_broker(|port, url| async move {
        let (_conn, ch) = connect_channel(&url).await;
        let queue = "credit-idle";
        declare(&ch, queue, false).await;
        let publisher = Flood::start(port, queue);
        let wanted = 5 * BACKLOG_BOUND;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut depth = 0;
        while depth < wanted && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            depth = message_count(&ch, queue).await;
        }
        let sent = publisher.stop();
        assert!(
            depth >= wanted,
            "expected a queue with no consumer to take {wanted} messages, it holds {depth} after {sent} sent"
        );
    });
}
