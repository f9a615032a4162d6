//! Protocol violations, one per scenario, answered as RabbitMQ 3.10 answers them: the same
//! connection.close or channel.close reply code and failing class/method ids, and where
//! clients match on it, the same reply-text prefix.
//!
//! Each scenario is a sequence of raw frames (tests/support/raw.rs) that breaks one rule, sent
//! on a fresh connection; its outcome is the first of: connection.close (code, class, method,
//! text), channel.close (the same), connection.close-ok (for a close the client started), the
//! socket closed without any close, the protocol header sent back before the socket closes,
//! or nothing within `SETTLE` (the broker accepted it). The expected outcomes below are
//! RabbitMQ 3.10.8's, measured on a private node, so this test runs in CI without RabbitMQ.
//! Where RabbitMQ only drops the socket, Warren may send the spec's connection.close instead,
//! with the code the scenario names.
//!
//! To check the pins against RabbitMQ again:
//!
//! ```text
//! tests/rabbitmq-node.sh start 5699 /tmp/rabbitmq-diff
//! WARREN_DIFF_RABBITMQ_PORT=5699 cargo test --release --test protocol_differential -- --nocapture
//! tests/rabbitmq-node.sh stop 5699 /tmp/rabbitmq-diff
//! ```
//!
//! With `WARREN_DIFF_RABBITMQ_PORT` set, `rabbitmq_still_gives_the_pinned_answers` runs every
//! scenario against that port and asserts RabbitMQ's exact outcome (a dropped socket must be
//! dropped); without it, that test does nothing. Both tests print their table of outcomes.

mod support;

use std::time::{Duration, Instant};

use support::raw::*;
use support::{unique_suffix, Broker};

/// The port of a RabbitMQ node to re-verify the pins against.
const RABBITMQ_PORT_ENV: &str = "WARREN_DIFF_RABBITMQ_PORT";
/// How long an outcome may take: past RabbitMQ's 3 s delay before it drops a connection that
/// failed during the handshake. A scenario the broker accepts costs this much.
const SETTLE: Duration = Duration::from_secs(5);
/// The failing-method ids of a close about a frame rather than a method.
const NO_METHOD: (u16, u16) = (0, 0);
/// What RabbitMQ says when a queue.declare meets another connection's exclusive queue, or
/// an exclusive flag that does not match the queue's.
const LOCKED: &str =
    "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{q}' in vhost '/'";

/// How far the connection gets before the scenario's frames.
#[derive(Clone, Copy, PartialEq)]
enum Start {
    /// A TCP connection, nothing sent.
    Tcp,
    /// Protocol header and start-ok sent, connection.tune received; no tune-ok yet.
    Tuning,
    /// The full handshake.
    Open,
    /// The full handshake and channel 1 open.
    Channel,
}

/// What RabbitMQ answers. Reply-text prefixes may name the scenario's queue (`{q}`) and
/// exchange (`{x}`); an empty prefix is not compared.
#[derive(Clone, Copy, Debug)]
enum Expect {
    ConnectionClose(u16, (u16, u16), &'static str),
    ChannelClose(u16, u16, (u16, u16), &'static str),
    /// The socket closed without connection.close; Warren may send connection.close with
    /// this code instead (the spec's answer).
    Dropped(u16),
    /// The server's protocol header, then the socket closed.
    HeaderThenDropped,
    /// connection.close-ok to the client's connection.close.
    CloseOk,
    /// Nothing within `SETTLE`: accepted.
    StillOpen,
}

/// What a broker did.
#[derive(Debug, PartialEq)]
enum Outcome {
    ConnectionClose(u16, (u16, u16), String),
    ChannelClose(u16, u16, (u16, u16), String),
    Dropped,
    HeaderThenDropped,
    CloseOk,
    StillOpen,
    Other(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::ConnectionClose(code, failing, text) => write!(
                f,
                "connection.close {code} {} {text:?}",
                method_name(*failing)
            ),
            Outcome::ChannelClose(channel, code, failing, text) => write!(
                f,
                "channel.close {code} {} on channel {channel} {text:?}",
                method_name(*failing)
            ),
            Outcome::Dropped => write!(f, "socket closed without close"),
            Outcome::HeaderThenDropped => write!(f, "protocol header, then socket closed"),
            Outcome::CloseOk => write!(f, "connection.close-ok"),
            Outcome::StillOpen => write!(f, "accepted (nothing within {SETTLE:?})"),
            Outcome::Other(what) => write!(f, "{what}"),
        }
    }
}

/// The names a scenario uses, unique per run (a RabbitMQ node is shared across runs).
struct Names {
    queue: String,
    exchange: String,
}

impl Names {
    fn new() -> Names {
        let suffix = unique_suffix();
        Names {
            queue: format!("diff-q-{suffix}"),
            exchange: format!("diff-x-{suffix}"),
        }
    }

