//! The management HTTP API (RabbitMQ's, on `--management-port`, with the web UI) and the
//! Prometheus endpoint (`--prometheus-port`). Both run on one thread of their own with an
//! ordinary tokio runtime and reach the shards only by message, through shard 0's control
//! service: a shard never waits for HTTP, and a slow client slows nobody but itself.

mod admin_routes;
mod admin_write;
mod answers;
mod auth;
mod ctl_route;
mod http;
mod listing;
mod messages;
mod metrics;
mod node;
mod routes;
mod shape;
mod shard_metrics;
mod state;
pub mod ui;
mod write;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;

use crate::alarm::Alarms;
use crate::config::Config;
use crate::shard::control::ControlSender;
use http::{Reply, Req};
use state::Api;

/// Every handler's answer: an error reply is an answer too.
type ApiResult = Result<Reply, Reply>;

/// Largest request body (a definitions import).
const MAX_BODY_BYTES: usize = 64 << 20;
/// HTTP connections served at once per listener; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 256;
/// How long a client may take to send a request's headers (or the next request).
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a client may take over its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One listener of the thread: what it serves, and over TLS or not.
struct Listener {
    socket: std::net::TcpListener,
    prometheus: bool,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Binds the listeners now (so a taken port fails the start) and serves them on a thread.
/// `https`: the AMQPS listener's TLS settings, for `--management-tls-port`.
pub fn start(
    config: Arc<Config>,
    control: ControlSender,
    alarms: Option<Arc<Alarms>>,
    https: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    let bind = |ip, port: u16| -> std::io::Result<Option<std::net::TcpListener>> {
        if port == 0 {
            return Ok(None);
        }
        let listener = std::net::TcpListener::bind(SocketAddr::new(ip, port)).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen on port {port}: {e}"))
        })?;
        listener.set_nonblocking(true)?;
        Ok(Some(listener))
    };
    let mut listeners = Vec::new();
    let plain = [
        (config.management_ip, config.management_port, false),
        (config.prometheus_ip, config.prometheus_port, true),
    ];
    for (ip, port, prometheus) in plain {
        if let Some(socket) = bind(ip, port)? {
            listeners.push(Listener {
                socket,
                prometheus,
                tls: None,
            });
        }
    }
    if config.management_tls_port != 0 {
        let Some(tls) = https else {
            return Err(std::io::Error::other(
                "--management-tls-port needs --tls-cert and --tls-key",
            ));
        };
        if let Some(socket) = bind(config.management_ip, config.management_tls_port)? {
            let tls = Some(tokio_rustls::TlsAcceptor::from(tls));
            listeners.push(Listener {
                socket,
                prometheus: false,
                tls,
            });
        }
    }
    if listeners.is_empty() {
        return Ok(());
    }
    let api = Arc::new(Api::new(control, config, alarms));
    std::thread::Builder::new()
        .name("warren-mgmt".to_string())
        .spawn(move || run(api, listeners))?;
    Ok(())
}

fn run(api: Arc<Api>, listeners: Vec<Listener>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            crate::error!("management API not started: {err}");
            return;
        }
    };
    runtime.block_on(async move {
        tokio::spawn(api.clone().sample_forever());
        for listener in listeners {
            tokio::spawn(accept(api.clone(), listener));
        }
        std::future::pending::<()>().await;
    });
}

async fn accept(api: Arc<Api>, listener: Listener) {
    let Ok(socket) = tokio::net::TcpListener::from_std(listener.socket) else {
        return;
    };
    let prometheus = listener.prometheus;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, peer)) = socket.accept().await else {
            continue;
        };
        let api = api.clone();
        let tls = listener.tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |request| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(serve(&api, request, peer, prometheus).await) }
            });
            // A client that sends no request for this long loses its connection (and slot).
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            match tls {
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                }
                Some(tls) => {
                    // A failed handshake only ends this connection.
                    let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream));
                    if let Ok(Ok(stream)) = handshake.await {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            }
        });
    }
}

async fn serve(
    api: &Api,
    request: Request<Incoming>,
    peer: SocketAddr,
    prometheus: bool,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Reply::bad_request("request body too large").into_response(true),
    };
    let req = Req::new(&parts, body, peer);
    let reply = if prometheus {
        prometheus_reply(api, &req).await
    } else {
        management_reply(api, &req).await
    };
    reply.unwrap_or_else(|e| e).into_response(!req.from_script)
}

async fn prometheus_reply(api: &Api, req: &Req) -> ApiResult {
    let per_object = match req.segments.as_slice() {
        [m] if m == "metrics" => false,
        [m, p] if m == "metrics" && p == "per-object" => true,
        _ => return Err(Reply::not_found()),
    };
    let snap = api.snapshot().await.map_err(|e| Reply::bad_request(&e))?;
    let text = metrics::render(api, &snap, per_object);
    Ok(Reply::text("text/plain; version=0.0.4", text))
}

async fn management_reply(api: &Api, req: &Req) -> ApiResult {
    if req.seg(0) != Some("api") {
        if req.method != Method::GET {
            return Err(Reply::method_not_allowed());
        }
        let path = format!("/{}", req.segments.join("/"));
        return match ui::asset(&path) {
            Some((kind, bytes)) => Ok(Reply::text(kind, Bytes::from_static(bytes))),
            None => Err(Reply::not_found()),
        };
    }
    let who = auth::login(api, req).await?;
    let snap = api.snapshot().await.map_err(|e| Reply::bad_request(&e))?;
    match req.method {
        Method::GET => routes::get(api, req, &who, &snap).await,
        Method::PUT | Method::POST | Method::DELETE => write::write(api, req, &who, &snap).await,
        _ => Err(Reply::method_not_allowed()),
    }
}
