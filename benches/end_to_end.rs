//! Publish → deliver through a real broker over loopback, per message.
//!
//! The broker runs in this process (`warren::server::start`, one shard unless
//! `WARREN_BENCH_SHARDS` says otherwise); the client is two blocking sockets driven by
//! `warren::protocol`. Each iteration writes a batch of N 16-byte transient publishes to the
//! default exchange in one `write_all` on the publisher connection, then reads the consumer
//! connection (basic.consume no-ack) until all N bodies arrived. So batch 1 is a round trip
//! (publish → deliver latency), and larger batches show throughput with the broker's batching
//! of reads and writes. The client's own cost (encoding is done once per batch size; decoding
//! is only a frame split) is included.
//!
//! Every read has a timeout: a broker that stops delivering fails the bench with a message
//! instead of hanging it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use warren::protocol::constants::{
    CLASS_BASIC, FRAME_BODY, FRAME_HEARTBEAT, FRAME_METHOD, PROTOCOL_HEADER,
};
use warren::protocol::frame::{encode_body, encode_header, encode_method};
use warren::protocol::method::{
    peek_ids, BasicConsume, BasicPublish, ChannelOpen, ConnectionOpen, ConnectionStartOk,
    ConnectionTuneOk, QueueDeclare,
};
use warren::protocol::{parse_frame, BasicProperties, FieldTable, Method};

const FRAME_MAX_BYTES: u32 = 131_072;
const BODY: &[u8; 16] = b"0123456789abcdef";
const QUEUE: &str = "end-to-end";
const CHANNEL: u16 = 1;
const METHOD_DELIVER: u16 = 60;
/// How long a read may wait before the bench gives up on the broker.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const READ_CHUNK_BYTES: usize = 256 * 1024;

/// One blocking AMQP connection with channel 1 open.
struct Client {
    stream: TcpStream,
    input: BytesMut,
    chunk: Vec<u8>,
    output: BytesMut,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, READ_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to the broker at {addr}: {e}"));
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("timeout");
        stream
            .set_write_timeout(Some(READ_TIMEOUT))
            .expect("timeout");
        let mut client = Client {
            stream,
            input: BytesMut::with_capacity(READ_CHUNK_BYTES),
            chunk: vec![0; READ_CHUNK_BYTES],
            output: BytesMut::new(),
        };
        client.write(PROTOCOL_HEADER);
        client.expect("connection.start", |m| {
            matches!(m, Method::ConnectionStart(_))
        });
        client.send(
            0,
            ConnectionStartOk {
                client_properties: FieldTable::default(),
                mechanism: Bytes::from_static(b"PLAIN"),
                response: Bytes::from_static(b"\0guest\0guest"),
                locale: Bytes::from_static(b"en_US"),
            },
        );
        let tune = match client.expect("connection.tune", |m| {
            matches!(m, Method::ConnectionTune(_))
        }) {
            Method::ConnectionTune(tune) => tune,
            _ => unreachable!(),
        };
        client.send(
            0,
            ConnectionTuneOk {
                channel_max: tune.channel_max,
                frame_max: tune.frame_max.min(FRAME_MAX_BYTES),
                heartbeat: 0,
            },
        );
        client.send(
            0,
            ConnectionOpen {
                virtual_host: Bytes::from_static(b"/"),
                ..Default::default()
            },
        );
        client.expect("connection.open-ok", |m| {
            matches!(m, Method::ConnectionOpenOk(_))
        });
        client.send(CHANNEL, ChannelOpen::default());
        client.expect("channel.open-ok", |m| matches!(m, Method::ChannelOpenOk(_)));
        client
    }

    fn write(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write {} bytes to the broker: {e}", bytes.len()));
    }

    fn send(&mut self, channel: u16, method: impl Into<Method>) {
        self.output.clear();
        encode_method(&mut self.output, channel, &method.into());
        let output = std::mem::take(&mut self.output);
        self.write(&output);
        self.output = output;
    }

    /// Reads more input; panics on timeout or when the broker closed the socket.
    fn fill(&mut self) {
        let n = loop {
            match self.stream.read(&mut self.chunk) {
                Ok(n) => break n,
                // A signal to this process (not a timeout): read again.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("read from the broker (timeout {READ_TIMEOUT:?}): {e}"),
            }
        };
        assert!(n > 0, "the broker closed the connection");
        self.input.extend_from_slice(&self.chunk[..n]);
    }

    /// The next method frame that is not a heartbeat; panics on a close or another method.
    fn expect(&mut self, what: &str, is: impl Fn(&Method) -> bool) -> Method {
        loop {
            let frame = match parse_frame(&mut self.input, FRAME_MAX_BYTES) {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    self.fill();
                    continue;
                }
                Err(e) => panic!("bad frame from the broker while awaiting {what}: {e}"),
            };
            if frame.kind == FRAME_HEARTBEAT {
                continue;
            }
            assert_eq!(
                frame.kind, FRAME_METHOD,
                "awaiting {what}: expected a method frame"
            );
            let method = Method::decode(frame.payload)
                .unwrap_or_else(|e| panic!("awaiting {what}: undecodable method: {e:?}"));
            assert!(is(&method), "awaiting {what}, got {method:?}");
            return method;
        }
    }

    /// Reads until `count` message bodies arrived; returns them counted.
    fn receive_bodies(&mut self, count: u64) {
        let mut bodies = 0;
        while bodies < count {
            match parse_frame(&mut self.input, FRAME_MAX_BYTES) {
                Ok(Some(frame)) => match frame.kind {
                    FRAME_BODY => bodies += 1,
                    FRAME_METHOD => {
                        let ids = peek_ids(&frame.payload);
                        if ids != Some((CLASS_BASIC, METHOD_DELIVER)) {
                            panic!(
                                "expected basic.deliver, got {:?}",
                                Method::decode(frame.payload)
                            );
                        }
                    }
                    _ => {}
                },
                Ok(None) => self.fill(),
                Err(e) => panic!("bad frame from the broker: {e}"),
            }
        }
    }
}