    fn expand(&self, text: &str) -> String {
        text.replace("{q}", &self.queue)
            .replace("{x}", &self.exchange)
    }
}

/// What a scenario's frames are sent with.
struct Ctx {
    port: u16,
    client: Client,
    /// What connection.tune offered (`Start::Tuning`).
    tune: Option<Tune>,
    /// Other connections the scenario keeps open until its outcome is known.
    others: Vec<Client>,
    names: Names,
}

struct Scenario {
    name: &'static str,
    start: Start,
    provoke: fn(&mut Ctx),
    rabbitmq: Expect,
}

impl Expect {
    /// True if `outcome` is this answer; unless `strict`, a dropped socket may also be the
    /// spec's connection.close.
    fn matches(&self, outcome: &Outcome, names: &Names, strict: bool) -> bool {
        match (self, outcome) {
            (Expect::ConnectionClose(code, failing, text), Outcome::ConnectionClose(c, f, t)) => {
                code == c && failing == f && t.starts_with(&names.expand(text))
            }
            (Expect::ChannelClose(ch, code, failing, text), Outcome::ChannelClose(h, c, f, t)) => {
                ch == h && code == c && failing == f && t.starts_with(&names.expand(text))
            }
            (Expect::Dropped(_), Outcome::Dropped) => true,
            (Expect::Dropped(spec), Outcome::ConnectionClose(code, _, _)) => {
                !strict && spec == code
            }
            (Expect::HeaderThenDropped, Outcome::HeaderThenDropped)
            | (Expect::CloseOk, Outcome::CloseOk)
            | (Expect::StillOpen, Outcome::StillOpen) => true,
            _ => false,
        }
    }
}

/// What connection.tune offered, for a scenario that starts at `Start::Tuning`.
fn offered(ctx: &Ctx) -> Tune {
    ctx.tune.expect("a scenario that starts at Start::Tuning")
}

fn declare_with_args(ctx: &mut Ctx, channel: u16, flags: QueueFlags, args: &[(&str, Value)]) {
    let queue = ctx.names.queue.clone();
    let declare = Args::new().u16(0).short(&queue).u8(flags.0).table(args);
    ctx.client.send(channel, QUEUE_DECLARE, declare);
}

fn publish_method(ctx: &mut Ctx, channel: u16) {
    let args = Args::new().u16(0).short("").short("nowhere").u8(0);
    ctx.client.send(channel, BASIC_PUBLISH, args);
}

fn consume_tagged(ctx: &mut Ctx, channel: u16, tag: &str) {
    let queue = ctx.names.queue.clone();
    let args = Args::new()
        .u16(0)
        .short(&queue)
        .short(tag)
        .bits(&[false, false, false, false])
        .table(&[]);
    ctx.client.send(channel, BASIC_CONSUME, args);
}

/// Frames a broker must refuse, whatever it does with the rest of the stream.
fn send_bytes(ctx: &mut Ctx, bytes: &[u8]) {
    // The broker may stop reading once it has seen enough: a failed write is no failure.
    let _ = ctx.client.try_write_all(bytes);
}

fn channel_method_scenarios() -> Vec<Scenario> {
    use Expect::*;
    vec![
        Scenario {
            name: "queue.declare on channel 0",
            start: Start::Open,
            provoke: |ctx| {
                let args = queue_declare_args(&ctx.names.queue, QueueFlags::AUTO_DELETE);
                ctx.client.send(0, QUEUE_DECLARE, args);
            },
            rabbitmq: ConnectionClose(CHANNEL_ERROR, QUEUE_DECLARE, ""),
        },
        Scenario {
            name: "basic.qos on channel 0",
            start: Start::Open,
            provoke: |ctx| {
                let args = Args::new().u32(0).u16(10).bits(&[false]);
                ctx.client.send(0, BASIC_QOS, args);
            },
            rabbitmq: ConnectionClose(CHANNEL_ERROR, BASIC_QOS, ""),
        },
        Scenario {
            name: "channel.open on channel 0",
            start: Start::Open,
            provoke: |ctx| ctx.client.send(0, CHANNEL_OPEN, Args::new().short("")),
            rabbitmq: ConnectionClose(CHANNEL_ERROR, CHANNEL_OPEN, ""),
        },
        Scenario {
            name: "channel.open before connection.open",
            start: Start::Tuning,
            provoke: |ctx| {
                let tune = offered(ctx);
                ctx.client.tune_ok(tune.channel_max, tune.frame_max, 0);
                ctx.client.send(1, CHANNEL_OPEN, Args::new().short(""));
            },
            rabbitmq: ConnectionClose(UNEXPECTED_FRAME, NO_METHOD, ""),
        },
        Scenario {
            name: "method on a channel that is not open",
            start: Start::Open,
            provoke: |ctx| {
                let args = queue_declare_args(&ctx.names.queue, QueueFlags::AUTO_DELETE);
                ctx.client.send(1, QUEUE_DECLARE, args);
            },
            rabbitmq: ConnectionClose(CHANNEL_ERROR, QUEUE_DECLARE, ""),
        },
        Scenario {
            name: "second channel.open on an open channel",
            start: Start::Channel,
            provoke: |ctx| ctx.client.send(1, CHANNEL_OPEN, Args::new().short("")),
            rabbitmq: ConnectionClose(CHANNEL_ERROR, CHANNEL_OPEN, ""),
        },
        Scenario {
            name: "channel number above channel_max (2048)",
            start: Start::Open,
            provoke: |ctx| ctx.client.send(2048, CHANNEL_OPEN, Args::new().short("")),
            rabbitmq: StillOpen,
        },
    ]
}

fn unknown_method_and_close_scenarios() -> Vec<Scenario> {
    use Expect::*;
    vec![
        Scenario {
            name: "unknown class 99 on channel 0",
            start: Start::Open,
            provoke: |ctx| ctx.client.send(0, (99, 10), Args::new()),
            rabbitmq: Dropped(NOT_IMPLEMENTED),
        },
        Scenario {
            name: "unknown method basic.99 on channel 1",
            start: Start::Channel,
            provoke: |ctx| ctx.client.send(1, (60, 99), Args::new()),
            rabbitmq: Dropped(NOT_IMPLEMENTED),
        },
        Scenario {
            name: "channel.flow active=false",
            start: Start::Channel,
            provoke: |ctx| ctx.client.send(1, CHANNEL_FLOW, Args::new().bits(&[false])),
            rabbitmq: ConnectionClose(NOT_IMPLEMENTED, CHANNEL_FLOW, ""),
        },
        Scenario {
            name: "connection.close from the client with an error code",
            start: Start::Channel,
            provoke: |ctx| {
                let args = Args::new().u16(541).short("client error").u16(60).u16(40);
                ctx.client.send(0, CONNECTION_CLOSE, args);
            },
            rabbitmq: CloseOk,
        },
    ]
}

fn content_scenarios() -> Vec<Scenario> {
    use Expect::*;
    vec![
        Scenario {
            name: "content header of the wrong class (50)",
            start: Start::Channel,
            provoke: |ctx| {
                publish_method(ctx, 1);
                let mut header = content_header(5, None);
                header[..2].copy_from_slice(&50u16.to_be_bytes());
                let mut bytes = frame(FRAME_HEADER, 1, &header);
                bytes.extend(frame(FRAME_BODY, 1, b"hello"));
                send_bytes(ctx, &bytes);
            },
            rabbitmq: ConnectionClose(UNEXPECTED_FRAME, BASIC_PUBLISH, ""),
        },
        Scenario {
            name: "basic.publish, then basic.qos instead of the content header",
            start: Start::Channel,
            provoke: |ctx| {
                publish_method(ctx, 1);
                let qos = Args::new().u32(0).u16(10).bits(&[false]);
                ctx.client.send(1, BASIC_QOS, qos);
            },
            rabbitmq: ConnectionClose(UNEXPECTED_FRAME, BASIC_PUBLISH, ""),
        },
        Scenario {
            name: "content body without header",
            start: Start::Channel,
            provoke: |ctx| send_bytes(ctx, &frame(FRAME_BODY, 1, b"hello")),
            rabbitmq: ConnectionClose(UNEXPECTED_FRAME, NO_METHOD, ""),
        },
        Scenario {
            name: "content header without basic.publish",
            start: Start::Channel,
            provoke: |ctx| send_bytes(ctx, &frame(FRAME_HEADER, 1, &content_header(5, None))),
            rabbitmq: ConnectionClose(UNEXPECTED_FRAME, NO_METHOD, ""),
        },
        Scenario {
            name: "body larger than the header's size, then basic.qos",
            start: Start::Channel,
            provoke: |ctx| {
                publish_method(ctx, 1);
                let mut bytes = frame(FRAME_HEADER, 1, &content_header(5, None));
                bytes.extend(frame(FRAME_BODY, 1, b"hello, world"));
                let qos = Args::new().u32(0).u16(10).bits(&[false]);
                bytes.extend(method_frame(1, BASIC_QOS, qos));
                send_bytes(ctx, &bytes);
            },
            rabbitmq: ConnectionClose(UNEXPECTED_FRAME, BASIC_PUBLISH, ""),
        },
    ]
}

fn framing_scenarios() -> Vec<Scenario> {
    use Expect::*;
    vec![
        Scenario {
            name: "frame-end octet 0x00",
            start: Start::Open,
            provoke: |ctx| {
                let bad = frame_with_end(FRAME_METHOD, 0, &[0, 20, 0, 10, 0], 0x00);
                send_bytes(ctx, &bad);
            },
            rabbitmq: ConnectionClose(FRAME_ERROR, NO_METHOD, ""),
        },
        Scenario {
            name: "unknown frame type 9",
            start: Start::Open,
            provoke: |ctx| send_bytes(ctx, &frame(9, 0, b"abcd")),
            rabbitmq: ConnectionClose(FRAME_ERROR, NO_METHOD, ""),
        },
        Scenario {
            name: "frame larger than frame_max",
            start: Start::Open,
            provoke: |ctx| {
                let mut payload = vec![0, 10, 0, 10];
                payload.resize(200_000, b'x');
                send_bytes(ctx, &frame(FRAME_METHOD, 0, &payload));
            },
            rabbitmq: ConnectionClose(FRAME_ERROR, NO_METHOD, ""),
        },
        Scenario {
            name: "heartbeat on channel 1",
            start: Start::Channel,
            provoke: |ctx| send_bytes(ctx, &frame(FRAME_HEARTBEAT, 1, &[])),
            rabbitmq: ConnectionClose(UNEXPECTED_FRAME, NO_METHOD, ""),
        },
        Scenario {
            name: "tune-ok with frame_max 4095",
            start: Start::Tuning,
            provoke: |ctx| ctx.client.tune_ok(offered(ctx).channel_max, 4095, 0),
            rabbitmq: Dropped(NOT_ALLOWED),
        },
        Scenario {
            name: "tune-ok with frame_max above the server's",
            start: Start::Tuning,
            provoke: |ctx| {
                let tune = offered(ctx);
                ctx.client.tune_ok(tune.channel_max, tune.frame_max + 1, 0);
            },
            rabbitmq: Dropped(NOT_ALLOWED),
        },
        Scenario {
            name: "tune-ok with frame_max 0 (no limit)",
            start: Start::Tuning,
            provoke: |ctx| ctx.client.tune_ok(offered(ctx).channel_max, 0, 0),
            rabbitmq: Dropped(NOT_ALLOWED),
        },
        Scenario {
            name: "tune-ok with channel_max 0 (no limit)",
            start: Start::Tuning,
            provoke: |ctx| ctx.client.tune_ok(0, offered(ctx).frame_max, 0),
            rabbitmq: Dropped(NOT_ALLOWED),
        },
        Scenario {
            name: "tune-ok with channel_max above the server's",
            start: Start::Tuning,
            provoke: |ctx| {
                let tune = offered(ctx);
                ctx.client.tune_ok(tune.channel_max + 1, tune.frame_max, 0);
            },
            rabbitmq: Dropped(NOT_ALLOWED),
        },
        Scenario {
            name: "wrong protocol header (AMQP 0-9-2)",
            start: Start::Tcp,
            provoke: |ctx| send_bytes(ctx, b"AMQP\x00\x00\x09\x02"),
            rabbitmq: HeaderThenDropped,
        },
    ]
}

fn queue_scenarios() -> Vec<Scenario> {
    use Expect::*;
    vec![
        Scenario {
            name: "x-max-length as a string",
            start: Start::Channel,
            provoke: |ctx| {
                let args = [("x-max-length", s("10"))];
                declare_with_args(ctx, 1, QueueFlags::AUTO_DELETE, &args);
            },
            rabbitmq: ChannelClose(
                1,
                PRECONDITION_FAILED,
                QUEUE_DECLARE,
                "PRECONDITION_FAILED - invalid arg 'x-max-length' for queue '{q}' in vhost '/'",
            ),
        },
        Scenario {
            name: "queue.declare with other arguments from another channel of a queue with an exclusive consumer",
            start: Start::Channel,
            provoke: |ctx| {
                let queue = ctx.names.queue.clone();
                ctx.client.queue_declare(1, &queue);
                ctx.client.consume(1, &queue, false, true);
                ctx.client.open_channel(2);
                declare_with_args(ctx, 2, QueueFlags::PLAIN, &[("x-dead-letter-exchange", s("dlx"))]);
            },
            rabbitmq: ChannelClose(
                2,
                PRECONDITION_FAILED,
                QUEUE_DECLARE,
                "PRECONDITION_FAILED - inequivalent arg 'x-dead-letter-exchange' for queue '{q}' in vhost '/'",
            ),
        },
        Scenario {
            name: "queue.declare with other arguments of another connection's exclusive queue",
            start: Start::Channel,
            provoke: |ctx| {
                let mut owner = Client::connect_as(ctx.port, "the owner");
                owner.open_channel(1);
                owner.queue_declare_as(1, &ctx.names.queue, QueueFlags::EXCLUSIVE);
                ctx.others.push(owner);
                declare_with_args(ctx, 1, QueueFlags::PLAIN, &[("x-dead-letter-exchange", s("dlx"))]);
            },
            rabbitmq: ChannelClose(1, RESOURCE_LOCKED, QUEUE_DECLARE, LOCKED),
        },
        Scenario {
            name: "queue redeclared exclusive with other arguments on the same connection",
            start: Start::Channel,
            provoke: |ctx| {
                let queue = ctx.names.queue.clone();
                ctx.client.queue_declare(1, &queue);
                declare_with_args(ctx, 1, QueueFlags::EXCLUSIVE, &[("x-dead-letter-exchange", s("dlx"))]);
            },
            rabbitmq: ChannelClose(1, RESOURCE_LOCKED, QUEUE_DECLARE, LOCKED),
        },
    ]
}

fn missing_entity_scenarios() -> Vec<Scenario> {
    use Expect::*;
    vec![
        Scenario {
            name: "passive declare of a missing queue",
            start: Start::Channel,
            provoke: |ctx| {
                let queue = ctx.names.queue.clone();
                ctx.client
                    .queue_declare_with(1, &queue, QueueFlags::PASSIVE);
            },
            rabbitmq: ChannelClose(
                1,
                NOT_FOUND,
                QUEUE_DECLARE,
                "NOT_FOUND - no queue '{q}' in vhost '/'",
            ),
        },
        Scenario {
            name: "queue.bind to a missing exchange",
            start: Start::Channel,
            provoke: |ctx| {
                let (queue, exchange) = (ctx.names.queue.clone(), ctx.names.exchange.clone());
                ctx.client
                    .queue_declare_as(1, &queue, QueueFlags::AUTO_DELETE);
                ctx.client.queue_bind_with(1, &queue, &exchange, "key", &[]);
            },
            rabbitmq: ChannelClose(
                1,
                NOT_FOUND,
                QUEUE_BIND,
                "NOT_FOUND - no exchange '{x}' in vhost '/'",
            ),
        },
    ]
}

fn exchange_and_consume_scenarios() -> Vec<Scenario> {
    use Expect::*;
    vec![
        Scenario {
            name: "exchange.declare with the reserved amq. prefix",
            start: Start::Channel,
            provoke: |ctx| {
                let exchange = format!("amq.{}", ctx.names.exchange);
                ctx.client.exchange_declare_with(1, &exchange, "direct", ExchangeFlags::PLAIN);
            },
            rabbitmq: ChannelClose(
                1,
                ACCESS_REFUSED,
                EXCHANGE_DECLARE,
                "ACCESS_REFUSED - exchange name 'amq.{x}' contains reserved prefix 'amq.*'",
            ),
        },
        Scenario {
            name: "exchange.declare of an existing exchange with another type",
            start: Start::Channel,
            provoke: |ctx| {
                let exchange = ctx.names.exchange.clone();
                ctx.client.exchange_declare(1, &exchange, "direct");
                ctx.client.exchange_declare_with(1, &exchange, "fanout", ExchangeFlags::PLAIN);
            },
            rabbitmq: ChannelClose(
                1,
                PRECONDITION_FAILED,
                EXCHANGE_DECLARE,
                "PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{x}' in vhost '/': received 'fanout' but current is 'direct'",
            ),
        },
        Scenario {
            name: "basic.consume with a duplicate consumer tag",
            start: Start::Channel,
            provoke: |ctx| {
                let queue = ctx.names.queue.clone();
                ctx.client.queue_declare_as(1, &queue, QueueFlags::AUTO_DELETE);
                consume_tagged(ctx, 1, "diff-tag");
                consume_tagged(ctx, 1, "diff-tag");
            },
            rabbitmq: ConnectionClose(
                NOT_ALLOWED,
                BASIC_CONSUME,
                "NOT_ALLOWED - attempt to reuse consumer tag 'diff-tag'",
            ),
        },
    ]
}

fn settle_and_mode_scenarios() -> Vec<Scenario> {
    use Expect::*;
    vec![
        Scenario {
            name: "basic.ack of an unknown delivery tag",
            start: Start::Channel,
            provoke: |ctx| ctx.client.ack(1, 5, false),
            rabbitmq: ChannelClose(
                1,
                PRECONDITION_FAILED,
                BASIC_ACK,
                "PRECONDITION_FAILED - unknown delivery tag 5",
            ),
        },
        Scenario {
            name: "basic.ack multiple on tag 0 with nothing unacked",
            start: Start::Channel,
            provoke: |ctx| ctx.client.ack(1, 0, true),
            rabbitmq: StillOpen,
        },
        Scenario {
            name: "basic.ack multiple on an unknown tag",
            start: Start::Channel,
            provoke: |ctx| ctx.client.ack(1, 7, true),
            rabbitmq: ChannelClose(
                1,
                PRECONDITION_FAILED,
                BASIC_ACK,
                "PRECONDITION_FAILED - unknown delivery tag 7",
            ),
        },
        Scenario {
            name: "tx.commit without tx.select",
            start: Start::Channel,
            provoke: |ctx| ctx.client.send(1, TX_COMMIT, Args::new()),
            rabbitmq: ChannelClose(
                1,
                PRECONDITION_FAILED,
                TX_COMMIT,
                "PRECONDITION_FAILED - channel is not transactional",
            ),
        },
        Scenario {
            name: "confirm.select after tx.select",
            start: Start::Channel,
            provoke: |ctx| {
                ctx.client.tx_select(1);
                ctx.client
                    .send(1, CONFIRM_SELECT, Args::new().bits(&[false]));
            },
            rabbitmq: ChannelClose(
                1,
                PRECONDITION_FAILED,
                CONFIRM_SELECT,
                "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
            ),
        },
    ]
}

fn scenarios() -> Vec<Scenario> {
    let mut all = channel_method_scenarios();
    all.extend(unknown_method_and_close_scenarios());
    all.extend(content_scenarios());
    all.extend(framing_scenarios());
    all.extend(queue_scenarios());
    all.extend(missing_entity_scenarios());
    all.extend(exchange_and_consume_scenarios());
    all.extend(settle_and_mode_scenarios());
    all
}

/// The first thing the broker does that settles the scenario (answering any close with its
/// close-ok), or `StillOpen` after `SETTLE` without one.
fn observe(client: &mut Client) -> Outcome {
    let deadline = Instant::now() + SETTLE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = match client.recv_within(left) {
            Ok(m) => m,
            Err(RecvError::Quiet) => return Outcome::StillOpen,
            Err(RecvError::Closed) => return Outcome::Dropped,
            Err(RecvError::Broken(why)) if why.starts_with("a read error") => {
                return Outcome::Dropped
            }
            Err(RecvError::Broken(why)) => return Outcome::Other(why),
        };
        match m.id {
            CONNECTION_CLOSE => {
                let (code, text, class, method) = m.close_reason();
                let _ = client.try_write_all(&method_frame(0, CONNECTION_CLOSE_OK, Args::new()));
                return Outcome::ConnectionClose(code, (class, method), text);
            }
            CHANNEL_CLOSE => {
                let (code, text, class, method) = m.close_reason();
                let ok = method_frame(m.channel, CHANNEL_CLOSE_OK, Args::new());
                let _ = client.try_write_all(&ok);
                return Outcome::ChannelClose(m.channel, code, (class, method), text);
            }
            CONNECTION_CLOSE_OK => return Outcome::CloseOk,
            // The replies of the scenario's own steps (open-ok, declare-ok, ...).
            _ => continue,
        }
    }
}

