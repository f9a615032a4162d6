//! A minimal, synchronous AMQP 0-9-1 client over a raw TCP socket, for
//! tests that must see exactly which method (and which reply code) the
//! broker sends, without a client library in between deciding what to do
//! with a channel.close.
//!
//! Every read is bounded by `IO_TIMEOUT`; a method that does not arrive in
//! time fails the test with what came instead.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_HEARTBEAT: u8 = 8;
const FRAME_END: u8 = 0xCE;
const FRAME_MAX_BYTES: u32 = 131_072;

// (class, method) ids used by the tests.
pub const CONNECTION_CLOSE: (u16, u16) = (10, 50);
pub const CONNECTION_CLOSE_OK: (u16, u16) = (10, 51);
pub const CHANNEL_OPEN: (u16, u16) = (20, 10);
pub const CHANNEL_OPEN_OK: (u16, u16) = (20, 11);
pub const CHANNEL_CLOSE: (u16, u16) = (20, 40);
pub const CHANNEL_CLOSE_OK: (u16, u16) = (20, 41);
pub const EXCHANGE_DECLARE: (u16, u16) = (40, 10);
pub const EXCHANGE_DECLARE_OK: (u16, u16) = (40, 11);
pub const EXCHANGE_DELETE: (u16, u16) = (40, 20);
pub const EXCHANGE_DELETE_OK: (u16, u16) = (40, 21);
pub const EXCHANGE_BIND: (u16, u16) = (40, 30);
pub const EXCHANGE_BIND_OK: (u16, u16) = (40, 31);
pub const EXCHANGE_UNBIND: (u16, u16) = (40, 40);
pub const EXCHANGE_UNBIND_OK: (u16, u16) = (40, 51);
pub const QUEUE_DECLARE: (u16, u16) = (50, 10);
pub const QUEUE_DECLARE_OK: (u16, u16) = (50, 11);
pub const QUEUE_BIND: (u16, u16) = (50, 20);
pub const QUEUE_BIND_OK: (u16, u16) = (50, 21);
pub const QUEUE_DELETE: (u16, u16) = (50, 40);
pub const QUEUE_DELETE_OK: (u16, u16) = (50, 41);
pub const QUEUE_UNBIND: (u16, u16) = (50, 50);
pub const QUEUE_UNBIND_OK: (u16, u16) = (50, 51);
pub const BASIC_QOS: (u16, u16) = (60, 10);
pub const BASIC_QOS_OK: (u16, u16) = (60, 11);
pub const BASIC_CONSUME: (u16, u16) = (60, 20);
pub const BASIC_CONSUME_OK: (u16, u16) = (60, 21);
pub const BASIC_CANCEL: (u16, u16) = (60, 30);
pub const BASIC_CANCEL_OK: (u16, u16) = (60, 31);
pub const BASIC_PUBLISH: (u16, u16) = (60, 40);
pub const BASIC_RETURN: (u16, u16) = (60, 50);
pub const BASIC_DELIVER: (u16, u16) = (60, 60);
pub const BASIC_GET: (u16, u16) = (60, 70);
pub const BASIC_GET_OK: (u16, u16) = (60, 71);
pub const BASIC_GET_EMPTY: (u16, u16) = (60, 72);
pub const BASIC_ACK: (u16, u16) = (60, 80);
pub const BASIC_REJECT: (u16, u16) = (60, 90);
pub const BASIC_RECOVER: (u16, u16) = (60, 110);
pub const BASIC_RECOVER_OK: (u16, u16) = (60, 111);
pub const BASIC_NACK: (u16, u16) = (60, 120);
pub const CONFIRM_SELECT: (u16, u16) = (85, 10);
pub const CONFIRM_SELECT_OK: (u16, u16) = (85, 11);
pub const TX_SELECT: (u16, u16) = (90, 10);
pub const TX_SELECT_OK: (u16, u16) = (90, 11);

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

/// A field-table value.
#[derive(Clone, Debug)]
pub enum Value {
    Str(String),
    Bool(bool),
    Table(Vec<(String, Value)>),
}

