//! A minimal, synchronous AMQP 0-9-1 client over a raw TCP socket, for tests that must see
//! exactly which method (and which reply code) the broker sends, or must send frames no
//! client library would: no library in between deciding what to do with a channel.close, a
//! connection.blocked or a malformed frame.
//!
//! Every wait is bounded (`REPLY_TIMEOUT` unless a test says otherwise); a method that does
//! not arrive in time fails the test with what came instead. A broker that sends a frame
//! without the frame-end octet, or larger than the frame_max this client negotiates, fails
//! the test at once.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::Broker;

/// How long a reply the test waits for may take (reached only when something is broken).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long "nothing (more) arrives" is watched for (a short wait can only miss something).
pub const QUIET_PERIOD: Duration = Duration::from_millis(500);
/// The AMQP 0-9-1 protocol header.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;
/// The largest frame this client negotiates and accepts (RabbitMQ's default frame_max).
pub const FRAME_MAX: u32 = 131_072;

// Reply codes.
pub const REPLY_SUCCESS: u16 = 200;
pub const NO_ROUTE: u16 = 312;
pub const ACCESS_REFUSED: u16 = 403;
pub const NOT_FOUND: u16 = 404;
pub const RESOURCE_LOCKED: u16 = 405;
pub const PRECONDITION_FAILED: u16 = 406;
pub const FRAME_ERROR: u16 = 501;
pub const COMMAND_INVALID: u16 = 503;
pub const CHANNEL_ERROR: u16 = 504;
pub const UNEXPECTED_FRAME: u16 = 505;
pub const NOT_ALLOWED: u16 = 530;
pub const NOT_IMPLEMENTED: u16 = 540;

/// The capabilities this client advertises in connection.start-ok: those RabbitMQ's own
/// clients advertise.
pub const CLIENT_CAPABILITIES: [&str; 5] = [
    "consumer_cancel_notify",
    "publisher_confirms",
    "basic.nack",
    "exchange_exchange_bindings",
    "connection.blocked",
];

/// Defines the (class, method) id constants of one class, and a table of them by name.
macro_rules! methods {
    ($table:ident, class $class:literal: $($id:ident = $method:literal),* $(,)?) => {
        $(pub const $id: (u16, u16) = ($class, $method);)*
        const $table: &[((u16, u16), &str)] = &[$(($id, stringify!($id))),*];
    };
}

methods!(CONNECTION_METHODS, class 10:
    CONNECTION_START = 10, CONNECTION_START_OK = 11, CONNECTION_TUNE = 30,
    CONNECTION_TUNE_OK = 31, CONNECTION_OPEN = 40, CONNECTION_OPEN_OK = 41,
    CONNECTION_CLOSE = 50, CONNECTION_CLOSE_OK = 51, CONNECTION_BLOCKED = 60,
    CONNECTION_UNBLOCKED = 61,
);
methods!(CHANNEL_METHODS, class 20:
    CHANNEL_OPEN = 10, CHANNEL_OPEN_OK = 11, CHANNEL_FLOW = 20, CHANNEL_FLOW_OK = 21,
    CHANNEL_CLOSE = 40, CHANNEL_CLOSE_OK = 41,
);
methods!(EXCHANGE_METHODS, class 40:
    EXCHANGE_DECLARE = 10, EXCHANGE_DECLARE_OK = 11, EXCHANGE_DELETE = 20,
    EXCHANGE_DELETE_OK = 21, EXCHANGE_BIND = 30, EXCHANGE_BIND_OK = 31, EXCHANGE_UNBIND = 40,
    EXCHANGE_UNBIND_OK = 51,
);
methods!(QUEUE_METHODS, class 50:
    QUEUE_DECLARE = 10, QUEUE_DECLARE_OK = 11, QUEUE_BIND = 20, QUEUE_BIND_OK = 21,
    QUEUE_DELETE = 40, QUEUE_DELETE_OK = 41, QUEUE_UNBIND = 50, QUEUE_UNBIND_OK = 51,
);
methods!(BASIC_METHODS, class 60:
    BASIC_QOS = 10, BASIC_QOS_OK = 11, BASIC_CONSUME = 20, BASIC_CONSUME_OK = 21,
    BASIC_CANCEL = 30, BASIC_CANCEL_OK = 31, BASIC_PUBLISH = 40, BASIC_RETURN = 50,
    BASIC_DELIVER = 60, BASIC_GET = 70, BASIC_GET_OK = 71, BASIC_GET_EMPTY = 72, BASIC_ACK = 80,
    BASIC_REJECT = 90, BASIC_RECOVER = 110, BASIC_RECOVER_OK = 111, BASIC_NACK = 120,
);
methods!(CONFIRM_METHODS, class 85: CONFIRM_SELECT = 10, CONFIRM_SELECT_OK = 11);
methods!(TX_METHODS, class 90:
    TX_SELECT = 10, TX_SELECT_OK = 11, TX_COMMIT = 20, TX_COMMIT_OK = 21,
);

