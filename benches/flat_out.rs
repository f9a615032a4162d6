//! Flat-out producers with plain clients: amqprs connections that publish 16-byte messages
//! without confirms as fast as the broker takes them, and lapin consumers, the way users load
//! a broker. A second opinion beside warren-perf, whose pre-encoded batched writes no
//! application sends: a figure only one tool can reach is not a figure.
//!
//! ```text
//! cargo bench --bench flat_out -- --port 5672 --scenario S8 --duration 6 [--broker-pid PID]
//! ```
//!
//! Scenarios (as in `benches/compare-rabbitmq.sh`): S2 one publisher, one queue, one consumer
//! acking every 50 with prefetch 100; S5 one publisher to a fanout exchange with 8 queues and
//! 8 no-ack consumers; S8 4 publishers, 4 queues, 4 no-ack consumers. Prints one JSON line:
//! publish and consume rates over the window, publish-to-delivery latency percentiles (a
//! monotonic stamp in the body), and the broker's CPU per message with `--broker-pid`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use lapin::message::DeliveryResult;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

struct Args {
    port: u16,
    scenario: String,
    duration: Duration,
    broker_pid: Option<u32>,
}

fn parse_args() -> Args {
    let mut args = Args {
        port: 5672,
        scenario: "S8".into(),
        duration: Duration::from_secs(6),
        broker_pid: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => args.port = value().parse().expect("--port: a port"),
            "--scenario" => args.scenario = value(),
            "--duration" => {
                args.duration =
                    Duration::from_secs_f64(value().parse().expect("--duration: seconds"))
            }
            "--broker-pid" => args.broker_pid = Some(value().parse().expect("--broker-pid: a pid")),
            "--bench" => {} // cargo bench passes it
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// Who publishes where, and how consumers ack.
struct Plan {
    publishers: usize,
    /// (exchange, routing key) per publisher.
    targets: Vec<(String, String)>,
    queues: Vec<String>,
    fanout: Option<String>,
    /// None: no-ack; Some(n): ack every n, with prefetch 2n.
    ack_every: Option<u64>,
    /// Deliveries per publish.
    fanout_factor: u64,
}

fn plan(scenario: &str) -> Plan {
    let queues = |n: usize| {
        (0..n)
            .map(|i| format!("flat-{scenario}-{i}"))
            .collect::<Vec<_>>()
    };
    match scenario {
        "S2" => Plan {
            publishers: 1,
            targets: vec![(String::new(), "flat-S2-0".into())],
            queues: queues(1),
            fanout: None,
            ack_every: Some(50),
            fanout_factor: 1,
        },
        "S5" => Plan {
            publishers: 1,
            targets: vec![("flat.fanout".into(), String::new())],
            queues: queues(8),
            fanout: Some("flat.fanout".into()),
            ack_every: None,
            fanout_factor: 8,
        },
        "S8" => Plan {
            publishers: 4,
            targets: (0..4)
                .map(|i| (String::new(), format!("flat-S8-{i}")))
                .collect(),
            queues: queues(4),
            fanout: None,
            ack_every: None,
            fanout_factor: 1,
        },
        other => panic!("unknown scenario {other}: S2, S5 or S8"),
    }
}

/// What the run counts, shared by every task.
#[derive(Default)]
struct Counts {
    measuring: AtomicBool,
    stop: AtomicBool,
    published: AtomicU64,
    consumed: AtomicU64,
    latency_ns: Mutex<Option<Histogram<u64>>>,
}

fn now_ns(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

async fn connect(port: u16) -> Connection {
    let uri = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    Connection::connect(&uri, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"))
}

async fn declare(ch: &Channel, plan: &Plan) {
    for q in &plan.queues {
        ch.queue_delete(q, QueueDeleteOptions::default())
            .await
            .expect("queue.delete");
        ch.queue_declare(q, QueueDeclareOptions::default(), FieldTable::default())
            .await
            .expect("queue.declare");
    }
    if let Some(ex) = &plan.fanout {
        ch.exchange_declare(
            ex,
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("exchange.declare");
        for q in &plan.queues {
            ch.queue_bind(
                q,
                ex,
                "",
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("queue.bind");
        }
    }
}

async fn consume(
    port: u16,
    queue: String,
    ack_every: Option<u64>,
    counts: Arc<Counts>,
    base: Instant,
) -> Connection {
    let conn = connect(port).await;
    let ch = conn.create_channel().await.expect("a channel");
    if let Some(n) = ack_every {
        ch.basic_qos((2 * n) as u16, BasicQosOptions::default())
            .await
            .expect("basic.qos");
    }
    let options = BasicConsumeOptions {
        no_ack: ack_every.is_none(),
        ..Default::default()
    };
    let consumer = ch
        .basic_consume(&queue, "", options, FieldTable::default())
        .await
        .expect("basic.consume");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    consumer.set_delegate(move |delivery: DeliveryResult| {
        if let Ok(Some(delivery)) = delivery {
            let _ = tx.send(delivery);
        }
        async {}
    });
    tokio::spawn(async move {
        let mut seen = 0u64;
        while let Some(delivery) = rx.recv().await {
            seen += 1;
            if counts.measuring.load(Ordering::Relaxed) {
                counts.consumed.fetch_add(1, Ordering::Relaxed);
                record_latency(&counts, &delivery.data, base);
            }
            match ack_every {
                Some(n) if seen.is_multiple_of(n) => {
                    let multiple = BasicAckOptions { multiple: true };
                    if let Err(e) = delivery.acker.ack(multiple).await {
                        eprintln!("flat-out: ack failed: {e}");
                    }
                }
                _ => {}
            }
        }
    });
    conn
}

/// Publishes flat out with amqprs (whose publish hands the frames to its writer task and
/// returns, as applications expect): lapin awaits each publish's write, which caps a
/// publisher well below what a broker takes.
async fn publish(port: u16, exchange: String, key: String, counts: Arc<Counts>, base: Instant) {
    use amqprs::channel::BasicPublishArguments;
    use amqprs::connection::OpenConnectionArguments;
    let args = OpenConnectionArguments::new("127.0.0.1", port, "guest", "guest");
    let conn = amqprs::connection::Connection::open(&args)
        .await
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
    let ch = conn.open_channel(None).await.expect("a channel");
    let publish = BasicPublishArguments::new(&exchange, &key);
    while !counts.stop.load(Ordering::Relaxed) {
        let mut body = vec![0u8; 16];
        body[..8].copy_from_slice(&now_ns(base).to_le_bytes());
        let props = amqprs::BasicProperties::default();
        if ch
            .basic_publish(props, body, publish.clone())
            .await
            .is_err()
        {
            return;
        }
        if counts.measuring.load(Ordering::Relaxed) {
            counts.published.fetch_add(1, Ordering::Relaxed);
        }
    }
    let _ = conn.close().await;
}

/// Publish-to-delivery time from the stamp in the first 8 body bytes.
fn record_latency(counts: &Counts, body: &[u8], base: Instant) {
    let Some(stamp) = body.get(..8) else { return };
    let sent = u64::from_le_bytes(stamp.try_into().unwrap_or([0; 8]));
    let latency = now_ns(base).saturating_sub(sent);
    if let Ok(mut h) = counts.latency_ns.lock() {
        if let Some(h) = h.as_mut() {
            let _ = h.record(latency.max(1));
        }
    }
}

/// utime + stime of `pid`, in ns.
fn cpu_ns(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(ticks * 1_000_000_000 / hz)
}

fn main() {
    let args = parse_args();
    let plan = plan(&args.scenario);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let counts = Arc::new(Counts::default());
    *counts.latency_ns.lock().expect("the histogram") =
        Some(Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("a histogram"));
    let base = Instant::now();
    let report = runtime.block_on(async {
        let control = connect(args.port).await;
        let ch = control.create_channel().await.expect("a channel");
        declare(&ch, &plan).await;
        let mut consumers = Vec::new();
        for q in &plan.queues {
            consumers
                .push(consume(args.port, q.clone(), plan.ack_every, counts.clone(), base).await);
        }
        let mut publishers = Vec::new();
        for i in 0..plan.publishers {
            let (ex, key) = plan.targets[i % plan.targets.len()].clone();
            publishers.push(tokio::spawn(publish(
                args.port,
                ex,
                key,
                counts.clone(),
                base,
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await; // warm up
        let cpu_before = args.broker_pid.and_then(cpu_ns);
        counts.measuring.store(true, Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(args.duration).await;
        counts.measuring.store(false, Ordering::Relaxed);
        let window = started.elapsed().as_secs_f64();
        let cpu_after = args.broker_pid.and_then(cpu_ns);
        counts.stop.store(true, Ordering::Relaxed);
        for p in publishers {
            let _ = tokio::time::timeout(Duration::from_secs(5), p).await;
        }
        for q in &plan.queues {
            let _ = ch.queue_delete(q, QueueDeleteOptions::default()).await;
        }
        if let Some(ex) = &plan.fanout {
            let _ = ch
                .exchange_delete(ex, ExchangeDeleteOptions::default())
                .await;
        }
        for c in consumers {
            let _ = c.close(200, "done").await;
        }
        let _ = control.close(200, "done").await;
        (
            window,
            cpu_before.zip(cpu_after).map(|(b, a)| a.saturating_sub(b)),
        )
    });
    print_report(&args, &counts, report.0, report.1, plan.fanout_factor);
}

fn print_report(args: &Args, counts: &Counts, window: f64, cpu_ns: Option<u64>, fanout: u64) {
    let published = counts.published.load(Ordering::Relaxed);
    let consumed = counts.consumed.load(Ordering::Relaxed);
    let h = counts
        .latency_ns
        .lock()
        .expect("the histogram")
        .take()
        .expect("a histogram");
    let q = |q: f64| {
        if h.is_empty() {
            "null".to_string()
        } else {
            format!("{:.1}", h.value_at_quantile(q) as f64 / 1000.0)
        }
    };
    let basis = published.max(consumed).max(1);
    let cpu = cpu_ns.map_or("null".to_string(), |ns| {
        format!("{:.3}", ns as f64 / 1000.0 / basis as f64)
    });
    println!(
        "{{\"tool\":\"flat-out\",\"label\":\"{}\",\"window_s\":{window:.3},\"fanout\":{fanout},\"published\":{published},\"consumed\":{consumed},\"publish_rate\":{:.1},\"confirm_rate\":0,\"consume_rate\":{:.1},\"latency_us\":{{\"samples\":{},\"p50\":{},\"p99\":{},\"p999\":{},\"max\":{}}},\"broker_cpu_us_per_msg\":{cpu},\"client_cpu_us_per_msg\":null,\"errors\":[]}}",
        args.scenario,
        published as f64 / window,
        consumed as f64 / window,
        h.len(),
        q(0.5),
        q(0.99),
        q(0.999),
        if h.is_empty() { "null".to_string() } else { format!("{:.1}", h.max() as f64 / 1000.0) },
    );
}