/// N publishes of a 16-byte body to the default exchange, encoded once.
fn publish_batch(count: u64) -> Vec<u8> {
    let mut properties = BytesMut::new();
    BasicProperties::default().encode(&mut properties);
    let publish = Method::BasicPublish(BasicPublish {
        routing_key: Bytes::from_static(QUEUE.as_bytes()),
        ..Default::default()
    });
    let mut out = BytesMut::new();
    for _ in 0..count {
        encode_method(&mut out, CHANNEL, &publish);
        encode_header(&mut out, CHANNEL, BODY.len() as u64, &properties);
        encode_body(&mut out, CHANNEL, BODY, FRAME_MAX_BYTES);
    }
    out.to_vec()
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("end_to_end-{}", std::process::id()))
}

/// Starts the broker on a free loopback port; it runs until the process exits.
fn start_broker() -> SocketAddr {
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port");
    let shards = std::env::var("WARREN_BENCH_SHARDS")
        .ok()
        .map(|s| s.parse().expect("WARREN_BENCH_SHARDS: a number of shards"))
        .unwrap_or(1);
    let config = warren::config::Config {
        listen: vec![addr],
        data_dir: data_dir(),
        shards: Some(shards),
        ..Default::default()
    };
    warren::server::start(config).unwrap_or_else(|e| panic!("start the broker: {e}"));
    addr
}

fn publish_deliver(c: &mut Criterion) {
    let addr = start_broker();
    let mut publisher = Client::connect(addr);
    let mut consumer = Client::connect(addr);
    publisher.send(
        CHANNEL,
        QueueDeclare {
            queue: Bytes::from_static(QUEUE.as_bytes()),
            ..Default::default()
        },
    );
    publisher.expect("queue.declare-ok", |m| {
        matches!(m, Method::QueueDeclareOk(_))
    });
    consumer.send(
        CHANNEL,
        BasicConsume {
            queue: Bytes::from_static(QUEUE.as_bytes()),
            no_ack: true,
            ..Default::default()
        },
    );
    consumer.expect("basic.consume-ok", |m| {
        matches!(m, Method::BasicConsumeOk(_))
    });

    let mut group = c.benchmark_group("end_to_end");
    for batch in [1u64, 100, 1000] {
        let wire = publish_batch(batch);
        group.throughput(Throughput::Elements(batch));
        group.bench_with_input(
            BenchmarkId::new("publish_deliver", batch),
            &batch,
            |b, &batch| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        publisher.write(&wire);
                        consumer.receive_bodies(batch);
                    }
                    start.elapsed()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, publish_deliver);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // The shards still run; they keep nothing in it for a transient queue.
    let _ = std::fs::remove_dir_all(data_dir());
}