/// Builds a method's argument bytes in order.
#[derive(Default)]
pub struct Args(pub Vec<u8>);

impl Args {
    pub fn new() -> Args {
        Args(Vec::new())
    }
    pub fn u8(mut self, v: u8) -> Args {
        self.0.push(v);
        self
    }
    pub fn u16(mut self, v: u16) -> Args {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u32(mut self, v: u32) -> Args {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Args {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn short(mut self, s: &str) -> Args {
        assert!(s.len() < 256, "short string too long: {s:?}");
        self.0.push(s.len() as u8);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    pub fn long(mut self, b: &[u8]) -> Args {
        self.0.extend_from_slice(&(b.len() as u32).to_be_bytes());
        self.0.extend_from_slice(b);
        self
    }
    /// Packs consecutive bit arguments into one octet, first bit lowest.
    pub fn bits(mut self, bits: &[bool]) -> Args {
        let mut octet = 0u8;
        for (i, bit) in bits.iter().enumerate() {
            if *bit {
                octet |= 1 << i;
            }
        }
        self.0.push(octet);
        self
    }
    pub fn table(mut self, entries: &[(&str, Value)]) -> Args {
        let owned: Vec<(String, Value)> = entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        encode_table(&mut self.0, &owned);
        self
    }
}

fn encode_table(out: &mut Vec<u8>, entries: &[(String, Value)]) {
    let mut body = Vec::new();
    for (key, value) in entries {
        body.push(key.len() as u8);
        body.extend_from_slice(key.as_bytes());
        match value {
            Value::Str(s) => {
                body.push(b'S');
                body.extend_from_slice(&(s.len() as u32).to_be_bytes());
                body.extend_from_slice(s.as_bytes());
            }
            Value::Bool(b) => {
                body.push(b't');
                body.push(u8::from(*b));
            }
            Value::Table(t) => {
                body.push(b'F');
                encode_table(&mut body, t);
            }
        }
    }
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
}

pub fn s(v: &str) -> Value {
    Value::Str(v.to_string())
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

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

/// Reads a method's arguments in order.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(
            self.at + n <= self.bytes.len(),
            "expected {n} more argument bytes at offset {}, got {} in {:?}",
            self.at,
            self.bytes.len() - self.at,
            self.bytes
        );
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        out
    }
    pub fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take(2).try_into().expect("2 bytes"))
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take(4).try_into().expect("4 bytes"))
    }
    pub fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take(8).try_into().expect("8 bytes"))
    }
    pub fn short(&mut self) -> String {
        let n = self.u8() as usize;
        String::from_utf8_lossy(self.take(n)).into_owned()
    }
    pub fn long(&mut self) -> Vec<u8> {
        let n = self.u32() as usize;
        self.take(n).to_vec()
    }
}

/// A method the broker sent, with its content if it carries one.
#[derive(Clone, Debug)]
pub struct Incoming {
    pub channel: u16,
    pub id: (u16, u16),
    pub args: Vec<u8>,
    pub body: Option<Vec<u8>>,
}

impl Incoming {
    pub fn reader(&self) -> Reader<'_> {
        Reader::new(&self.args)
    }

    /// For channel.close and connection.close: (reply code, text, class, method).
    pub fn close_reason(&self) -> (u16, String, u16, u16) {
        let mut r = self.reader();
        (r.u16(), r.short(), r.u16(), r.u16())
    }

    pub fn describe(&self) -> String {
        if self.id == CHANNEL_CLOSE || self.id == CONNECTION_CLOSE {
            let (code, text, class, method) = self.close_reason();
            let what = if self.id == CHANNEL_CLOSE {
                "channel.close"
            } else {
                "connection.close"
            };
            format!(
                "{what} {code} {text:?} (failing method {class}.{method}) on channel {}",
                self.channel
            )
        } else {
            format!(
                "method {}.{} on channel {}",
                self.id.0, self.id.1, self.channel
            )
        }
    }
}

/// A delivered message: basic.deliver or basic.get-ok.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub delivery_tag: u64,
    pub redelivered: bool,
    pub exchange: String,
    pub routing_key: String,
    pub body: String,
}

