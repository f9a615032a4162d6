//! One blocking AMQP 0-9-1 connection with channel 1 open.
//!
//! The load tool needs no async runtime: each connection is driven by one or
//! two OS threads, and every socket has a short read/write timeout so that a
//! thread blocked on a silent broker still notices the stop flags. Frames are
//! read into a `BytesMut` with `socket2::Socket::recv` straight into its spare
//! capacity and split off by `warren::protocol::parse_frame`, so the read side
//! copies nothing after the kernel.

use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use socket2::Socket;

pub use super::link::is_timeout;
use super::link::Link;
use warren::protocol::constants::{FRAME_METHOD, PROTOCOL_HEADER};
use warren::protocol::frame::encode_method;
use warren::protocol::method::{
    ChannelOpen, ChannelOpenOk, ConnectionOpen, ConnectionOpenOk, ConnectionStart,
    ConnectionStartOk, ConnectionTune, ConnectionTuneOk,
};
use warren::protocol::{parse_frame, FieldTable, FieldValue, Frame, Method};

/// Set when the run must end now (fatal error, watchdog): every blocking
/// loop checks it on each socket timeout.
pub static ABORT: AtomicBool = AtomicBool::new(false);

/// How long a blocked read or write waits before re-checking flags.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Bytes asked of one `recv`: large, so a busy consumer drains its socket in
/// few syscalls.
const READ_CHUNK_BYTES: usize = 256 * 1024;
/// The largest frame we accept and offer; RabbitMQ's default.
pub const FRAME_MAX_BYTES: u32 = 131_072;
/// Deadline for every setup round trip (handshake, declare, consume ...).
pub const RPC_TIMEOUT: Duration = Duration::from_secs(15);

pub type Error = String;

/// Where to connect and as whom.
#[derive(Clone, Debug)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub vhost: String,
    /// TLS (`--tls-ca`), verified against that CA with `host` as the server name.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Target {
    /// Parses `amqp://user:pass@host:port/vhost`; missing parts default to
    /// guest:guest@localhost:5672 and vhost "/". `%2F` style escapes in the
    /// vhost are decoded.
    pub fn from_uri(uri: &str) -> Result<Target, Error> {
        let rest = uri
            .strip_prefix("amqp://")
            .ok_or_else(|| format!("--uri {uri:?}: only amqp:// URIs are supported"))?;
        let (authority, vhost) = match rest.split_once('/') {
            Some((a, v)) => (a, Some(percent_decode(v)?)),
            None => (rest, None),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (percent_decode(user)?, percent_decode(pass)?),
                None => (percent_decode(u)?, String::new()),
            },
            None => ("guest".to_string(), "guest".to_string()),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse()
                    .map_err(|_| format!("--uri {uri:?}: bad port {p:?}"))?,
            ),
            None => (hostport.to_string(), 5672),
        };
        Ok(Target {
            host: if host.is_empty() {
                "localhost".into()
            } else {
                host
            },
            port,
            user,
            password,
            vhost: match vhost {
                Some(v) if !v.is_empty() => v,
                _ => "/".into(),
            },
            tls: None,
        })
    }
}

fn percent_decode(s: &str) -> Result<String, Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

/// An open connection with channel 1 open on it.
pub struct Conn {
    pub sock: Link,
    pub rbuf: BytesMut,
    pub frame_max: u32,
}

