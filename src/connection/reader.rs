//! The reader task: reads into a `BytesMut`, splits complete frames off it without copying,
//! and hands each to the handshake (channel 0) or its channel. It stops reading while a ring
//! to another shard is full, while the connection's output is backed up, and while a resource
//! alarm blocks a publisher: that is how backpressure reaches the peer's socket.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::error::{method_error, HardError};
use super::{channel, handshake, Conn, Phase};
use super::{
    CLOSE_OK_TIMEOUT, FRAMES_PER_TURN, OUTPUT_HIGH_WATER_BYTES, READ_MAX_BYTES, READ_MIN_BYTES,
};
use crate::io::Stream;
use crate::io::{self, time};
use crate::protocol::constants::*;
use crate::protocol::method::*;
use crate::protocol::{parse_frame, Frame, Method};
use crate::shard::Shard;

pub async fn read_loop(shard: &Rc<Shard>, conn: &Rc<Conn>, stream: &Stream) {
    let mut buf = BytesMut::new();
    let mut want = READ_MIN_BYTES;
    let handshake_deadline =
        Instant::now() + Duration::from_secs(shard.config.handshake_timeout_secs);
    loop {
        if !wait_for_room(shard, conn).await {
            return;
        }
        if buf.capacity() - buf.len() < want {
            buf.reserve(want);
        }
        let offered = buf.capacity() - buf.len();
        // The read appends after what is in `buf`: a partial frame stays in front, untouched.
        let (result, b) = match read_limit(conn, handshake_deadline) {
            None => stream.read(buf).await,
            Some(limit) => match time::timeout(limit, stream.read(buf)).await {
                Ok(r) => r,
                Err(_) => {
                    if conn.state.borrow().phase != Phase::Closing {
                        let secs = shard.config.handshake_timeout_secs;
                        crate::warn!(
                            "closing AMQP connection {}: handshake timeout (no connection.open within {secs} s)",
                            conn.peer
                        );
                    }
                    return;
                }
            },
        };
        buf = b;
        let n = match result {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        conn.last_read.set(Instant::now());
        conn.io_counts.received(n);
        want = if n == offered {
            (want * 2).min(READ_MAX_BYTES)
        } else if n < want / 4 {
            (want / 2).max(READ_MIN_BYTES)
        } else {
            want
        };
        let more = process(shard, conn, &mut buf).await;
        shard.flush();
        if !more {
            return;
        }
    }
}

/// How long the next read may wait: until the handshake deadline while the handshake is
/// on (a peer that connects and sends nothing is closed, as RabbitMQ does), a few seconds
/// for close-ok once we closed, forever on an open connection (heartbeats watch it).
fn read_limit(conn: &Conn, handshake_deadline: Instant) -> Option<Duration> {
    match conn.state.borrow().phase {
        Phase::Opened | Phase::Closed => None,
        Phase::Closing => Some(CLOSE_OK_TIMEOUT),
        _ => Some(handshake_deadline.saturating_duration_since(Instant::now())),
    }
}

/// Waits while the connection must not be read: a resource alarm holds a publisher (its
/// heartbeats are not expected meanwhile, as in RabbitMQ), a ring to another shard is full,
/// the connection's own output is backed up, or a queue it publishes to holds back its
/// credit. False when the connection finished meanwhile.
async fn wait_for_room(shard: &Shard, conn: &Conn) -> bool {
    loop {
        let alarm = shard.alarms.state();
        if alarm == 0 || !conn.published.get() {
            break;
        }
        conn.tell_blocked(alarm);
        if conn.done.get() {
            return false;
        }
        shard.flush();
        time::sleep(crate::alarm::CHECK_EVERY / 2).await;
        conn.last_read.set(Instant::now());
    }
    if !wait_while_congested(shard, conn).await {
        return false;
    }
    while conn.waits_for_credit() {
        if conn.done.get() {
            return false;
        }
        shard.flush();
        let _ = time::timeout(CREDIT_RECHECK, conn.credit_back.notified()).await;
        // Not reading is our choice, not the peer's silence.
        conn.last_read.set(Instant::now());
    }
    true
}

/// Waits while a ring to another shard is full (the shard holds messages for it in its
/// bounded overflow) or the connection's own output is backed up. False when the connection
/// finished meanwhile.
async fn wait_while_congested(shard: &Shard, conn: &Conn) -> bool {
    while shard.congested() || conn.out.borrow().len() > OUTPUT_HIGH_WATER_BYTES {
        if conn.done.get() {
            return false;
        }
        shard.flush();
        time::sleep(Duration::from_micros(100)).await;
    }
    true
}

/// The first byte of a TLS ClientHello (a handshake record).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// How often a reader waiting for credit looks again without being woken (the connection
/// may have closed, or started consuming).
const CREDIT_RECHECK: Duration = Duration::from_millis(100);

/// Handles every complete frame in `buf`. Returns false when the connection is finished.
async fn process(shard: &Rc<Shard>, conn: &Rc<Conn>, buf: &mut BytesMut) -> bool {
    if conn.state.borrow().phase == Phase::Header {
        if buf.len() < 8 {
            return true;
        }
        let header = buf.split_to(8);
        if &header[..] != PROTOCOL_HEADER {
            if header[0] == TLS_HANDSHAKE_RECORD {
                crate::warn!(
                    "TLS handshake on the plain AMQP port from {}; use the TLS port (--tls-port, 5671 by default)",
                    conn.peer
                );
            }
            // Tell the client which protocol we speak, then hang up (AMQP 0-9-1 section 4.2.2).
            conn.out.borrow_mut().extend_from_slice(PROTOCOL_HEADER);
            conn.hang_up.set(true);
            conn.writable.notify_one();
            return false;
        }
        handshake::send_start(conn);
        conn.state.borrow_mut().phase = Phase::StartOk;
    }
    let mut budget = FRAMES_PER_TURN;
    loop {
        budget -= 1;
        if budget == 0 {
            // Let the shard's other connections and its mailbox (acks, credit) run: a
            // publisher with a full read buffer must not delay everyone's round trips.
            budget = FRAMES_PER_TURN;
            shard.flush();
            io::yield_now().await;
        }
        // Checked before every frame, not only before every read: one read may hold hundreds
        // of publishes, and the overflow for a full ring only has room for what one frame
        // fans out to.
        if shard.congested() && !wait_while_congested(shard, conn).await {
            return false;
        }
        let frame_max = conn.frame_max();
        let frame = match parse_frame(buf, frame_max) {
            Ok(Some(frame)) => frame,
            Ok(None) => return true,
            Err(err) => {
                // The stream cannot be re-synchronised after a framing error.
                conn.hard_close(HardError::new(FRAME_ERROR, err.to_string()));
                return false;
            }
        };
        let phase = conn.state.borrow().phase;
        match phase {
            Phase::Closed => return false,
            Phase::Closing => {
                if closing_frame(conn, &frame) {
                    return false;
                }
                continue;
            }
            _ => {}
        }
        match io::catch_unwind(handle_frame(shard, conn, frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => conn.hard_close(err),
            Err(panic) => {
                // A bug, not the peer's fault: this connection closes, the shard goes on.
                crate::error!("connection {}: handler panicked: {panic}", conn.peer);
                conn.hard_close(HardError::new(INTERNAL_ERROR, "internal error"));
                return false;
            }
        }
        if conn.state.borrow().phase == Phase::Closed {
            return false;
        }
    }
}

/// While we wait for close-ok, only connection.close(-ok) matters. Returns true when done.
fn closing_frame(conn: &Conn, frame: &Frame) -> bool {
    if frame.kind != FRAME_METHOD || frame.channel != 0 {
        return false;
    }
    match Method::decode(frame.payload.clone()) {
        Ok(Method::ConnectionCloseOk(_)) => true,
        Ok(Method::ConnectionClose(_)) => {
            conn.send_method(0, &Method::ConnectionCloseOk(ConnectionCloseOk {}));
            true
        }
        _ => false,
    }
}

async fn handle_frame(shard: &Rc<Shard>, conn: &Rc<Conn>, frame: Frame) -> Result<(), HardError> {
    let opened = conn.state.borrow().phase == Phase::Opened;
    match frame.kind {
        FRAME_HEARTBEAT => {
            if frame.channel != 0 {
                return Err(HardError::new(
                    UNEXPECTED_FRAME,
                    format!("heartbeat frame on channel {}", frame.channel),
                ));
            }
            Ok(())
        }
        // Like RabbitMQ, a channel's frame before connection.open is an unexpected frame.
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY if frame.channel != 0 && !opened => {
            Err(HardError::new(
                UNEXPECTED_FRAME,
                format!(
                    "frame type {} on channel {} before connection.open",
                    frame.kind, frame.channel
                ),
            ))
        }
        FRAME_METHOD => {
            let method = Method::decode(frame.payload).map_err(method_error)?;
            if frame.channel == 0 {
                handshake::connection_method(shard, conn, method).await
            } else {
                channel::method(shard, conn, frame.channel, method).await
            }
        }
        FRAME_HEADER | FRAME_BODY => {
            if frame.channel == 0 {
                return Err(HardError::new(
                    UNEXPECTED_FRAME,
                    "content frame on channel 0",
                ));
            }
            channel::content(shard, conn, frame)
        }
        other => Err(HardError::new(
            FRAME_ERROR,
            format!("unknown frame type {other}"),
        )),
    }
}