/// For a scenario that starts on a bare socket: the bytes the broker sends before it closes.
fn observe_raw(client: &mut Client) -> Outcome {
    match client.read_until_closed() {
        (reply, true) if reply == PROTOCOL_HEADER.to_vec() => Outcome::HeaderThenDropped,
        (reply, true) if reply.is_empty() => Outcome::Dropped,
        (reply, closed) => Outcome::Other(format!("{reply:?} (socket closed: {closed})")),
    }
}

fn run(port: u16, scenario: &Scenario) -> (Outcome, Names) {
    let mut client = Client::tcp(port, scenario.name);
    let mut tune = None;
    match scenario.start {
        Start::Tcp => {}
        Start::Tuning => tune = Some(client.start_until_tune()),
        Start::Open => {
            client.handshake(None);
        }
        Start::Channel => {
            client.handshake(None);
            client.open_channel(1);
        }
    }
    let mut ctx = Ctx {
        port,
        client,
        tune,
        others: Vec::new(),
        names: Names::new(),
    };
    (scenario.provoke)(&mut ctx);
    let outcome = match scenario.start {
        Start::Tcp => observe_raw(&mut ctx.client),
        _ => observe(&mut ctx.client),
    };
    drop(ctx.others);
    (outcome, ctx.names)
}

