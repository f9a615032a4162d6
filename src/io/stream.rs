//! A client connection's byte stream: plain TCP, or TLS over TCP. The connection's tasks
//! take either through the same four calls; the match costs a branch per read or write.

use std::io;
use std::time::Duration;

use bytes::BytesMut;

use super::net::TcpStream;
use super::tls::TlsStream;

pub enum Stream {
    Plain(TcpStream),
    /// Boxed: a TLS session is over a kilobyte, a plain stream a few words.
    Tls(Box<TlsStream>),
}

impl Stream {
    /// Reads into the spare capacity of `buf` (see [`TcpStream::read`]).
    pub async fn read(&self, buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
        }
    }

    /// Writes all of `buf` (see [`TcpStream::write_all`]).
    pub async fn write_all(&self, buf: BytesMut, stall: Duration) -> (io::Result<()>, BytesMut) {
        match self {
            Stream::Plain(s) => s.write_all(buf, stall).await,
            Stream::Tls(s) => s.write_all(buf, stall).await,
        }
    }

    /// Tells a TLS peer that no more data follows (close_notify); nothing on plain TCP.
    pub async fn close_notify(&self) {
        if let Stream::Tls(s) = self {
            s.close_notify().await;
        }
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.set_nodelay(on),
            Stream::Tls(s) => s.set_nodelay(on),
        }
    }

    pub fn shutdown(&self) {
        match self {
            Stream::Plain(s) => s.shutdown(),
            Stream::Tls(s) => s.shutdown(),
        }
    }
}