/// The spec's name of a method (`basic.get-ok` for `BASIC_GET_OK`), or `method C.M` for an
/// id not defined here.
pub fn method_name(id: (u16, u16)) -> String {
    let tables = [
        CONNECTION_METHODS,
        CHANNEL_METHODS,
        EXCHANGE_METHODS,
        QUEUE_METHODS,
        BASIC_METHODS,
        CONFIRM_METHODS,
        TX_METHODS,
    ];
    let Some((_, constant)) = tables.iter().flat_map(|t| t.iter()).find(|(i, _)| *i == id) else {
        return format!("method {}.{}", id.0, id.1);
    };
    let lower = constant.to_ascii_lowercase();
    let (class, method) = lower.split_once('_').expect("CLASS_METHOD");
    format!("{class}.{}", method.replace('_', "-"))
}

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

/// A long-string field value.
pub fn s(v: &str) -> Value {
    Value::Str(v.to_string())
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
        encode_table(&mut self.0, entries);
        self
    }
}

fn encode_table<K: AsRef<str>>(out: &mut Vec<u8>, entries: &[(K, Value)]) {
    let mut body = Vec::new();
    for (key, value) in entries {
        let key = key.as_ref();
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

/// A frame ending with `end` (a correct frame ends with `FRAME_END`).
pub fn frame_with_end(frame_type: u8, channel: u16, payload: &[u8], end: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.push(frame_type);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.push(end);
    out
}

pub fn frame(frame_type: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    frame_with_end(frame_type, channel, payload, FRAME_END)
}

/// One method frame.
pub fn method_frame(channel: u16, id: (u16, u16), args: Args) -> Vec<u8> {
    let mut payload = Vec::with_capacity(args.0.len() + 4);
    payload.extend_from_slice(&id.0.to_be_bytes());
    payload.extend_from_slice(&id.1.to_be_bytes());
    payload.extend_from_slice(&args.0);
    frame(FRAME_METHOD, channel, &payload)
}

/// A basic content header for a `body_size`-byte body carrying only `headers` (if any).
pub fn content_header(body_size: u64, headers: Option<&[(&str, Value)]>) -> Vec<u8> {
    let mut header = Vec::new();
    header.extend_from_slice(&60u16.to_be_bytes()); // class basic
    header.extend_from_slice(&0u16.to_be_bytes()); // weight
    header.extend_from_slice(&body_size.to_be_bytes());
    match headers {
        Some(entries) => {
            header.extend_from_slice(&0x2000u16.to_be_bytes());
            encode_table(&mut header, entries);
        }
        None => header.extend_from_slice(&0u16.to_be_bytes()),
    }
    header
}

/// The frames of a basic.publish: method, content header (with only `headers`, if any) and,
/// unless the body is empty, one body frame.
pub fn publish_frames(
    channel: u16,
    exchange: &str,
    routing_key: &str,
    flags: PublishFlags,
    headers: Option<&[(&str, Value)]>,
    body: &[u8],
) -> Vec<u8> {
    let args = Args::new()
        .u16(0)
        .short(exchange)
        .short(routing_key)
        .u8(flags.0);
    let mut bytes = method_frame(channel, BASIC_PUBLISH, args);
    bytes.extend(frame(
        FRAME_HEADER,
        channel,
        &content_header(body.len() as u64, headers),
    ));
    if !body.is_empty() {
        bytes.extend(frame(FRAME_BODY, channel, body));
    }
    bytes
}

/// Defines a method's bit arguments as one octet (first flag in the lowest bit; no-wait is
/// never set), combined with `|`.
macro_rules! flags {
    ($(#[$doc:meta])* $name:ident: $($flag:ident),*) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub struct $name(pub u8);

        impl $name {
            pub const PLAIN: $name = $name(0);
            flags!(@bits $name, 1, $($flag),*);
        }

        impl std::ops::BitOr for $name {
            type Output = $name;
            fn bitor(self, other: $name) -> $name {
                $name(self.0 | other.0)
            }
        }
    };
    (@bits $name:ident, $bit:expr, $flag:ident $(, $rest:ident)*) => {
        pub const $flag: $name = $name($bit);
        flags!(@bits $name, $bit << 1, $($rest),*);
    };
    (@bits $name:ident, $bit:expr,) => {};
}

flags!(
    /// queue.declare's flags.
    QueueFlags: PASSIVE, DURABLE, EXCLUSIVE, AUTO_DELETE
);
flags!(
    /// exchange.declare's flags.
    ExchangeFlags: PASSIVE, DURABLE, AUTO_DELETE, INTERNAL
);
flags!(
    /// basic.publish's flags.
    PublishFlags: MANDATORY, IMMEDIATE
);

/// queue.declare's arguments (ticket 0, no-wait off, no arguments).
pub fn queue_declare_args(queue: &str, flags: QueueFlags) -> Args {
    Args::new().u16(0).short(queue).u8(flags.0).table(&[])
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

/// A method the broker sent, with its content's body if it carries one.
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

    /// (delivery tag, multiple) of basic.ack or basic.nack.
    pub fn ack_args(&self) -> (u64, bool) {
        let mut r = self.reader();
        (r.u64(), r.u8() & 1 == 1)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(self.body.as_deref().unwrap_or_default()).into_owned()
    }

    /// What came, for failure messages: the method, the reason of a close, the body.
    pub fn describe(&self) -> String {
        let mut out = method_name(self.id);
        if matches!(self.id, CHANNEL_CLOSE | CONNECTION_CLOSE) && self.args.len() >= 7 {
            let (code, text, class, method) = self.close_reason();
            out.push_str(&format!(
                " {code} {text:?} (failing method {})",
                method_name((class, method))
            ));
        }
        out.push_str(&format!(" on channel {}", self.channel));
        if let Some(body) = &self.body {
            out.push_str(&format!(" with body {:?}", String::from_utf8_lossy(body)));
        }
        out
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
    /// The message of a basic.deliver, and the consumer tag it was delivered to.
    pub fn from_deliver(incoming: &Incoming) -> (Message, String) {
        assert_eq!(
            incoming.id,
            BASIC_DELIVER,
            "expected basic.deliver, got {}",
            incoming.describe()
        );
        let mut r = incoming.reader();
        let consumer_tag = r.short();
        (Message::read_rest(&mut r, incoming), consumer_tag)
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
            body: incoming.body_text(),
        }
    }
}

/// Why nothing (or nothing usable) came.
#[derive(Debug, PartialEq)]
pub enum RecvError {
    /// Nothing within the wait.
    Quiet,
    /// The broker closed the socket.
    Closed,
    /// The socket failed, or the frames made no sense.
    Broken(String),
}

impl std::fmt::Display for RecvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecvError::Quiet => write!(f, "nothing"),
            RecvError::Closed => write!(f, "the broker closed the socket"),
            RecvError::Broken(why) => write!(f, "{why}"),
        }
    }
}

