//! Accepting connections and serving each until it closes: the reader, writer and
//! heartbeat tasks, then the release of everything the connection held.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{heartbeat, lifecycle_log, reader, writer, Conn, Phase, LINGER_TIMEOUT};
use crate::broker::QueueOp;
use crate::broker::ShardMsg;
use crate::io::net::{TcpListener, TcpStream};
use crate::io::tls::{self, TlsConfig};
use crate::io::{self, time, Stream};
use crate::shard::Shard;

/// Accepts forever; past `--connection-max` open connections, a new one is closed at once.
/// With `tls`, each connection starts with a TLS handshake (the AMQPS listener).
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, tls: Option<TlsConfig>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) if shard.admit_connection() => {
                io::spawn(serve(shard.clone(), stream, peer, tls.clone()));
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
async fn serve(shard: Rc<Shard>, tcp: TcpStream, peer: SocketAddr, tls: Option<TlsConfig>) {
    let _ = tcp.set_nodelay(true);
    let Some((stream, cert_user, tls)) = secure(&shard, tcp, peer, tls).await else {
        shard.connection_gone();
        return;
    };
    let stream = Rc::new(stream);
    let conn = shard.register(|cref| Conn::new(cref, peer, cert_user, tls));
    let writer = io::spawn(writer::write_loop(
        shard.clone(),
        conn.clone(),
        stream.clone(),
    ));
    let heartbeat = io::spawn(heartbeat::heartbeat_loop(conn.clone(), stream.clone()));
    reader::read_loop(&shard, &conn, &stream).await;
    // Still open and not stopped by a timeout (which sets `done`): the client went away.
    if conn.state.borrow().phase == Phase::Opened && !conn.done.get() {
        lifecycle_log::vanished(&conn);
    }
    conn.done.set(true);
    conn.writable.notify_one();
    if time::timeout(Duration::from_secs(5), writer).await.is_ok() {
        // Only once the writer is done: a TLS close_notify must not cut into its records.
        let _ = time::timeout(Duration::from_secs(1), stream.close_notify()).await;
    }
    heartbeat.abort();
    conn.untrack();
    release(&shard, &conn);
    shard.unregister(conn.cref);
    shard.connection_gone();
    if !conn.hang_up.get() {
        linger(&stream).await;
    }
}

/// The connection's stream: plain, or TLS once the handshake completed. With a verified
/// client certificate, also the user name it stands for (EXTERNAL is offered then), and for
/// TLS the negotiated version and cipher suite. `None` when the handshake failed; that is
/// logged.
async fn secure(
    shard: &Shard,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsConfig>,
) -> Option<(Stream, Option<String>, Option<(&'static str, &'static str)>)> {
    let Some(config) = tls else {
        return Some((Stream::Plain(tcp), None, None));
    };
    let limit = Duration::from_secs(shard.config.handshake_timeout_secs);
    let stream = match tls::accept(tcp, config, limit).await {
        Ok(stream) => stream,
        Err(err) => {
            let hint = if err.plaintext_amqp {
                " (a plaintext AMQP client on the TLS port?)"
            } else {
                ""
            };
            crate::warn!("TLS handshake with {peer} failed: {}{hint}", err.cause);
            return None;
        }
    };
    let cert_user = stream.peer_certificate().and_then(|cert| {
        let from = shard.config.ssl_cert_login_from;
        let name = tls::login_name(&cert, from);
        if name.is_none() {
            let from = from.name();
            crate::warn!("TLS client {peer}: its certificate has no {from} to log in with");
        }
        name
    });
    crate::info!("TLS connection from {peer}: {}", stream.describe());
    let negotiated = stream.negotiated();
    Some((Stream::Tls(Box::new(stream)), cert_user, Some(negotiated)))
}

/// Waits (bounded) for the peer to close first, as RabbitMQ does after close-ok: a client may
/// still be reading our last frames, and an early FIN or a reset (closing with unread input)
/// makes some clients report the close as an aborted connection.
async fn linger(stream: &Stream) {
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
    let (channels, opened) = {
        let mut state = conn.state.borrow_mut();
        let channels: Vec<super::channel::Channel> =
            state.channels.drain().map(|(_, ch)| ch).collect();
        (channels, !state.vhost.is_empty())
    };
    if opened {
        crate::stats::add(crate::stats::Counter::ConnectionClosed, 1);
        let vhost = conn.state.borrow().vhost.clone();
        crate::stats::add_default_exchange(&vhost, conn.default_published.get());
    }
    crate::stats::add(crate::stats::Counter::ChannelClosed, channels.len() as u64);
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