impl Conn {
    /// Connects, runs the handshake (PLAIN auth, heartbeats off) and opens
    /// channel 1.
    pub fn open(target: &Target, name: &str) -> Result<Conn, Error> {
        let addr = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| format!("resolving {}:{}: {e}", target.host, target.port))?
            .next()
            .ok_or_else(|| format!("{}:{} resolves to nothing", target.host, target.port))?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        stream
            .set_nodelay(true)
            .and_then(|()| stream.set_read_timeout(Some(POLL_INTERVAL)))
            .and_then(|()| stream.set_write_timeout(Some(POLL_INTERVAL)))
            .map_err(|e| format!("socket options: {e}"))?;
        let sock = Socket::from(stream);
        let sock = match &target.tls {
            Some(config) => Link::tls(sock, config.clone(), &target.host)?,
            None => Link::plain(sock),
        };
        let mut conn = Conn {
            sock,
            rbuf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            frame_max: FRAME_MAX_BYTES,
        };
        conn.handshake(target, name)?;
        Ok(conn)
    }

    fn handshake(&mut self, target: &Target, name: &str) -> Result<(), Error> {
        self.send(PROTOCOL_HEADER)?;
        let deadline = Instant::now() + RPC_TIMEOUT;
        match self.next_method(deadline)? {
            (_, Method::ConnectionStart(ConnectionStart { mechanisms, .. })) => {
                if !mechanisms.split(|&b| b == b' ').any(|m| m == b"PLAIN") {
                    return Err("the broker does not offer PLAIN authentication".into());
                }
            }
            (_, other) => return Err(format!("expected connection.start, got {}", other.name())),
        }
        let mut capabilities = FieldTable::default();
        for cap in [
            "publisher_confirms",
            "basic.nack",
            "consumer_cancel_notify",
            "connection.blocked",
        ] {
            capabilities.insert(cap, FieldValue::Bool(true));
        }
        let mut client_properties = FieldTable::default();
        client_properties.insert("product", long_str("warren-perf"));
        client_properties.insert("connection_name", long_str(name));
        client_properties.insert("capabilities", FieldValue::Table(capabilities));
        let response = format!("\0{}\0{}", target.user, target.password);
        self.send_method(
            0,
            ConnectionStartOk {
                client_properties,
                mechanism: Bytes::from_static(b"PLAIN"),
                response: Bytes::from(response.into_bytes()),
                locale: Bytes::from_static(b"en_US"),
            }
            .into(),
        )?;
        let tune = match self.next_method(deadline)? {
            (_, Method::ConnectionTune(t)) => t,
            (_, other) => return Err(format!("expected connection.tune, got {}", other.name())),
        };
        let ConnectionTune {
            channel_max,
            frame_max,
            ..
        } = tune;
        self.frame_max = match frame_max {
            0 => FRAME_MAX_BYTES,
            f => f.min(FRAME_MAX_BYTES),
        };
        self.send_method(
            0,
            ConnectionTuneOk {
                channel_max,
                frame_max: self.frame_max,
                heartbeat: 0,
            }
            .into(),
        )?;
        self.rpc(
            0,
            ConnectionOpen {
                virtual_host: Bytes::from(target.vhost.clone().into_bytes()),
                ..Default::default()
            }
            .into(),
            (ConnectionOpenOk::CLASS_ID, ConnectionOpenOk::METHOD_ID),
        )?;
        self.rpc(
            1,
            ChannelOpen::default().into(),
            (ChannelOpenOk::CLASS_ID, ChannelOpenOk::METHOD_ID),
        )?;
        Ok(())
    }

    /// Writes all of `buf`, riding out write timeouts unless the run aborts.
    pub fn send(&self, buf: &[u8]) -> Result<(), Error> {
        write_all(&self.sock, buf)
    }

    pub fn send_method(&self, channel: u16, method: Method) -> Result<(), Error> {
        let mut out = BytesMut::with_capacity(256);
        encode_method(&mut out, channel, &method);
        self.send(&out)
    }

    /// Sends `method` and waits for the reply with the given ids on the same
    /// channel; a channel.close or connection.close instead is an error
    /// carrying the broker's reply text.
    pub fn rpc(
        &mut self,
        channel: u16,
        method: Method,
        (reply_class_id, reply_method_id): (u16, u16),
    ) -> Result<Method, Error> {
        let name = method.name();
        self.send_method(channel, method)?;
        let deadline = Instant::now() + RPC_TIMEOUT;
        loop {
            let (ch, reply) = self.next_method(deadline)?;
            if let Some(err) = close_error(&reply) {
                return Err(format!("{name}: {err}"));
            }
            if ch == channel
                && reply.class_id() == reply_class_id
                && reply.method_id() == reply_method_id
            {
                return Ok(reply);
            }
        }
    }

    /// The next method frame (any channel), skipping heartbeats and content.
    fn next_method(&mut self, deadline: Instant) -> Result<(u16, Method), Error> {
        loop {
            let frame = self.next_frame(deadline)?;
            if frame.kind == FRAME_METHOD {
                let method = Method::decode(frame.payload)
                    .map_err(|e| format!("undecodable method from the broker: {e}"))?;
                return Ok((frame.channel, method));
            }
        }
    }

    fn next_frame(&mut self, deadline: Instant) -> Result<Frame, Error> {
        loop {
            if let Some(frame) = self.parse()? {
                return Ok(frame);
            }
            if Instant::now() > deadline {
                return Err("timed out waiting for the broker's reply".into());
            }
            if ABORT.load(Ordering::Relaxed) {
                return Err("aborted".into());
            }
            match self.fill() {
                Ok(0) => return Err("the broker closed the connection".into()),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(format!("reading from the broker: {e}")),
            }
        }
    }

    /// Splits the next complete frame off the read buffer, if there is one.
    pub fn parse(&mut self) -> Result<Option<Frame>, Error> {
        parse_frame(&mut self.rbuf, self.frame_max.max(FRAME_MAX_BYTES))
            .map_err(|e| format!("bad frame from the broker: {e}"))
    }

    /// One `recv` into the read buffer's spare capacity. `Ok(0)` is EOF; a
    /// timeout is an `Err` for which `is_timeout` holds.
    pub fn fill(&mut self) -> io::Result<usize> {
        self.sock.recv(&mut self.rbuf, READ_CHUNK_BYTES)
    }
}

