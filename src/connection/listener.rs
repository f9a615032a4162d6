//! Accepting connections and serving each until it closes: the reader, writer and
//! heartbeat tasks, then the release of everything the connection held.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{heartbeat, reader, writer, Conn, LINGER_TIMEOUT};
use crate::broker::QueueOp;
use crate::broker::ShardMsg;
use crate::io::net::{TcpListener, TcpStream};
use crate::io::{self, time};
use crate::shard::Shard;

/// Accepts forever; past `--connection-max` open connections, a new one is closed at once.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) if shard.admit_connection() => {
                io::spawn(serve(shard.clone(), stream, peer));
            }
            Ok((stream, peer)) => {
                crate::warn!(
                    "refusing AMQP connection {peer}: connection_max ({}) reached",
                    shard.config.connection_max
                );
                stream.shutdown();
            }
            Err(err) => {
                crate::warn!("shard {}: accept failed: {err}", shard.id);
                time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Serves one connection until it closes, then releases everything it held.
async fn serve(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let stream = Rc::new(stream);
    let conn = shard.register(|cref| Conn::new(cref, peer));
    let writer = io::spawn(writer::write_loop(
        shard.clone(),
        conn.clone(),
        stream.clone(),
    ));
    let heartbeat = io::spawn(heartbeat::heartbeat_loop(conn.clone(), stream.clone()));
    reader::read_loop(&shard, &conn, &stream).await;
    conn.done.set(true);
    conn.writable.notify_one();
    let _ = time::timeout(Duration::from_secs(5), writer).await;
    heartbeat.abort();
    conn.untrack();
    release(&shard, &conn);
    shard.unregister(conn.cref);
    shard.connection_gone();
    if !conn.hang_up.get() {
        linger(&stream).await;
    }
}

/// Waits (bounded) for the peer to close first, as RabbitMQ does after close-ok: a client may
/// still be reading our last frames, and an early FIN or a reset (closing with unread input)
/// makes some clients report the close as an aborted connection.
async fn linger(stream: &TcpStream) {
    let deadline = Instant::now() + LINGER_TIMEOUT;
    let mut buf = bytes::BytesMut::with_capacity(4096);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match time::timeout(left, stream.read(buf)).await {
            Ok((Ok(n), mut b)) if n > 0 => {
                b.clear();
                buf = b;
            }
            _ => break,
        }
    }
}

/// The connection is gone: requeue its unacked messages, cancel its consumers and delete
/// its exclusive queues, on whichever shards they live (and no other shard is told).
fn release(shard: &Shard, conn: &Conn) {
    let channels: Vec<super::channel::Channel> = conn
        .state
        .borrow_mut()
        .channels
        .drain()
        .map(|(_, ch)| ch)
        .collect();
    for mut ch in channels {
        ch.release(shard);
    }
    // Only the shards that may hold an exclusive queue or consumer of this connection.
    let queue_shards = std::mem::take(&mut *conn.queue_shards.borrow_mut());
    for target in queue_shards {
        shard.send(
            target as usize,
            ShardMsg::Oneway(QueueOp::ConnectionClosed { conn: conn.cref }),
        );
    }
    shard.flush();
}
