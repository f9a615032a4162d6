//! The byte stream under one connection: a plain socket, or TLS (rustls, verified against
//! `--tls-ca`) over one. Clones share the connection, so a producer's writer thread and its
//! reader thread each hold one; with TLS they share one session behind a mutex that is never
//! held while a thread waits in a socket read.

use std::io::{self, BufRead, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use socket2::Socket;

/// Errors are the broker-facing text the tool reports.
type Error = String;

/// Deadline for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// A socket read or write that timed out (the socket has a short timeout so threads can see
/// their stop flags), as opposed to a failure.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Ciphertext read at once: one TLS record and its overhead.
const RECORD_BYTES: usize = 17 * 1024;

#[derive(Clone)]
pub struct Link(Arc<Inner>);

enum Inner {
    Plain(Socket),
    Tls {
        sock: Socket,
        /// Boxed: a session is over a kilobyte, a socket a word.
        session: Box<Mutex<ClientConnection>>,
    },
}

/// A client TLS configuration trusting the CA certificates in the PEM file `ca`.
pub fn client_config(ca: &std::path::Path) -> Result<Arc<ClientConfig>, Error> {
    let pem = std::fs::read(ca).map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Link {
    pub fn plain(sock: Socket) -> Link {
        Link(Arc::new(Inner::Plain(sock)))
    }

    /// Runs a TLS handshake with `host` over `sock`.
    pub fn tls(sock: Socket, config: Arc<ClientConfig>, host: &str) -> Result<Link, Error> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("TLS server name {host:?}: {e}"))?;
        let session = ClientConnection::new(config, name).map_err(|e| e.to_string())?;
        let link = Link(Arc::new(Inner::Tls {
            sock,
            session: Box::new(Mutex::new(session)),
        }));
        link.handshake()
            .map_err(|e| format!("TLS handshake with {host}: {e}"))?;
        Ok(link)
    }

    fn handshake(&self) -> io::Result<()> {
        let Inner::Tls { sock, session } = &*self.0 else {
            return Ok(());
        };
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        let mut s = lock(session);
        while s.is_handshaking() {
            if Instant::now() > deadline {
                return Err(io::ErrorKind::TimedOut.into());
            }
            while s.wants_write() {
                s.write_tls(&mut &*sock)?;
            }
            if s.is_handshaking() && s.wants_read() {
                match s.read_tls(&mut &*sock) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(_) => {
                        s.process_new_packets().map_err(io::Error::other)?;
                    }
                    Err(e) if is_timeout(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        while s.wants_write() {
            s.write_tls(&mut &*sock)?;
        }
        Ok(())
    }

    /// One write, as `Write::write` (a timeout is an error for which `is_timeout` holds).
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match &*self.0 {
            Inner::Plain(sock) => (&*sock).write(buf),
            Inner::Tls { sock, session } => {
                let mut s = lock(session);
                let mut n = s.writer().write(buf)?;
                flush(&mut s, sock)?;
                if n == 0 {
                    n = s.writer().write(buf)?;
                    flush(&mut s, sock)?;
                }
                Ok(n)
            }
        }
    }

    /// Appends what arrives to `rbuf` (at most `chunk` bytes on plain TCP). `Ok(0)` is end
    /// of stream; a timeout is an error for which `is_timeout` holds.
    pub fn recv(&self, rbuf: &mut BytesMut, chunk: usize) -> io::Result<usize> {
        match &*self.0 {
            Inner::Plain(sock) => {
                rbuf.reserve(chunk);
                let len = rbuf.len();
                let n = sock.recv(rbuf.spare_capacity_mut())?;
                // SAFETY: `recv` reports that the kernel initialized the first `n` bytes of
                // the spare capacity it was handed.
                unsafe { rbuf.set_len(len + n) };
                Ok(n)
            }
            Inner::Tls { sock, session } => {
                if let Some(n) = plaintext(&mut lock(session), rbuf)? {
                    return Ok(n);
                }
                let mut cipher = [0u8; RECORD_BYTES];
                let got = (&*sock).read(&mut cipher)?;
                if got == 0 {
                    return Ok(0);
                }
                let mut s = lock(session);
                let (mut moved, mut closed) = (0, false);
                let mut fed = &cipher[..got];
                while !fed.is_empty() {
                    s.read_tls(&mut fed)?;
                    s.process_new_packets().map_err(io::Error::other)?;
                    // Drained record by record: the session holds little plaintext.
                    match plaintext(&mut s, rbuf)? {
                        Some(0) => closed = true,
                        Some(n) => moved += n,
                        None => {}
                    }
                }
                match (moved, closed) {
                    (0, true) => Ok(0),
                    // A record cut in two: the rest comes with the next read.
                    (0, false) => Err(io::ErrorKind::WouldBlock.into()),
                    (n, _) => Ok(n),
                }
            }
        }
    }

    pub fn shutdown(&self) {
        let sock = match &*self.0 {
            Inner::Plain(sock) | Inner::Tls { sock, .. } => sock,
        };
        let _ = sock.shutdown(std::net::Shutdown::Both);
    }
}

fn lock(session: &Mutex<ClientConnection>) -> MutexGuard<'_, ClientConnection> {
    session.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes what the session has to send; a timeout leaves the rest buffered there.
fn flush(s: &mut ClientConnection, sock: &Socket) -> io::Result<()> {
    while s.wants_write() {
        s.write_tls(&mut &*sock)?;
    }
    Ok(())
}

/// Moves decrypted bytes into `rbuf`: Some(n) when there were some (or Some(0) at the
/// peer's close_notify), None when the session has none yet.
fn plaintext(s: &mut ClientConnection, rbuf: &mut BytesMut) -> io::Result<Option<usize>> {
    let mut moved = 0;
    loop {
        let mut reader = s.reader();
        match reader.fill_buf() {
            Ok([]) => return Ok(Some(moved)),
            Ok(data) => {
                let n = data.len();
                rbuf.extend_from_slice(data);
                reader.consume(n);
                moved += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok((moved > 0).then_some(moved));
            }
            Err(e) => return Err(e),
        }
    }
}
