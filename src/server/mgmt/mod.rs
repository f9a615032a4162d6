//! The management HTTP API (RabbitMQ's, on `--management-port`, with the web UI) and the
//! Prometheus endpoint (`--prometheus-port`). Both run on one thread of their own with an
//! ordinary tokio runtime and reach the shards only by message, through shard 0's control
//! service: a shard never waits for HTTP, and a slow client slows nobody but itself.

mod admin_routes;
mod admin_write;
mod auth;
mod ctl_route;
mod http;
mod listing;
mod messages;
mod metrics;
mod node;
mod routes;
mod shape;
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

/// Binds the listeners now (so a taken port fails the start) and serves them on a thread.
pub fn start(
    config: Arc<Config>,
    control: ControlSender,
    alarms: Option<Arc<Alarms>>,
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
    let management = bind(config.management_ip, config.management_port)?;
    let prometheus = bind(config.prometheus_ip, config.prometheus_port)?;
    if management.is_none() && prometheus.is_none() {
        return Ok(());
    }
    let api = Arc::new(Api::new(control, config, alarms));
    std::thread::Builder::new()
        .name("warren-mgmt".to_string())
        .spawn(move || run(api, management, prometheus))?;
    Ok(())
}

fn run(
    api: Arc<Api>,
    management: Option<std::net::TcpListener>,
    prometheus: Option<std::net::TcpListener>,
) {
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
        if let Some(l) = management {
            tokio::spawn(accept(api.clone(), l, false));
        }
        if let Some(l) = prometheus {
            tokio::spawn(accept(api.clone(), l, true));
        }
        std::future::pending::<()>().await;
    });
}

async fn accept(api: Arc<Api>, listener: std::net::TcpListener, prometheus: bool) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let api = api.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(serve(&api, request, peer, prometheus).await) }
            });
            let io = TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
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
