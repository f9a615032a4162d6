//! TLS (AMQPS) over the I/O seam: rustls' buffered API on top of [`TcpStream`], so both
//! backends serve it unchanged.
//!
//! The handshake runs to completion ([`accept`]) before the connection's tasks start. After
//! it, the reader feeds ciphertext to the session and copies plaintext out into its own
//! `BytesMut`; the writer hands plaintext to the session and writes what the session
//! produced. Each direction keeps one ciphertext buffer for reuse (`rx` for the reader, `tx`
//! for the writer), so a frame costs no allocation beyond rustls' own. The session sits in a
//! `RefCell`, borrowed only between awaits, never across one. Anything rustls wants to send
//! because of what the reader fed it (a key update reply, an alert) goes out with the
//! writer's next write, and the heartbeats guarantee there is one.

mod certs;
mod identity;

use std::cell::RefCell;
use std::io::{self, BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use rustls::ServerConnection;

use super::net::TcpStream;

pub use certs::{CertFiles, ServerTls};
pub use identity::{login_name, LoginFrom};

/// The settings a TLS listener hands each new connection.
pub type TlsConfig = Arc<rustls::ServerConfig>;

/// Ciphertext read at once: one TLS record of 16 KiB plus its overhead.
const RX_BYTES: usize = 17 * 1024;

pub struct TlsStream {
    tcp: TcpStream,
    session: RefCell<ServerConnection>,
    /// Ciphertext read but not yet taken by the session (reader side only).
    rx: RefCell<BytesMut>,
    /// Ciphertext produced by the session, waiting for the socket (writer side only).
    tx: RefCell<BytesMut>,
}

/// Why a handshake failed, for the log line.
#[derive(Debug)]
pub struct HandshakeError {
    pub cause: String,
    /// The first bytes looked like an AMQP protocol header.
    pub plaintext_amqp: bool,
}

/// Runs the server side of the handshake on `tcp` within `limit`.
pub async fn accept(
    tcp: TcpStream,
    config: TlsConfig,
    limit: Duration,
) -> Result<TlsStream, HandshakeError> {
    let session = ServerConnection::new(config).map_err(|e| HandshakeError {
        cause: e.to_string(),
        plaintext_amqp: false,
    })?;
    let stream = TlsStream {
        tcp,
        session: RefCell::new(session),
        rx: RefCell::new(BytesMut::with_capacity(RX_BYTES)),
        tx: RefCell::new(BytesMut::new()),
    };
    let mut plaintext_amqp = false;
    let handshake = stream.handshake(limit, &mut plaintext_amqp);
    match super::time::timeout(limit, handshake).await {
        Ok(Ok(())) => Ok(stream),
        Ok(Err(cause)) => Err(HandshakeError {
            cause: cause.to_string(),
            plaintext_amqp,
        }),
        Err(_) => Err(HandshakeError {
            cause: format!("no handshake within {} s", limit.as_secs()),
            plaintext_amqp: false,
        }),
    }
}

impl TlsStream {
    /// Sets `plaintext_amqp` when the client's first bytes are an AMQP protocol header.
    async fn handshake(&self, stall: Duration, plaintext_amqp: &mut bool) -> io::Result<()> {
        self.fill().await?;
        *plaintext_amqp = self.rx.borrow().starts_with(b"AMQP");
        loop {
            let (fed, handshaking) = {
                let mut session = self.session.borrow_mut();
                let fed = feed(&mut session, &mut self.rx.borrow_mut());
                (fed, session.is_handshaking())
            };
            // Whatever the session wants to say goes out first, alerts included.
            self.flush(stall).await?;
            fed?;
            if !handshaking {
                return Ok(());
            }
            self.fill().await?;
        }
    }

    /// Reads more ciphertext into `rx`; end of stream is an error here.
    async fn fill(&self) -> io::Result<()> {
        let mut rx = std::mem::take(&mut *self.rx.borrow_mut());
        rx.reserve(RX_BYTES);
        let (res, rx) = self.tcp.read(rx).await;
        *self.rx.borrow_mut() = rx;
        match res? {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            _ => Ok(()),
        }
    }

    /// Writes what the session has to send.
    async fn flush(&self, stall: Duration) -> io::Result<()> {
        self.write_all(BytesMut::new(), stall).await.0
    }

    /// Reads plaintext into the spare capacity of `buf`, as [`TcpStream::read`] does.
    pub async fn read(&self, mut buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        loop {
            let spare = buf.capacity() - buf.len();
            if spare == 0 {
                return (Ok(0), buf);
            }
            let got = {
                let mut session = self.session.borrow_mut();
                let fed = feed(&mut session, &mut self.rx.borrow_mut());
                plaintext(&mut session, &mut buf, spare, fed)
            };
            match got {
                Some(res) => return (res, buf),
                None => {
                    if let Err(e) = self.fill().await {
                        let res = match e.kind() {
                            io::ErrorKind::UnexpectedEof => Ok(0),
                            _ => Err(e),
                        };
                        return (res, buf);
                    }
                }
            }
        }
    }

    /// Encrypts all of `buf` and writes it, handing `buf` back for reuse; fails with
    /// `TimedOut` when one write makes no progress for `stall`.
    pub async fn write_all(&self, buf: BytesMut, stall: Duration) -> (io::Result<()>, BytesMut) {
        let mut done = 0;
        loop {
            let mut tx = std::mem::take(&mut *self.tx.borrow_mut());
            let sealed = {
                let mut session = self.session.borrow_mut();
                seal(&mut session, &buf[done..], &mut tx)
            };
            let taken = match sealed {
                Ok(n) => n,
                Err(e) => return (Err(e), buf),
            };
            done += taken;
            if tx.is_empty() {
                *self.tx.borrow_mut() = tx;
                return (Ok(()), buf);
            }
            let (res, mut tx) = self.tcp.write_all(tx, stall).await;
            tx.clear();
            *self.tx.borrow_mut() = tx;
            if let Err(e) = res {
                return (Err(e), buf);
            }
        }
    }

    /// Sends close_notify: the peer learns that the end of the stream is no truncation.
    pub async fn close_notify(&self) {
        self.session.borrow_mut().send_close_notify();
        let _ = self.flush(Duration::from_secs(1)).await;
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.tcp.set_nodelay(on)
    }

    pub fn shutdown(&self) {
        self.tcp.shutdown();
    }

    /// The client's certificate, when it presented one (the chain was verified by then).
    pub fn peer_certificate(&self) -> Option<rustls::pki_types::CertificateDer<'static>> {
        let session = self.session.borrow();
        session.peer_certificates()?.first().cloned()
    }

    /// The negotiated protocol version and cipher suite, for the log.
    pub fn describe(&self) -> String {
        let (version, suite) = self.negotiated();
        format!("{version} {suite}")
    }

    /// The negotiated protocol version (`TLSv1_3`) and cipher suite, by rustls' names.
    pub fn negotiated(&self) -> (&'static str, &'static str) {
        let session = self.session.borrow();
        let version = session
            .protocol_version()
            .and_then(|v| v.as_str())
            .unwrap_or("TLS");
        let suite = session
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or("?");
        (version, suite)
    }
}

