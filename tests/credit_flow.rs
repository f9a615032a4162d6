//! Credit flow: a queue whose consumers are active and behind holds its publishers back, so
//! its backlog stays bounded; when the consumers speed up the publishers go full speed again;
//! a queue nobody consumes takes a backlog far past any publisher's credit.
//!
//! The publisher is a raw socket that writes publish frames as fast as the broker reads
//! them (blocking writes: when the broker stops reading, the writes stop), so what is
//! measured is the broker's backpressure, not a client library's buffering. Bounds are
//! generous: nothing here depends on timing beyond "far fewer" and "far more".

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use lapin::message::{Delivery, DeliveryResult};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable as LapinTable;
use lapin::{Connection, ConnectionProperties};
use warren::protocol::frame::{encode_body, encode_header, encode_method};
use warren::protocol::method::*;
use warren::protocol::{parse_frame, FieldTable, Method};

/// Far above the broker's credit per publisher and destination (2,000) plus what one read
/// brings in, far below what an unthrottled publisher queues in a second.
const BACKLOG_BOUND: u32 = 20_000;

struct Broker {
    child: Child,
    port: u16,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_broker() -> Broker {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let data = std::env::temp_dir().join(format!("warren-credit-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--shards", "2"])
        .arg("--data-dir")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("warren starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "expected warren to listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Broker { child, port }
}

/// Reads frames until a method of the given kind arrives.
fn expect(stream: &mut TcpStream, buf: &mut BytesMut, want: fn(&Method) -> bool) -> Method {
    loop {
        if let Some(frame) = parse_frame(buf, 1 << 20).expect("well-formed frames") {
            if let Ok(m) = Method::decode(frame.payload) {
                if want(&m) {
                    return m;
                }
            }
            continue;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).expect("the broker answers");
        assert!(n > 0, "expected the handshake to go on, the broker closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A raw connection with channel 1 open.
fn raw_connection(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    s.write_all(b"AMQP\x00\x00\x09\x01")
        .expect("protocol header");
    let mut buf = BytesMut::new();
    let mut out = BytesMut::new();
    expect(&mut s, &mut buf, |m| {
        matches!(m, Method::ConnectionStart(_))
    });
    let start_ok = ConnectionStartOk {
        client_properties: FieldTable::default(),
        mechanism: Bytes::from_static(b"PLAIN"),
        response: Bytes::from_static(b"\x00guest\x00guest"),
        locale: Bytes::from_static(b"en_US"),
    };
    encode_method(&mut out, 0, &Method::ConnectionStartOk(start_ok));
    s.write_all(&out.split()).expect("start-ok");
    expect(&mut s, &mut buf, |m| matches!(m, Method::ConnectionTune(_)));
    let tune_ok = ConnectionTuneOk {
        channel_max: 16,
        frame_max: 131_072,
        heartbeat: 0,
    };
    encode_method(&mut out, 0, &Method::ConnectionTuneOk(tune_ok));
    let open = ConnectionOpen {
        virtual_host: Bytes::from_static(b"/"),
        ..Default::default()
    };
    encode_method(&mut out, 0, &Method::ConnectionOpen(open));
    encode_method(&mut out, 1, &Method::ChannelOpen(ChannelOpen::default()));
    s.write_all(&out.split())
        .expect("tune-ok, open, channel.open");
    expect(&mut s, &mut buf, |m| matches!(m, Method::ChannelOpenOk(_)));
    s
}

/// Publishes 16-byte messages to `queue` until `stop`, counting them in `sent`.
fn flood(port: u16, queue: &'static str, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    let mut s = raw_connection(port);
    s.set_write_timeout(Some(Duration::from_millis(200)))
        .expect("a write timeout");
    const BATCH: u64 = 100;
    let mut batch = BytesMut::new();
    for _ in 0..BATCH {
        let publish = BasicPublish {
            routing_key: Bytes::from_static(queue.as_bytes()),
            ..Default::default()
        };
        encode_method(&mut batch, 1, &Method::BasicPublish(publish));
        encode_header(&mut batch, 1, 16, b"\x00\x00");
        encode_body(&mut batch, 1, b"0123456789abcdef", 131_072);
    }
    let mut at = 0;
    while !stop.load(Ordering::Relaxed) {
        match s.write(&batch[at..]) {
            Ok(n) => at += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        }
        if at == batch.len() {
            at = 0;
            sent.fetch_add(BATCH, Ordering::Relaxed);
        }
    }
}

async fn ready_count(conn: &Connection, queue: &str) -> u32 {
    let ch = conn.create_channel().await.expect("a channel");
    let q = ch
        .queue_declare(
            queue,
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            LapinTable::default(),
        )
        .await
        .expect("passive queue.declare");
    let _ = ch.close(200, "done").await;
    q.message_count()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Messages `sent` counted over `window`.
async fn rate_over(sent: &AtomicU64, window: Duration) -> f64 {
    let before = sent.load(Ordering::Relaxed);
    tokio::time::sleep(window).await;
    (sent.load(Ordering::Relaxed) - before) as f64 / window.as_secs_f64()
}

#[test]
fn a_slow_consumer_bounds_the_backlog_and_a_fast_one_frees_the_publisher() {
    let broker = start_broker();
    let port = broker.port;
    runtime().block_on(async move {
        let uri = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
        let conn = Connection::connect(&uri, ConnectionProperties::default()).await.expect("connects");
        let ch = conn.create_channel().await.expect("a channel");
        let queue = "credit-slow";
        ch.queue_declare(queue, QueueDeclareOptions::default(), LapinTable::default()).await.expect("declare");
        ch.basic_qos(20, BasicQosOptions::default()).await.expect("qos");
        let consumer = ch
            .basic_consume(queue, "slow", BasicConsumeOptions::default(), LapinTable::default())
            .await
            .expect("consume");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Delivery>();
        consumer.set_delegate(move |delivery: DeliveryResult| {
            if let Ok(Some(delivery)) = delivery {
                let _ = tx.send(delivery);
            }
            async {}
        });
        let fast = Arc::new(AtomicBool::new(false));
        let acking = {
            let fast = fast.clone();
            tokio::spawn(async move {
                let mut unacked = 0;
                while let Some(delivery) = rx.recv().await {
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
            })
        };
        let (stop, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let publisher = {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || flood(port, queue, stop, sent))
        };
        // Slow phase: the backlog stays bounded while the consumer is active.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut deepest = 0;
        for _ in 0..10 {
            deepest = deepest.max(ready_count(&conn, queue).await);
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let slow_rate = rate_over(&sent, Duration::from_secs(2)).await;
        // Fast phase: the publisher is read at full speed again.
        fast.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let fast_rate = rate_over(&sent, Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        let _ = publisher.join();
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
    drop(broker);
}

#[test]
fn a_queue_nobody_consumes_takes_a_backlog_past_any_credit() {
    let broker = start_broker();
    let port = broker.port;
    runtime().block_on(async move {
        let uri = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
        let conn = Connection::connect(&uri, ConnectionProperties::default()).await.expect("connects");
        let queue = "credit-idle";
        let ch = conn.create_channel().await.expect("a channel");
        ch.queue_declare(queue, QueueDeclareOptions::default(), LapinTable::default()).await.expect("declare");
        let (stop, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let publisher = {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || flood(port, queue, stop, sent))
        };
        let wanted = 5 * BACKLOG_BOUND;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut depth = 0;
        while depth < wanted && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            depth = ready_count(&conn, queue).await;
        }
        stop.store(true, Ordering::Relaxed);
        let _ = publisher.join();
        assert!(
            depth >= wanted,
            "expected a queue with no consumer to take {wanted} messages, it holds {depth} after {} sent",
            sent.load(Ordering::Relaxed)
        );
    });
    drop(broker);
}
