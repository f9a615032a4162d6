//! A consumer: one connection, one thread, one `basic.consume`.
//!
//! Each `recv` brings a batch of frames; the thread takes the clock once for
//! the batch, records one latency sample per message from the timestamp in
//! its first body frame, and answers with at most one write of acks
//! (`multiple` every `ack_every` deliveries), or of nacks (requeue=false)
//! when its queue is to dead-letter what it got.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use warren::protocol::constants::{FRAME_BODY, FRAME_METHOD};
use warren::protocol::frame::encode_method;
use warren::protocol::method::{
    peek_ids, BasicAck, BasicCancel, BasicConsume, BasicConsumeOk, BasicDeliver, BasicNack,
    BasicQos, BasicQosOk, ConnectionClose, ConnectionCloseOk,
};
use warren::protocol::Method;

use super::conn::{close_error, is_timeout, Conn, Error, ABORT};
use super::stats::{clock_ns, Shared};

/// Highest latency the histogram holds: 60 s, in ns.
const LATENCY_MAX_NS: u64 = 60_000_000_000;

/// What a consumer does with its deliveries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Counts them as consumed, records latency and acks them (unless autoack).
    Consume,
    /// Counts them as consumed and nacks them with requeue=false: the queue
    /// dead-letters them. No latency: that is measured where they arrive.
    Reject,
    /// Reads a dead-letter queue: counts them as dead-lettered, records latency.
    DeadLetters,
}

pub struct ConsumerSpec {
    pub index: usize,
    pub queue: String,
    pub role: Role,
    pub autoack: bool,
    pub ack_every: u64,
    pub prefetch: Option<u16>,
}

pub struct ConsumerResult {
    pub latency_ns: Histogram<u64>,
}

pub fn new_histogram() -> Histogram<u64> {
    // 3 significant digits from 1 ns to 60 s: ~ 0.1 % error, ~ 600 KiB.
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3).expect("constant bounds are valid")
}

/// Subscribes; returns once consume-ok arrived, so the caller knows every
/// consumer is in place before producers start.
pub fn subscribe(conn: &mut Conn, spec: &ConsumerSpec) -> Result<(), Error> {
    if let Some(prefetch_count) = spec.prefetch {
        conn.rpc(
            1,
            BasicQos {
                prefetch_count,
                ..Default::default()
            }
            .into(),
            (BasicQosOk::CLASS_ID, BasicQosOk::METHOD_ID),
        )?;
    }
    conn.rpc(
        1,
        BasicConsume {
            queue: Bytes::from(spec.queue.clone().into_bytes()),
            consumer_tag: Bytes::from(format!("warren-perf-{}", spec.index).into_bytes()),
            no_ack: spec.autoack,
            ..Default::default()
        }
        .into(),
        (BasicConsumeOk::CLASS_ID, BasicConsumeOk::METHOD_ID),
    )?;
    Ok(())
}

/// Consumes until `stop_consumers`, then acks what is pending and closes.
pub fn run(
    mut conn: Conn,
    spec: ConsumerSpec,
    shared: Arc<Shared>,
) -> (ConsumerResult, Option<Error>) {
    let mut latency_ns = new_histogram();
    let err = consume(&mut conn, &spec, &shared, &mut latency_ns).err();
    if err.is_none() {
        close(&mut conn);
    }
    (ConsumerResult { latency_ns }, err)
}

fn consume(
    conn: &mut Conn,
    spec: &ConsumerSpec,
    shared: &Shared,
    latency_ns: &mut Histogram<u64>,
) -> Result<(), Error> {
    let mut out = BytesMut::with_capacity(4096);
    let mut first_body_due = false;
    let mut unacked: u64 = 0;
    let mut last_tag: u64 = 0;
    loop {
        if shared.stop_consumers.load(Ordering::Relaxed) {
            break;
        }
        if ABORT.load(Ordering::Relaxed) {
            return Err("aborted".into());
        }
        match conn.fill() {
            Ok(0) => return Err("the broker closed the connection".into()),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => continue,
            Err(e) => return Err(format!("reading from the broker: {e}")),
        }
        let now_ns = clock_ns();
        let measuring = shared.measuring.load(Ordering::Relaxed) && spec.role != Role::Reject;
        let mut delivered = 0u64;
        while let Some(frame) = conn.parse()? {
            match frame.kind {
                FRAME_METHOD => match peek_ids(&frame.payload) {
                    Some((BasicDeliver::CLASS_ID, BasicDeliver::METHOD_ID)) => {
                        let Ok(Method::BasicDeliver(deliver)) = Method::decode(frame.payload)
                        else {
                            return Err("undecodable basic.deliver".into());
                        };
                        delivered += 1;
                        first_body_due = true;
                        if !spec.autoack {
                            last_tag = deliver.delivery_tag;
                            unacked += 1;
                            if unacked >= spec.ack_every {
                                settle(&mut out, last_tag, spec.role);
                                unacked = 0;
                            }
                        }
                    }
                    Some((BasicCancel::CLASS_ID, BasicCancel::METHOD_ID)) => {
                        return Err("the broker cancelled the consumer (queue deleted?)".into());
                    }
                    _ => {
                        let method = Method::decode(frame.payload)
                            .map_err(|e| format!("undecodable method from the broker: {e}"))?;
                        if let Some(err) = close_error(&method) {
                            return Err(err);
                        }
                    }
                },
                FRAME_BODY if first_body_due => {
                    first_body_due = false;
                    if let (true, Some(stamp)) = (measuring, frame.payload.get(..8)) {
                        let sent_ns = u64::from_be_bytes(stamp.try_into().unwrap_or_default());
                        if sent_ns > 0 && now_ns >= sent_ns {
                            latency_ns.saturating_record(now_ns - sent_ns);
                        }
                    }
                }
                _ => {}
            }
        }
        if delivered > 0 {
            let counter = match spec.role {
                Role::DeadLetters => &shared.dead_lettered,
                Role::Consume | Role::Reject => &shared.consumed,
            };
            counter.fetch_add(delivered, Ordering::Relaxed);
        }
        if !out.is_empty() {
            conn.send(&out)?;
            out.clear();
        }
    }
    if unacked > 0 {
        settle(&mut out, last_tag, spec.role);
        conn.send(&out)?;
    }
    Ok(())
}

/// basic.ack, or basic.nack with requeue=false for a `Reject` consumer, of
/// every delivery up to `delivery_tag`.
fn settle(out: &mut BytesMut, delivery_tag: u64, role: Role) {
    let method = match role {
        Role::Reject => BasicNack {
            delivery_tag,
            multiple: true,
            requeue: false,
        }
        .into(),
        Role::Consume | Role::DeadLetters => BasicAck {
            delivery_tag,
            multiple: true,
        }
        .into(),
    };
    encode_method(out, 1, &method);
}

/// connection.close, then up to a second for close-ok; errors are moot here.
fn close(conn: &mut Conn) {
    let close = ConnectionClose {
        reply_code: 200,
        reply_text: Bytes::from_static(b"warren-perf done"),
        ..Default::default()
    };
    if conn.send_method(0, close.into()).is_err() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        while let Ok(Some(frame)) = conn.parse() {
            if frame.kind == FRAME_METHOD
                && peek_ids(&frame.payload)
                    == Some((ConnectionCloseOk::CLASS_ID, ConnectionCloseOk::METHOD_ID))
            {
                return;
            }
        }
        match conn.fill() {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(_) => return,
        }
    }
}
