//! A producer: one connection, a writer thread and a reader thread.
//!
//! The writer copies pre-encoded publish+header frames into one output
//! buffer, appends each body frame (a CLOCK_MONOTONIC timestamp in its first
//! 8 bytes, zeros after), and sends the batch with one `write` of up to
//! `BATCH_BYTES`. The reader drains the socket for confirms (basic.ack /
//! basic.nack, usually `multiple`), returns, connection.blocked and errors,
//! and wakes the writer when confirms open the window again.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use warren::protocol::constants::{FRAME_END, FRAME_METHOD, FRAME_OVERHEAD};
use warren::protocol::frame::{body_frame_prefix, encode_method};
use warren::protocol::method::{
    peek_ids, BasicAck, BasicNack, ConfirmSelect, ConfirmSelectOk, ConnectionClose,
    ConnectionCloseOk,
};
use warren::protocol::Method;

use super::conn::{close_error, is_timeout, write_all_unless, Conn, Error, ABORT, STOPPED};
use super::link::Link;
use super::stats::{clock_ns, Shared};

/// A batch is flushed once it holds this many bytes.
const BATCH_BYTES: usize = 128 * 1024;
/// How long to wait for outstanding confirms after the run.
const CONFIRM_DRAIN: Duration = Duration::from_secs(2);

pub struct ProducerSpec {
    pub index: usize,
    /// Publish + content-header frames, cycled through.
    pub templates: Vec<Bytes>,
    pub body_size: usize,
    pub confirm_window: Option<u64>,
    pub rate_per_sec: Option<f64>,
}

/// Runs a producer on an open connection until `stop_producers`.
pub fn run(mut conn: Conn, spec: ProducerSpec, shared: Arc<Shared>) -> Result<(), Error> {
    if spec.confirm_window.is_some() {
        conn.rpc(
            1,
            ConfirmSelect { nowait: false }.into(),
            (ConfirmSelectOk::CLASS_ID, ConfirmSelectOk::METHOD_ID),
        )?;
    }
    let sock = conn.sock.clone();
    let confirmed = Arc::new(AtomicU64::new(0));
    let closing = Arc::new(AtomicBool::new(false));
    let reader = {
        let (confirmed, closing, shared) = (confirmed.clone(), closing.clone(), shared.clone());
        let writer = thread::current();
        let name = format!("producer-{}", spec.index);
        thread::Builder::new()
            .name(format!("{name}-reader"))
            .spawn(move || {
                if let Err(e) = read_loop(conn, &confirmed, &closing, &shared, &writer) {
                    shared.fail(&name, e);
                }
                writer.unpark();
            })
            .map_err(|e| format!("spawning a reader thread: {e}"))?
    };
    let result = write_loop(&sock, &spec, &shared, &confirmed);
    closing.store(true, Ordering::Release);
    if let Ok(false) = result {
        // A batch was cut short: the stream ends mid-frame, so no close.
        sock.shutdown();
        let _ = reader.join();
        return Ok(());
    }
    // Close politely so the broker logs no error, and let the reader see
    // close-ok (or give up after its deadline).
    let mut out = BytesMut::with_capacity(64);
    encode_method(
        &mut out,
        0,
        &ConnectionClose {
            reply_code: 200,
            reply_text: Bytes::from_static(b"warren-perf done"),
            ..Default::default()
        }
        .into(),
    );
    let _ = write_all_unless(&sock, &out, Some(&shared.stop_producers));
    let _ = reader.join();
    result.map(|_| ())
}

