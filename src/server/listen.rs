//! Listening sockets: one per shard and address, bound with SO_REUSEPORT so that the kernel
//! spreads incoming connections over the shards.

use std::net::SocketAddr;
use std::time::Duration;

/// Fails when some other process already listens on `addr`. Every shard binds with
/// SO_REUSEPORT, which would otherwise let a second broker share the port silently and split
/// the clients between the two; a probe bound without it sees the other listener. A broker
/// that was just killed releases its io_uring-held sockets a moment after it exits, so the
/// probe retries for a few seconds before giving up.
pub fn ensure_address_free(addr: SocketAddr) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let probe = socket_for(addr)?;
        probe.set_reuse_address(true)?;
        match probe.bind(&addr.into()) {
            Ok(()) => return Ok(()),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot listen on {addr}: {e} (is another broker running there?)"),
                ))
            }
        }
    }
}

/// A listening socket with SO_REUSEPORT, so every shard can accept on the same port.
pub fn listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket_for(addr)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into()).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr}: {e} (is another broker running there?)"),
        )
    })?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// A TCP socket for `addr`; an IPv6 one also takes IPv4 connections (`[::]:5672` serves
/// both, as RabbitMQ's default listener does).
fn socket_for(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    Ok(socket)
}

/// The addresses to listen on: `[::]` where the host has no IPv6 becomes `0.0.0.0`, with a
/// log line, so the default works everywhere.
pub fn usable(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    addrs
        .iter()
        .map(|&addr| match socket_for(addr) {
            Err(e) if addr.is_ipv6() && addr.ip().is_unspecified() => {
                let v4 = SocketAddr::from(([0, 0, 0, 0], addr.port()));
                crate::warn!("cannot listen on {addr} ({e}): listening on {v4} instead");
                v4
            }
            _ => addr,
        })
        .collect()
}