/// What connection.tune offered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tune {
    pub channel_max: u16,
    pub frame_max: u32,
    pub heartbeat: u16,
}

/// How a connection ended.
#[derive(Debug, PartialEq)]
pub enum Ending {
    /// connection.close from the broker (answered with close-ok).
    Close { reply_code: u16, reply_text: String },
    /// The broker closed (or reset) the socket without connection.close.
    Dropped,
    /// Nothing happened within `REPLY_TIMEOUT`.
    StillOpen,
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

pub struct Client {
    /// Who this client is in failure messages ("the client", "the publisher", ...).
    name: String,
    stream: TcpStream,
    buf: Vec<u8>,
    /// connection.start's arguments, once the handshake began.
    server_start: Vec<u8>,
}

impl Client {
    /// A TCP connection to 127.0.0.1:`port`, nothing sent yet.
    pub fn tcp(port: u16, name: &str) -> Client {
        let stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), REPLY_TIMEOUT)
            .unwrap_or_else(|e| panic!("expected {name} to connect to 127.0.0.1:{port}, got {e}"));
        stream
            .set_write_timeout(Some(REPLY_TIMEOUT))
            .expect("set_write_timeout");
        let _ = stream.set_nodelay(true);
        Client {
            name: name.to_string(),
            stream,
            buf: Vec::new(),
            server_start: Vec::new(),
        }
    }

    /// Connects as guest/guest to vhost `/`, advertising `CLIENT_CAPABILITIES`.
    pub fn connect(port: u16) -> Client {
        Client::connect_as(port, "the client")
    }

    /// [`Client::connect`], naming the client `name` in failure messages.
    pub fn connect_as(port: u16, name: &str) -> Client {
        let mut client = Client::tcp(port, name);
        client.handshake(None);
        client
    }

    /// A connection with channel 1 open.
    pub fn connect_with_channel(port: u16) -> Client {
        let mut client = Client::connect(port);
        client.open_channel(1);
        client
    }

    /// Protocol header, start-ok (PLAIN guest/guest, `CLIENT_CAPABILITIES`), tune-ok with
    /// `channel_max` (`None`: the broker's), the broker's frame_max (at most `FRAME_MAX`) and
    /// no heartbeats, connection.open `/`. Returns what connection.tune offered.
    pub fn handshake(&mut self, channel_max: Option<u16>) -> Tune {
        self.handshake_to("/", channel_max)
    }

    /// [`Client::handshake`], opening `vhost`.
    pub fn handshake_to(&mut self, vhost: &str, channel_max: Option<u16>) -> Tune {
        let tune = self.start_until_tune();
        let frame_max = match tune.frame_max {
            0 => FRAME_MAX,
            offered => offered.min(FRAME_MAX),
        };
        self.tune_ok(channel_max.unwrap_or(tune.channel_max), frame_max, 0);
        self.open(vhost);
        self.expect(0, CONNECTION_OPEN_OK);
        tune
    }

    /// The handshake's first half: protocol header, start-ok (PLAIN guest/guest,
    /// `CLIENT_CAPABILITIES`). Returns what connection.tune offered; tune-ok is not sent.
    pub fn start_until_tune(&mut self) -> Tune {
        self.write_all(PROTOCOL_HEADER);
        self.server_start = self.expect(0, CONNECTION_START).args;
        let capabilities = Value::Table(
            CLIENT_CAPABILITIES
                .iter()
                .map(|c| (c.to_string(), Value::Bool(true)))
                .collect(),
        );
        let start_ok = Args::new()
            .table(&[
                ("product", s("warren raw test client")),
                ("capabilities", capabilities),
            ])
            .short("PLAIN")
            .long(b"\0guest\0guest")
            .short("en_US");
        self.send(0, CONNECTION_START_OK, start_ok);
        let tune = self.expect(0, CONNECTION_TUNE);
        let mut r = tune.reader();
        Tune {
            channel_max: r.u16(),
            frame_max: r.u32(),
            heartbeat: r.u16(),
        }
    }

    /// connection.tune-ok with these values.
    pub fn tune_ok(&mut self, channel_max: u16, frame_max: u32, heartbeat: u16) {
        let args = Args::new().u16(channel_max).u32(frame_max).u16(heartbeat);
        self.send(0, CONNECTION_TUNE_OK, args);
    }

    /// connection.open of `vhost`, without waiting for open-ok.
    pub fn open(&mut self, vhost: &str) {
        let args = Args::new().short(vhost).short("").bits(&[false]);
        self.send(0, CONNECTION_OPEN, args);
    }

    /// True if connection.start listed `capability` as true among the broker's capabilities.
    pub fn broker_advertises(&self, capability: &str) -> bool {
        let mut entry = vec![capability.len() as u8];
        entry.extend_from_slice(capability.as_bytes());
        entry.extend_from_slice(b"t\x01");
        self.server_start
            .windows(entry.len())
            .any(|w| w == entry.as_slice())
    }

    // --- Writing -------------------------------------------------------------

    /// Writes raw bytes as they are.
    pub fn write_all(&mut self, bytes: &[u8]) {
        let name = &self.name;
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("expected {name} to write to the broker, got {e}"));
    }

    /// The socket, for a test that goes on writing (or reading) it on its own, e.g. to see
    /// when the broker stops reading it. Bytes read but not yet taken as frames are dropped.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Writes raw bytes, returning the error (the broker may have stopped reading).
    pub fn try_write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes `bytes` in pieces of `chunk` bytes with a pause after each, so the broker sees
    /// frames split across many reads.
    pub fn write_in_chunks(&mut self, bytes: &[u8], chunk: usize, pause: Duration) {
        for piece in bytes.chunks(chunk) {
            self.write_all(piece);
            std::thread::sleep(pause);
        }
    }

    /// Sends one method frame.
    pub fn send(&mut self, channel: u16, id: (u16, u16), args: Args) {
        let bytes = method_frame(channel, id, args);
        self.write_all(&bytes);
    }

    /// basic.publish of `body` with `flags` and a content header carrying only `headers` (if
    /// any).
    pub fn publish_with(
        &mut self,
        channel: u16,
        exchange: &str,
        routing_key: &str,
        flags: PublishFlags,
        headers: Option<&[(&str, Value)]>,
        body: &str,
    ) {
        let bytes = publish_frames(
            channel,
            exchange,
            routing_key,
            flags,
            headers,
            body.as_bytes(),
        );
        self.write_all(&bytes);
    }

    pub fn publish(&mut self, channel: u16, exchange: &str, routing_key: &str, body: &str) {
        let bytes = Client::publish_bytes(channel, exchange, routing_key, body.as_bytes());
        self.write_all(&bytes);
    }

    /// The frames of a plain basic.publish (no properties), without sending them.
    pub fn publish_bytes(channel: u16, exchange: &str, routing_key: &str, body: &[u8]) -> Vec<u8> {
        publish_frames(
            channel,
            exchange,
            routing_key,
            PublishFlags::PLAIN,
            None,
            body,
        )
    }

    // --- Reading -------------------------------------------------------------

    /// The next frame as (type, channel, payload), skipping heartbeats, waiting until
    /// `deadline`.
    fn read_frame(&mut self, deadline: Instant) -> Result<(u8, u16, Vec<u8>), RecvError> {
        loop {
            if self.buf.len() >= 7 {
                let size = u32::from_be_bytes(self.buf[3..7].try_into().expect("4 bytes"));
                assert!(
                    size <= FRAME_MAX,
                    "expected a frame of at most {FRAME_MAX} bytes from the broker, got {size}"
                );
                let size = size as usize;
                if self.buf.len() >= size + 8 {
                    let frame_type = self.buf[0];
                    let channel = u16::from_be_bytes([self.buf[1], self.buf[2]]);
                    let payload = self.buf[7..7 + size].to_vec();
                    let end = self.buf[7 + size];
                    self.buf.drain(..size + 8);
                    assert_eq!(
                        end, FRAME_END,
                        "expected frame-end 0xCE from the broker, got {end:#04x}"
                    );
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
                Ok(0) => return Err(RecvError::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(RecvError::Quiet)
                }
                Err(e) => return Err(RecvError::Broken(format!("a read error: {e}"))),
            }
        }
    }

    /// The next method within `wait`, with its content's body for basic.deliver, get-ok and
    /// return (the rest of a content follows at once: it gets `REPLY_TIMEOUT`).
    pub fn recv_within(&mut self, wait: Duration) -> Result<Incoming, RecvError> {
        let (frame_type, channel, payload) = self.read_frame(Instant::now() + wait)?;
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

    /// The next method, within `REPLY_TIMEOUT`.
    pub fn try_recv(&mut self) -> Result<Incoming, RecvError> {
        self.recv_within(REPLY_TIMEOUT)
    }

    pub fn recv(&mut self) -> Incoming {
        self.try_recv().unwrap_or_else(|e| {
            panic!(
                "expected {} to get a method from the broker within {REPLY_TIMEOUT:?}, got {e}",
                self.name
            )
        })
    }

    /// The next method, which must be `id` on `channel`.
    pub fn expect(&mut self, channel: u16, id: (u16, u16)) -> Incoming {
        match self.try_recv() {
            Ok(incoming) if incoming.channel == channel && incoming.id == id => incoming,
            Ok(incoming) => panic!(
                "expected {} to get {} on channel {channel}, got {}",
                self.name,
                method_name(id),
                incoming.describe()
            ),
            Err(e) => panic!(
                "expected {} to get {} on channel {channel} within {REPLY_TIMEOUT:?}, got {e}",
                self.name,
                method_name(id)
            ),
        }
    }

    /// Asserts that nothing arrives within `quiet` (a short wait can only miss something) and
    /// that the connection stays open.
    pub fn expect_nothing(&mut self, quiet: Duration, why: &str) {
        match self.recv_within(quiet) {
            Err(RecvError::Quiet) => {}
            Ok(m) => panic!(
                "expected nothing for {} ({why}), got {}",
                self.name,
                m.describe()
            ),
            Err(e) => panic!("expected nothing for {} ({why}), got {e}", self.name),
        }
    }

    /// Waits for channel.close on `channel`, answers close-ok, and returns (reply code, class
    /// id, method id).
    pub fn expect_channel_close(&mut self, channel: u16) -> (u16, u16, u16) {
        let close = self.expect(channel, CHANNEL_CLOSE);
        let (code, _, class, method) = close.close_reason();
        self.send(channel, CHANNEL_CLOSE_OK, Args::new());
        (code, class, method)
    }

    /// Waits for connection.close, answers close-ok, and returns (reply code, class id,
    /// method id).
    pub fn expect_connection_close(&mut self) -> (u16, u16, u16) {
        let close = self.expect(0, CONNECTION_CLOSE);
        let (code, _, class, method) = close.close_reason();
        self.send(0, CONNECTION_CLOSE_OK, Args::new());
        (code, class, method)
    }

    /// Asserts that the broker closes `channel` with `code`, naming `failing` as the failing
    /// method; `what` says what was refused.
    pub fn expect_channel_refused(
        &mut self,
        channel: u16,
        code: u16,
        failing: (u16, u16),
        what: &str,
    ) {
        let (got_code, class, method) = self.expect_channel_close(channel);
        assert_eq!(
            (got_code, (class, method)),
            (code, failing),
            "expected channel.close {code} for {what} (failing method {}), got channel.close {got_code} for {}",
            method_name(failing),
            method_name((class, method))
        );
    }

    /// Asserts that the broker closes the connection with `code`, naming `failing` as the
    /// failing method; `what` says what was refused.
    pub fn expect_connection_refused(&mut self, code: u16, failing: (u16, u16), what: &str) {
        let (got_code, class, method) = self.expect_connection_close();
        assert_eq!(
            (got_code, (class, method)),
            (code, failing),
            "expected connection.close {code} for {what} (failing method {}), got connection.close {got_code} for {}",
            method_name(failing),
            method_name((class, method))
        );
    }

    /// Reads past any other method until connection.close (answered with close-ok), the end
    /// of the socket, or `REPLY_TIMEOUT` without anything.
    pub fn connection_ending(&mut self) -> Ending {
        loop {
            match self.try_recv() {
                Ok(m) if m.id == CONNECTION_CLOSE => {
                    assert_eq!(
                        m.channel, 0,
                        "expected connection.close on channel 0, got it on channel {}",
                        m.channel
                    );
                    let (reply_code, reply_text, _, _) = m.close_reason();
                    let _ = self.try_write_all(&method_frame(0, CONNECTION_CLOSE_OK, Args::new()));
                    return Ending::Close {
                        reply_code,
                        reply_text,
                    };
                }
                Ok(_) => continue,
                Err(RecvError::Quiet) => return Ending::StillOpen,
                Err(RecvError::Closed | RecvError::Broken(_)) => return Ending::Dropped,
            }
        }
    }

    /// Reads raw bytes until the broker closes the socket (true) or `REPLY_TIMEOUT` passes
    /// without any (false).
    pub fn read_until_closed(&mut self) -> (Vec<u8>, bool) {
        let mut reply = std::mem::take(&mut self.buf);
        self.stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .expect("set_read_timeout");
        let mut chunk = [0u8; 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return (reply, true),
                Ok(n) => reply.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return (reply, false)
                }
                Err(_) => return (reply, true), // reset after the reply
            }
        }
    }

    // --- Connection and channels -----------------------------------------------

    pub fn open_channel(&mut self, channel: u16) {
        self.send(channel, CHANNEL_OPEN, Args::new().short(""));
        self.expect(channel, CHANNEL_OPEN_OK);
    }

    /// channel.close (200), then close-ok.
    pub fn close_channel(&mut self, channel: u16) {
        let args = Args::new().u16(REPLY_SUCCESS).short("bye").u16(0).u16(0);
        self.send(channel, CHANNEL_CLOSE, args);
        self.expect(channel, CHANNEL_CLOSE_OK);
    }

    /// Closes the connection cleanly (close, then close-ok).
    pub fn close(mut self) {
        let args = Args::new().u16(REPLY_SUCCESS).short("bye").u16(0).u16(0);
        self.send(0, CONNECTION_CLOSE, args);
        self.expect(0, CONNECTION_CLOSE_OK);
    }

    // --- Exchanges -------------------------------------------------------------

    pub fn exchange_declare(&mut self, channel: u16, exchange: &str, kind: &str) {
        self.exchange_declare_with(channel, exchange, kind, ExchangeFlags::PLAIN);
        self.expect(channel, EXCHANGE_DECLARE_OK);
    }

    /// exchange.declare with `flags`, without waiting for the reply.
    pub fn exchange_declare_with(
        &mut self,
        channel: u16,
        exchange: &str,
        kind: &str,
        flags: ExchangeFlags,
    ) {
        let args = Args::new()
            .u16(0)
            .short(exchange)
            .short(kind)
            .u8(flags.0)
            .table(&[]);
        self.send(channel, EXCHANGE_DECLARE, args);
    }

    /// exchange.delete without waiting for the reply.
    pub fn exchange_delete_with(&mut self, channel: u16, exchange: &str) {
        let args = Args::new().u16(0).short(exchange).bits(&[false, false]);
        self.send(channel, EXCHANGE_DELETE, args);
    }

    pub fn exchange_delete(&mut self, channel: u16, exchange: &str) {
        self.exchange_delete_with(channel, exchange);
        self.expect(channel, EXCHANGE_DELETE_OK);
    }

    pub fn exchange_bind(&mut self, channel: u16, destination: &str, source: &str, key: &str) {
        let ids = (EXCHANGE_BIND, EXCHANGE_BIND_OK);
        self.exchange_binding(channel, ids, destination, source, key);
    }

    pub fn exchange_unbind(&mut self, channel: u16, destination: &str, source: &str, key: &str) {
        let ids = (EXCHANGE_UNBIND, EXCHANGE_UNBIND_OK);
        self.exchange_binding(channel, ids, destination, source, key);
    }

    /// exchange.bind or exchange.unbind (`ids`: the method and its -ok).
    fn exchange_binding(
        &mut self,
        channel: u16,
        ids: ((u16, u16), (u16, u16)),
        destination: &str,
        source: &str,
        key: &str,
    ) {
        let args = Args::new()
            .u16(0)
            .short(destination)
            .short(source)
            .short(key)
            .bits(&[false])
            .table(&[]);
        self.send(channel, ids.0, args);
        self.expect(channel, ids.1);
    }

    // --- Queues ----------------------------------------------------------------

    /// queue.declare without waiting for the reply.
    pub fn queue_declare_with(&mut self, channel: u16, queue: &str, flags: QueueFlags) {
        self.send(channel, QUEUE_DECLARE, queue_declare_args(queue, flags));
    }

    /// queue.declare-ok's (name, message_count, consumer_count).
    pub fn expect_declare_ok(&mut self, channel: u16) -> (String, u32, u32) {
        let ok = self.expect(channel, QUEUE_DECLARE_OK);
        let mut r = ok.reader();
        (r.short(), r.u32(), r.u32())
    }

    /// queue.declare with `flags`; returns (name, message_count, consumer_count).
    pub fn queue_declare_as(
        &mut self,
        channel: u16,
        queue: &str,
        flags: QueueFlags,
    ) -> (String, u32, u32) {
        self.queue_declare_with(channel, queue, flags);
        self.expect_declare_ok(channel)
    }

    /// A plain queue.declare; returns (name, message_count, consumer_count).
    pub fn queue_declare(&mut self, channel: u16, queue: &str) -> (String, u32, u32) {
        self.queue_declare_as(channel, queue, QueueFlags::PLAIN)
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

    /// queue.delete (unconditional); returns the message count of queue.delete-ok.
    pub fn queue_delete(&mut self, channel: u16, queue: &str) -> u32 {
        let args = Args::new().u16(0).short(queue).bits(&[false, false, false]);
        self.send(channel, QUEUE_DELETE, args);
        self.expect(channel, QUEUE_DELETE_OK).reader().u32()
    }

    // --- Consuming and getting -----------------------------------------------------

    pub fn qos(&mut self, channel: u16, prefetch_count: u16) {
        let args = Args::new().u32(0).u16(prefetch_count).bits(&[false]);
        self.send(channel, BASIC_QOS, args);
        self.expect(channel, BASIC_QOS_OK);
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

    /// basic.consume; returns the consumer tag.
    pub fn consume(&mut self, channel: u16, queue: &str, no_ack: bool, exclusive: bool) -> String {
        self.consume_with(channel, queue, no_ack, exclusive);
        self.expect(channel, BASIC_CONSUME_OK).reader().short()
    }

    pub fn cancel(&mut self, channel: u16, consumer_tag: &str) {
        let args = Args::new().short(consumer_tag).bits(&[false]);
        self.send(channel, BASIC_CANCEL, args);
        self.expect(channel, BASIC_CANCEL_OK);
    }

    /// The next basic.deliver (which must come) as (message, consumer tag).
    pub fn expect_delivery(&mut self) -> (Message, String) {
        Message::from_deliver(&self.recv())
    }

    /// basic.get; None on get-empty, else the message and message_count.
    pub fn get(&mut self, channel: u16, queue: &str, no_ack: bool) -> Option<(Message, u32)> {
        let args = Args::new().u16(0).short(queue).bits(&[no_ack]);
        self.send(channel, BASIC_GET, args);
        let reply = self.recv();
        match reply.id {
            BASIC_GET_EMPTY if reply.channel == channel => None,
            BASIC_GET_OK if reply.channel == channel => {
                let mut r = reply.reader();
                let message = Message::read_rest(&mut r, &reply);
                let count = r.u32();
                Some((message, count))
            }
            _ => panic!(
                "expected {} to get basic.get-ok or get-empty on {queue} on channel {channel}, got {}",
                self.name,
                reply.describe()
            ),
        }
    }

    /// The bodies of every message in `queue`, by basic.get with no-ack (at most 100).
    pub fn get_all(&mut self, channel: u16, queue: &str) -> Vec<String> {
        let mut bodies = Vec::new();
        while let Some((message, _)) = self.get(channel, queue, true) {
            bodies.push(message.body);
            assert!(
                bodies.len() <= 100,
                "expected at most 100 messages in {queue}, got more: {bodies:?}"
            );
        }
        bodies
    }

    pub fn ack(&mut self, channel: u16, delivery_tag: u64, multiple: bool) {
        let args = Args::new().u64(delivery_tag).bits(&[multiple]);
        self.send(channel, BASIC_ACK, args);
    }

    pub fn nack(&mut self, channel: u16, delivery_tag: u64, multiple: bool, requeue: bool) {
        let args = Args::new().u64(delivery_tag).bits(&[multiple, requeue]);
        self.send(channel, BASIC_NACK, args);
    }

    pub fn reject(&mut self, channel: u16, delivery_tag: u64, requeue: bool) {
        let args = Args::new().u64(delivery_tag).bits(&[requeue]);
        self.send(channel, BASIC_REJECT, args);
    }

    // --- Channel modes -----------------------------------------------------------

    pub fn confirm_select(&mut self, channel: u16) {
        self.send(channel, CONFIRM_SELECT, Args::new().bits(&[false]));
        self.expect(channel, CONFIRM_SELECT_OK);
    }

    pub fn tx_select(&mut self, channel: u16) {
        self.send(channel, TX_SELECT, Args::new());
        self.expect(channel, TX_SELECT_OK);
    }
}

/// Proves the broker still serves after a refusal: a fresh channel `channel` on `client`
/// declares a queue, and so does a fresh connection.
pub fn assert_still_serving(broker: &Broker, client: &mut Client, channel: u16) {
    client.open_channel(channel);
    let queue = broker.queue_name("still-serving");
    client.queue_declare_as(channel, &queue, QueueFlags::AUTO_DELETE);
    let mut fresh = Client::connect_as(broker.port(), "a fresh connection");
    fresh.open_channel(1);
    fresh.queue_declare_as(1, &queue, QueueFlags::AUTO_DELETE);
    fresh.close();
}

/// A broker of the test's own (see [`Broker::start`]), a connection with channel 1 open, and
/// the queue `Broker::queue_name(base)` declared on it.
pub fn broker_with_queue(base: &str) -> (Broker, Client, String) {
    let broker = Broker::start(&[]);
    let mut client = Client::connect_with_channel(broker.port());
    let queue = broker.queue_name(base);
    client.queue_declare(1, &queue);
    (broker, client, queue)
}

/// [`expect_channel_refusal`], then closes the connection.
pub fn assert_channel_refusal(
    channel: u16,
    code: u16,
    failing: (u16, u16),
    what: &str,
    provoke: impl FnOnce(&Broker, &mut Client),
) {
    let (_broker, client, ()) = expect_channel_refusal(channel, code, failing, what, provoke);
    client.close();
}

/// Starts a broker and a connection with channel 1 open, runs `provoke` on it, and expects the
/// broker to close `channel` with `code`, naming `failing` as the failing method (`what` says
/// what was refused); then proves the broker still serves (on channel `channel + 1` and on a
/// new connection). Returns the broker, the connection and what `provoke` returned, for the
/// test to go on.
pub fn expect_channel_refusal<T>(
    channel: u16,
    code: u16,
    failing: (u16, u16),
    what: &str,
    provoke: impl FnOnce(&Broker, &mut Client) -> T,
) -> (Broker, Client, T) {
    let broker = Broker::start(&[]);
    let mut client = Client::connect_with_channel(broker.port());
    let provoked = provoke(&broker, &mut client);
    client.expect_channel_refused(channel, code, failing, what);
    assert_still_serving(&broker, &mut client, channel + 1);
    (broker, client, provoked)
}

/// Starts a broker and a connection with channel 1 open, runs `provoke` on it, and expects the
/// broker to close the connection with `code`, naming `failing` as the failing method (`what`
/// says what was refused); then proves the broker still serves a new connection.
pub fn assert_connection_refusal(
    code: u16,
    failing: (u16, u16),
    what: &str,
    provoke: impl FnOnce(&Broker, &mut Client),
) {
    let broker = Broker::start(&[]);
    let mut client = Client::connect_with_channel(broker.port());
    provoke(&broker, &mut client);
    client.expect_connection_refused(code, failing, what);
    let mut fresh = Client::connect_with_channel(broker.port());
    assert_still_serving(&broker, &mut fresh, 2);
    fresh.close();
}