impl Message {
    pub fn from_deliver(incoming: &Incoming) -> Message {
        assert_eq!(
            incoming.id,
            BASIC_DELIVER,
            "expected basic.deliver, got {}",
            incoming.describe()
        );
        let mut r = incoming.reader();
        let _consumer_tag = r.short();
        Message::read_rest(&mut r, incoming)
    }

    fn read_rest(r: &mut Reader<'_>, incoming: &Incoming) -> Message {
        let delivery_tag = r.u64();
        let redelivered = r.u8() & 1 == 1;
        let exchange = r.short();
        let routing_key = r.short();
        Message {
            delivery_tag,
            redelivered,
            exchange,
            routing_key,
            body: String::from_utf8_lossy(incoming.body.as_deref().unwrap_or_default())
                .into_owned(),
        }
    }
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects as guest/guest to vhost `/`, advertising the capabilities
    /// RabbitMQ's own clients advertise (consumer_cancel_notify among them).
    pub fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("expected to connect to 127.0.0.1:{port}, got {e}"));
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set_read_timeout");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("set_write_timeout");
        let _ = stream.set_nodelay(true);
        let mut client = Client {
            stream,
            buf: Vec::new(),
        };
        client.write(b"AMQP\x00\x00\x09\x01");
        client.expect(0, (10, 10));
        let capabilities = Value::Table(vec![
            ("consumer_cancel_notify".into(), Value::Bool(true)),
            ("publisher_confirms".into(), Value::Bool(true)),
            ("basic.nack".into(), Value::Bool(true)),
            ("exchange_exchange_bindings".into(), Value::Bool(true)),
        ]);
        let start_ok = Args::new()
            .table(&[
                ("product", s("warren raw test client")),
                ("capabilities", capabilities),
            ])
            .short("PLAIN")
            .long(b"\0guest\0guest")
            .short("en_US");
        client.send(0, (10, 11), start_ok);
        let tune = client.expect(0, (10, 30));
        let mut r = tune.reader();
        let channel_max = r.u16();
        let frame_max = r.u32();
        let frame_max = if frame_max == 0 {
            FRAME_MAX_BYTES
        } else {
            frame_max.min(FRAME_MAX_BYTES)
        };
        client.send(
            0,
            (10, 31),
            Args::new().u16(channel_max).u32(frame_max).u16(0),
        );
        client.send(0, (10, 40), Args::new().short("/").short("").bits(&[false]));
        client.expect(0, (10, 41));
        client
    }

    fn write(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("expected to write to the broker, got {e}"));
    }

    /// Sends one method frame.
    pub fn send(&mut self, channel: u16, id: (u16, u16), args: Args) {
        let mut payload = Vec::with_capacity(args.0.len() + 4);
        payload.extend_from_slice(&id.0.to_be_bytes());
        payload.extend_from_slice(&id.1.to_be_bytes());
        payload.extend_from_slice(&args.0);
        let bytes = frame(FRAME_METHOD, channel, &payload);
        self.write(&bytes);
    }

    /// basic.publish with a content header carrying only `headers` (if
    /// any) and one body frame.
    #[allow(clippy::too_many_arguments)]
    pub fn publish_with(
        &mut self,
        channel: u16,
        exchange: &str,
        routing_key: &str,
        mandatory: bool,
        immediate: bool,
        headers: Option<&[(&str, Value)]>,
        body: &str,
    ) {
        let method = Args::new()
            .u16(0)
            .short(exchange)
            .short(routing_key)
            .bits(&[mandatory, immediate]);
        let mut header = Vec::new();
        header.extend_from_slice(&60u16.to_be_bytes());
        header.extend_from_slice(&0u16.to_be_bytes());
        header.extend_from_slice(&(body.len() as u64).to_be_bytes());
        match headers {
            Some(entries) => {
                header.extend_from_slice(&0x2000u16.to_be_bytes());
                let owned: Vec<(String, Value)> = entries
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect();
                encode_table(&mut header, &owned);
            }
            None => header.extend_from_slice(&0u16.to_be_bytes()),
        }
        let mut payload = Vec::new();
        payload.extend_from_slice(&BASIC_PUBLISH.0.to_be_bytes());
        payload.extend_from_slice(&BASIC_PUBLISH.1.to_be_bytes());
        payload.extend_from_slice(&method.0);
        let mut bytes = frame(FRAME_METHOD, channel, &payload);
        bytes.extend(frame(FRAME_HEADER, channel, &header));
        if !body.is_empty() {
            bytes.extend(frame(FRAME_BODY, channel, body.as_bytes()));
        }
        self.write(&bytes);
    }

    /// The frames of a plain basic.publish (no properties), without sending them.
    pub fn publish_bytes(channel: u16, exchange: &str, routing_key: &str, body: &[u8]) -> Vec<u8> {
        let method = Args::new()
            .u16(0)
            .short(exchange)
            .short(routing_key)
            .bits(&[false, false]);
        let mut header = Vec::new();
        header.extend_from_slice(&60u16.to_be_bytes());
        header.extend_from_slice(&0u16.to_be_bytes());
        header.extend_from_slice(&(body.len() as u64).to_be_bytes());
        header.extend_from_slice(&0u16.to_be_bytes());
        let mut payload = Vec::new();
        payload.extend_from_slice(&BASIC_PUBLISH.0.to_be_bytes());
        payload.extend_from_slice(&BASIC_PUBLISH.1.to_be_bytes());
        payload.extend_from_slice(&method.0);
        let mut bytes = frame(FRAME_METHOD, channel, &payload);
        bytes.extend(frame(FRAME_HEADER, channel, &header));
        if !body.is_empty() {
            bytes.extend(frame(FRAME_BODY, channel, body));
        }
        bytes
    }

    /// Writes `bytes` in pieces of `chunk` bytes with a pause after each, so the broker
    /// sees frames split across many reads.
    pub fn write_in_chunks(&mut self, bytes: &[u8], chunk: usize, pause: Duration) {
        for piece in bytes.chunks(chunk) {
            self.write(piece);
            std::thread::sleep(pause);
        }
    }

    /// Writes raw bytes as they are.
    pub fn write_all(&mut self, bytes: &[u8]) {
        self.write(bytes);
    }

    pub fn publish(&mut self, channel: u16, exchange: &str, routing_key: &str, body: &str) {
        self.publish_with(channel, exchange, routing_key, false, false, None, body);
    }

    /// The next frame as (type, channel, payload), skipping heartbeats.
    fn read_frame(&mut self) -> Result<(u8, u16, Vec<u8>), String> {
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
                        return Err(format!("a frame end 0xCE, got {end:#x}"));
                    }
                    if frame_type == FRAME_HEARTBEAT {
                        continue;
                    }
                    return Ok((frame_type, channel, payload));
                }
            }
            let mut chunk = [0u8; 16384];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("the broker closed the socket".to_string()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(format!("nothing within {IO_TIMEOUT:?}"))
                }
                Err(e) => return Err(format!("a read error: {e}")),
            }
        }
    }

    /// The next method, with its content for basic.deliver, get-ok and
    /// return. Err describes why nothing came.
    pub fn try_recv(&mut self) -> Result<Incoming, String> {
        let (frame_type, channel, payload) = self.read_frame()?;
        if frame_type != FRAME_METHOD || payload.len() < 4 {
            return Err(format!("a method frame, got frame type {frame_type}"));
        }
        let id = (
            u16::from_be_bytes([payload[0], payload[1]]),
            u16::from_be_bytes([payload[2], payload[3]]),
        );
        let args = payload[4..].to_vec();
        let body = if matches!(id, BASIC_DELIVER | BASIC_GET_OK | BASIC_RETURN) {
            let (header_type, _, header) = self.read_frame()?;
            if header_type != FRAME_HEADER {
                return Err(format!("a content header, got frame type {header_type}"));
            }
            let size = u64::from_be_bytes(header[4..12].try_into().expect("8 bytes")) as usize;
            let mut body = Vec::with_capacity(size);
            while body.len() < size {
                let (body_type, _, chunk) = self.read_frame()?;
                if body_type != FRAME_BODY {
                    return Err(format!("a body frame, got frame type {body_type}"));
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

    pub fn recv(&mut self) -> Incoming {
        self.try_recv()
            .unwrap_or_else(|e| panic!("expected a method from the broker, got {e}"))
    }

    /// The next method, which must be `id` on `channel`.
    pub fn expect(&mut self, channel: u16, id: (u16, u16)) -> Incoming {
        match self.try_recv() {
            Ok(incoming) if incoming.channel == channel && incoming.id == id => incoming,
            Ok(incoming) => panic!(
                "expected method {}.{} on channel {channel}, got {}",
                id.0,
                id.1,
                incoming.describe()
            ),
            Err(e) => panic!(
                "expected method {}.{} on channel {channel}, got {e}",
                id.0, id.1
            ),
        }
    }

    /// Waits for channel.close on `channel`, answers close-ok, and returns
    /// (reply code, class id, method id).
    pub fn expect_channel_close(&mut self, channel: u16) -> (u16, u16, u16) {
        let close = self.expect(channel, CHANNEL_CLOSE);
        let (code, _, class, method) = close.close_reason();
        self.send(channel, CHANNEL_CLOSE_OK, Args::new());
        (code, class, method)
    }

    /// Waits for connection.close, answers close-ok, and returns
    /// (reply code, class id, method id).
    pub fn expect_connection_close(&mut self) -> (u16, u16, u16) {
        let close = self.expect(0, CONNECTION_CLOSE);
        let (code, _, class, method) = close.close_reason();
        self.send(0, CONNECTION_CLOSE_OK, Args::new());
        (code, class, method)
    }

    /// Asserts nothing arrives within `quiet`.
    pub fn expect_nothing(&mut self, quiet: Duration, why: &str) {
        self.stream
            .set_read_timeout(Some(quiet))
            .expect("set_read_timeout");
        let got = self.try_recv();
        self.stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set_read_timeout");
        if let Ok(incoming) = got {
            panic!("expected nothing ({why}), got {}", incoming.describe());
        }
    }

    pub fn open_channel(&mut self, channel: u16) {
        self.send(channel, CHANNEL_OPEN, Args::new().short(""));
        self.expect(channel, CHANNEL_OPEN_OK);
    }

    /// Closes the connection cleanly (close, then close-ok).
    pub fn close(mut self) {
        self.send(
            0,
            CONNECTION_CLOSE,
            Args::new().u16(200).short("bye").u16(0).u16(0),
        );
        self.expect(0, CONNECTION_CLOSE_OK);
    }

    // --- Synchronous methods, each waiting for its -ok ---------------------

    pub fn exchange_declare(&mut self, channel: u16, exchange: &str, kind: &str) {
        self.exchange_declare_with(channel, exchange, kind, false, false, false);
        self.expect(channel, EXCHANGE_DECLARE_OK);
    }

    /// exchange.declare without waiting for the reply.
    pub fn exchange_declare_with(
        &mut self,
        channel: u16,
        exchange: &str,
        kind: &str,
        durable: bool,
        auto_delete: bool,
        internal: bool,
    ) {
        let args = Args::new()
            .u16(0)
            .short(exchange)
            .short(kind)
            .bits(&[false, durable, auto_delete, internal, false])
            .table(&[]);
        self.send(channel, EXCHANGE_DECLARE, args);
    }

    /// queue.declare without waiting for the reply.
    pub fn queue_declare_with(
        &mut self,
        channel: u16,
        queue: &str,
        passive: bool,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
    ) {
        let args = Args::new()
            .u16(0)
            .short(queue)
            .bits(&[passive, durable, exclusive, auto_delete, false])
            .table(&[]);
        self.send(channel, QUEUE_DECLARE, args);
    }

    /// queue.declare; returns (name, message_count, consumer_count).
    pub fn queue_declare(&mut self, channel: u16, queue: &str) -> (String, u32, u32) {
        self.queue_declare_with(channel, queue, false, false, false, false);
        self.expect_declare_ok(channel)
    }

    pub fn expect_declare_ok(&mut self, channel: u16) -> (String, u32, u32) {
        let ok = self.expect(channel, QUEUE_DECLARE_OK);
        let mut r = ok.reader();
        (r.short(), r.u32(), r.u32())
    }

    /// queue.bind without waiting for the reply.
    pub fn queue_bind_with(
        &mut self,
        channel: u16,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: &[(&str, Value)],
    ) {
        let args = Args::new()
            .u16(0)
            .short(queue)
            .short(exchange)
            .short(routing_key)
            .bits(&[false])
            .table(arguments);
        self.send(channel, QUEUE_BIND, args);
    }

    pub fn queue_bind(&mut self, channel: u16, queue: &str, exchange: &str, routing_key: &str) {
        self.queue_bind_with(channel, queue, exchange, routing_key, &[]);
        self.expect(channel, QUEUE_BIND_OK);
    }

    /// queue.unbind without waiting for the reply.
    pub fn queue_unbind_with(&mut self, channel: u16, queue: &str, exchange: &str, key: &str) {
        let args = Args::new()
            .u16(0)
            .short(queue)
            .short(exchange)
            .short(key)
            .table(&[]);
        self.send(channel, QUEUE_UNBIND, args);
    }

    pub fn exchange_bind(&mut self, channel: u16, destination: &str, source: &str, key: &str) {
        let args = Args::new()
            .u16(0)
            .short(destination)
            .short(source)
            .short(key)
            .bits(&[false])
            .table(&[]);
        self.send(channel, EXCHANGE_BIND, args);
        self.expect(channel, EXCHANGE_BIND_OK);
    }

    /// basic.consume; returns the consumer tag.
    pub fn consume(&mut self, channel: u16, queue: &str, no_ack: bool, exclusive: bool) -> String {
        self.consume_with(channel, queue, no_ack, exclusive);
        let ok = self.expect(channel, BASIC_CONSUME_OK);
        ok.reader().short()
    }

    /// basic.consume (server-named tag) without waiting for the reply.
    pub fn consume_with(&mut self, channel: u16, queue: &str, no_ack: bool, exclusive: bool) {
        let args = Args::new()
            .u16(0)
            .short(queue)
            .short("")
            .bits(&[false, no_ack, exclusive, false])
            .table(&[]);
        self.send(channel, BASIC_CONSUME, args);
    }

    /// basic.get; None on get-empty, else the message and message_count.
    pub fn get(&mut self, channel: u16, queue: &str, no_ack: bool) -> Option<(Message, u32)> {
        self.send(
            channel,
            BASIC_GET,
            Args::new().u16(0).short(queue).bits(&[no_ack]),
        );
        let reply = self.recv();
        match reply.id {
            BASIC_GET_EMPTY => None,
            BASIC_GET_OK => {
                let mut r = reply.reader();
                let message = Message::read_rest(&mut r, &reply);
                let count = r.u32();
                Some((message, count))
            }
            _ => panic!(
                "expected basic.get-ok or get-empty on {queue}, got {}",
                reply.describe()
            ),
        }
    }

    pub fn ack(&mut self, channel: u16, delivery_tag: u64, multiple: bool) {
        self.send(
            channel,
            BASIC_ACK,
            Args::new().u64(delivery_tag).bits(&[multiple]),
        );
    }

    pub fn nack(&mut self, channel: u16, delivery_tag: u64, multiple: bool, requeue: bool) {
        self.send(
            channel,
            BASIC_NACK,
            Args::new().u64(delivery_tag).bits(&[multiple, requeue]),
        );
    }

    pub fn reject(&mut self, channel: u16, delivery_tag: u64, requeue: bool) {
        self.send(
            channel,
            BASIC_REJECT,
            Args::new().u64(delivery_tag).bits(&[requeue]),
        );
    }

    pub fn confirm_select(&mut self, channel: u16) {
        self.send(channel, CONFIRM_SELECT, Args::new().bits(&[false]));
        self.expect(channel, CONFIRM_SELECT_OK);
    }

    pub fn tx_select(&mut self, channel: u16) {
        self.send(channel, TX_SELECT, Args::new());
        self.expect(channel, TX_SELECT_OK);
    }
}