/// Publishes until `stop_producers`; `Ok(false)` when the broker stopped
/// taking bytes mid-batch at the end, leaving a partial frame on the wire.
fn write_loop(
    sock: &Link,
    spec: &ProducerSpec,
    shared: &Shared,
    confirmed: &AtomicU64,
) -> Result<bool, Error> {
    while !shared.go.load(Ordering::Acquire) {
        if ABORT.load(Ordering::Relaxed) || shared.stop_producers.load(Ordering::Relaxed) {
            return Ok(true);
        }
        thread::sleep(Duration::from_millis(1));
    }
    let frame_max = super::conn::FRAME_MAX_BYTES as usize;
    let chunk_max = frame_max - FRAME_OVERHEAD as usize;
    let mut out = BytesMut::with_capacity(BATCH_BYTES + spec.body_size + 4096);
    let templates = &spec.templates;
    let mut next_template = 0usize;
    let mut sent: u64 = 0;
    let started = Instant::now();
    while !shared.stop_producers.load(Ordering::Relaxed) {
        if ABORT.load(Ordering::Relaxed) {
            return Err("aborted".into());
        }
        let mut allowed = u64::MAX;
        if let Some(window) = spec.confirm_window {
            let outstanding = sent - confirmed.load(Ordering::Acquire);
            if outstanding >= window {
                thread::park_timeout(Duration::from_millis(5));
                continue;
            }
            allowed = window - outstanding;
        }
        if let Some(rate) = spec.rate_per_sec {
            // Message k is due at k / rate seconds after the start.
            let elapsed = started.elapsed().as_secs_f64();
            let due = (elapsed * rate) as u64 + 1;
            if due <= sent {
                let next_at = sent as f64 / rate;
                let wait = (next_at - elapsed).clamp(0.0, 0.05);
                thread::sleep(Duration::from_secs_f64(wait));
                continue;
            }
            allowed = allowed.min(due - sent);
        }
        out.clear();
        let now_ns = clock_ns();
        let mut count = 0u64;
        while count < allowed && out.len() < BATCH_BYTES {
            out.extend_from_slice(&templates[next_template]);
            next_template += 1;
            if next_template == templates.len() {
                next_template = 0;
            }
            put_body(&mut out, spec.body_size, chunk_max, now_ns);
            count += 1;
        }
        match write_all_unless(sock, &out, Some(&shared.stop_producers)) {
            Ok(()) => {}
            Err(e) if e == STOPPED => {
                // Not counted as published: the broker never took it all.
                shared.blocked_at_stop.fetch_add(1, Ordering::Relaxed);
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        sent += count;
        shared.published.fetch_add(count, Ordering::Relaxed);
    }
    if spec.confirm_window.is_some() {
        let deadline = Instant::now() + CONFIRM_DRAIN;
        while confirmed.load(Ordering::Acquire) < sent
            && Instant::now() < deadline
            && !ABORT.load(Ordering::Relaxed)
        {
            thread::park_timeout(Duration::from_millis(5));
        }
    }
    Ok(true)
}

/// Appends the body frames of one message: its first 8 bytes are the send
/// time (big-endian ns), when the body is that long.
fn put_body(out: &mut BytesMut, body_size: usize, chunk_max: usize, now_ns: u64) {
    let mut left = body_size;
    let mut first = true;
    while left > 0 {
        let len = left.min(chunk_max);
        body_frame_prefix(out, 1, len as u32);
        if first && len >= 8 {
            out.put_u64(now_ns);
            out.put_bytes(0, len - 8);
        } else {
            out.put_bytes(0, len);
        }
        out.put_u8(FRAME_END);
        first = false;
        left -= len;
    }
}

/// Counts confirmed publishes exactly, whether the broker acks one by one,
/// with `multiple`, or a mix.
#[derive(Default)]
struct ConfirmTracker {
    /// Every tag up to here is confirmed.
    through: u64,
    /// Tags above `through` confirmed singly.
    singles: BTreeSet<u64>,
    count: u64,
}

impl ConfirmTracker {
    fn confirm(&mut self, tag: u64, multiple: bool) {
        if tag <= self.through {
            return;
        }
        if multiple {
            let above = self.singles.split_off(&(tag + 1));
            self.count += (tag - self.through) - self.singles.len() as u64;
            self.singles = above;
            self.through = tag;
        } else if self.singles.insert(tag) {
            self.count += 1;
        }
        while self.singles.first() == Some(&(self.through + 1)) {
            self.singles.pop_first();
            self.through += 1;
        }
    }
}

fn read_loop(
    mut conn: Conn,
    confirmed: &AtomicU64,
    closing: &AtomicBool,
    shared: &Shared,
    writer: &thread::Thread,
) -> Result<(), Error> {
    let mut tracker = ConfirmTracker::default();
    let mut close_deadline: Option<Instant> = None;
    loop {
        match conn.fill() {
            Ok(0) if closing.load(Ordering::Acquire) => return Ok(()),
            Ok(0) => return Err("the broker closed the connection".into()),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(format!("reading from the broker: {e}")),
        }
        if closing.load(Ordering::Acquire) {
            let deadline = *close_deadline.get_or_insert_with(|| Instant::now() + CONFIRM_DRAIN);
            if Instant::now() > deadline || ABORT.load(Ordering::Relaxed) {
                return Ok(());
            }
        } else if ABORT.load(Ordering::Relaxed) {
            return Ok(());
        }
        let before = tracker.count;
        while let Some(frame) = conn.parse()? {
            if frame.kind != FRAME_METHOD {
                continue; // content of a basic.return
            }
            match peek_ids(&frame.payload) {
                Some((BasicAck::CLASS_ID, BasicAck::METHOD_ID)) => {
                    if let Ok(Method::BasicAck(ack)) = Method::decode(frame.payload) {
                        tracker.confirm(ack.delivery_tag, ack.multiple);
                    }
                }
                Some((BasicNack::CLASS_ID, BasicNack::METHOD_ID)) => {
                    if let Ok(Method::BasicNack(nack)) = Method::decode(frame.payload) {
                        let old = tracker.count;
                        tracker.confirm(nack.delivery_tag, nack.multiple);
                        shared
                            .nacked
                            .fetch_add(tracker.count - old, Ordering::Relaxed);
                    }
                }
                Some((ConnectionCloseOk::CLASS_ID, ConnectionCloseOk::METHOD_ID)) => {
                    return Ok(());
                }
                _ => {
                    let method = Method::decode(frame.payload)
                        .map_err(|e| format!("undecodable method from the broker: {e}"))?;
                    match &method {
                        Method::BasicReturn(_) => {
                            shared.returned.fetch_add(1, Ordering::Relaxed);
                        }
                        Method::ConnectionBlocked(_) => {
                            shared.blocked.fetch_add(1, Ordering::Relaxed);
                        }
                        Method::ConnectionUnblocked(_) => {}
                        other => {
                            if let Some(err) = close_error(other) {
                                return Err(err);
                            }
                        }
                    }
                }
            }
        }
        if tracker.count != before {
            confirmed.store(tracker.count, Ordering::Release);
            shared
                .confirmed
                .fetch_add(tracker.count - before, Ordering::Relaxed);
            writer.unpark();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ConfirmTracker;

    #[test]
    fn confirm_tracker_counts_mixed_single_and_multiple_acks() {
        let mut t = ConfirmTracker::default();
        t.confirm(2, false);
        t.confirm(5, false);
        assert_eq!(t.count, 2);
        t.confirm(3, true); // confirms 1 and 3; 2 was already counted
        assert_eq!((t.count, t.through), (4, 3));
        t.confirm(5, true); // confirms 4; 5 already counted
        assert_eq!((t.count, t.through), (5, 5));
        t.confirm(4, false);
        assert_eq!(t.count, 5, "a tag below `through` is not counted twice");
    }
}