/// Deletes what a scenario may have left (a RabbitMQ node keeps it across runs), on a fresh
/// connection, which also proves the broker still serves after the scenario.
fn clean_up(port: u16, names: &Names, scenario: &str) {
    let mut client = Client::connect_as(port, &format!("a fresh connection after {scenario}"));
    client.open_channel(1);
    client.open_channel(2);
    let queue = Args::new()
        .u16(0)
        .short(&names.queue)
        .bits(&[false, false, false]);
    client.send(1, QUEUE_DELETE, queue);
    let exchange = Args::new()
        .u16(0)
        .short(&names.exchange)
        .bits(&[false, false]);
    client.send(2, EXCHANGE_DELETE, exchange);
    let close = Args::new().u16(REPLY_SUCCESS).short("bye").u16(0).u16(0);
    client.send(0, CONNECTION_CLOSE, close);
    // Deleting what is not there may be refused (channel.close): only close-ok matters.
    while client.recv().id != CONNECTION_CLOSE_OK {}
}

/// Runs every scenario on `port`; returns the table of outcomes and the scenarios whose
/// outcome is not RabbitMQ's (`strict`: exactly; else a dropped socket may be the spec's
/// connection.close).
fn run_all(port: u16, strict: bool) -> (String, Vec<String>) {
    let mut table = String::new();
    let mut mismatches = Vec::new();
    for scenario in scenarios() {
        let (outcome, names) = run(port, &scenario);
        let ok = scenario.rabbitmq.matches(&outcome, &names, strict);
        let mark = if ok { "ok  " } else { "DIFF" };
        table.push_str(&format!(
            "{mark} {}\n       expected {:?}\n       got      {outcome}\n",
            scenario.name, scenario.rabbitmq
        ));
        if !ok {
            mismatches.push(format!(
                "{}: expected RabbitMQ's {:?}, got {outcome}",
                scenario.name, scenario.rabbitmq
            ));
        }
        clean_up(port, &names, scenario.name);
    }
    (table, mismatches)
}

#[test]
fn warren_answers_protocol_errors_as_rabbitmq_does() {
    let broker = Broker::start(&[]);
    let (table, mismatches) = run_all(broker.port(), false);
    eprintln!("--- outcomes on port {} ---\n{table}", broker.port());
    assert!(
        mismatches.is_empty(),
        "expected every scenario answered as RabbitMQ 3.10 answers it, got {} differences:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn rabbitmq_still_gives_the_pinned_answers() {
    let Ok(port) = std::env::var(RABBITMQ_PORT_ENV) else {
        eprintln!("{RABBITMQ_PORT_ENV} is not set: the pins are not re-verified");
        return;
    };
    let port: u16 = port.trim().parse().unwrap_or_else(|e| {
        panic!("expected {RABBITMQ_PORT_ENV} to be a port, got {port:?} ({e})")
    });
    let (table, mismatches) = run_all(port, true);
    eprintln!("--- RabbitMQ on port {port} ---\n{table}");
    assert!(
        mismatches.is_empty(),
        "expected RabbitMQ to still give the pinned answers, got {} differences:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