/// Hands the session the ciphertext in `rx` it can take now and processes it; what it could
/// not take yet (its plaintext buffer is full) stays at the front of `rx`.
fn feed(session: &mut ServerConnection, rx: &mut BytesMut) -> io::Result<()> {
    while !rx.is_empty() && session.wants_read() {
        let mut slice = &rx[..];
        let n = session.read_tls(&mut slice)?;
        let _ = rx.split_to(n);
        session
            .process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if n == 0 {
            break;
        }
    }
    Ok(())
}

/// Copies available plaintext into `buf`, up to `spare` bytes, without zeroing anything
/// first. `None`: the session needs more ciphertext first.
fn plaintext(
    session: &mut ServerConnection,
    buf: &mut BytesMut,
    spare: usize,
    fed: io::Result<()>,
) -> Option<io::Result<usize>> {
    let mut copied = 0;
    let mut reader = session.reader();
    while copied < spare {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if copied == 0 => return Some(Err(e)),
            Err(_) => break,
        };
        if chunk.is_empty() {
            // The peer sent close_notify.
            return Some(Ok(copied));
        }
        let n = chunk.len().min(spare - copied);
        buf.extend_from_slice(&chunk[..n]);
        reader.consume(n);
        copied += n;
    }
    match (copied, fed) {
        (0, Err(e)) => Some(Err(e)),
        (0, Ok(())) => None,
        (n, _) => Some(Ok(n)),
    }
}

/// Hands the session as much of `plain` as it takes and moves the ciphertext it produced
/// into `tx`. Returns how much of `plain` it took.
fn seal(session: &mut ServerConnection, plain: &[u8], tx: &mut BytesMut) -> io::Result<usize> {
    let taken = if plain.is_empty() {
        0
    } else {
        session.writer().write(plain)?
    };
    let mut out = tx.writer();
    while session.wants_write() {
        session.write_tls(&mut out)?;
    }
    Ok(taken)
}
