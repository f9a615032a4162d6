//! The writer task: swaps the connection's output buffer out and writes it with one syscall
//! per turn, so many frames share one write; then returns transit credit for the deliveries
//! it wrote, so their queues may send more.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::{Conn, Credit, SPARE_KEEP_BYTES};
use crate::broker::ShardMsg;
use crate::io::Stream;
use crate::shard::Shard;

/// Writes whatever the connection produced, one write per turn.
pub async fn write_loop(shard: Rc<Shard>, conn: Rc<Conn>, stream: Rc<Stream>) {
    let mut spare = BytesMut::new();
    let mut credits: Vec<Credit> = Vec::new();
    loop {
        conn.emit_confirms();
        if conn.out.borrow().is_empty() {
            if conn.done.get() {
                return;
            }
            conn.writable.notified().await;
            continue;
        }
        let buf = std::mem::replace(&mut *conn.out.borrow_mut(), spare);
        // The deliveries in this buffer: once it is written, their queues may send more.
        std::mem::swap(&mut credits, &mut *conn.credits.borrow_mut());
        let stall = Duration::from_secs(shard.config.writer_timeout_secs);
        let written = buf.len();
        let (result, mut buf) = stream.write_all(buf, stall).await;
        conn.io_counts.sent(written);
        if let Err(err) = result {
            if err.kind() == std::io::ErrorKind::TimedOut {
                crate::warn!(
                    "closing AMQP connection {}: the client read nothing for {} s (writer timeout)",
                    conn.peer,
                    stall.as_secs()
                );
            }
            conn.done.set(true);
            stream.shutdown();
            return;
        }
        for credit in credits.drain(..) {
            let msg = ShardMsg::Credit {
                queue: credit.queue,
                consumer_id: credit.consumer_id,
                n: credit.n,
            };
            shard.send(credit.queue.shard as usize, msg);
        }
        shard.flush();
        conn.last_write.set(Instant::now());
        buf.clear();
        spare = if buf.capacity() <= SPARE_KEEP_BYTES {
            buf
        } else {
            BytesMut::new()
        };
    }
}