/// Writes all of `buf` to `sock`, retrying after write timeouts (a broker
/// pushing back through TCP) until the run aborts.
pub fn write_all(sock: &Link, buf: &[u8]) -> Result<(), Error> {
    write_all_unless(sock, buf, None)
}

/// Once `stop` is set, a write the broker keeps blocking (a memory alarm,
/// credit flow) is given up after this long, so a run always ends.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// As `write_all`, but gives up `STOP_GRACE` after `stop` is seen set while
/// the broker is not taking bytes: the error then says "stopped".
pub fn write_all_unless(
    sock: &Link,
    mut buf: &[u8],
    stop: Option<&AtomicBool>,
) -> Result<(), Error> {
    let mut stop_seen: Option<Instant> = None;
    while !buf.is_empty() {
        match sock.write(buf) {
            Ok(0) => return Err("the broker closed the connection".into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {
                if ABORT.load(Ordering::Relaxed) {
                    return Err("aborted".into());
                }
                if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                    let seen = *stop_seen.get_or_insert_with(Instant::now);
                    if seen.elapsed() > STOP_GRACE {
                        return Err(STOPPED.into());
                    }
                }
            }
            Err(e) => return Err(format!("writing to the broker: {e}")),
        }
    }
    Ok(())
}

/// The error `write_all_unless` gives when the run's end cut a blocked write.
pub const STOPPED: &str = "stopped while the broker was not reading";

/// The broker's reason when `method` is a channel.close or connection.close.
pub fn close_error(method: &Method) -> Option<String> {
    match method {
        Method::ChannelClose(c) => Some(format!(
            "channel closed by the broker: {} {}",
            c.reply_code,
            String::from_utf8_lossy(&c.reply_text)
        )),
        Method::ConnectionClose(c) => Some(format!(
            "connection closed by the broker: {} {}",
            c.reply_code,
            String::from_utf8_lossy(&c.reply_text)
        )),
        _ => None,
    }
}

fn long_str(s: &str) -> FieldValue {
    FieldValue::LongStr(Bytes::from(s.to_string().into_bytes()))
}
