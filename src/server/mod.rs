//! Boot: claim the data directory and the ports, recover the store, start one shard thread
//! per core, and wait for a signal.
//!
//! Order matters: the data directory is locked and the addresses checked before recovery
//! touches any file, so that a second broker started by mistake changes nothing; recovery
//! runs before any shard exists, so every shard starts from the same replayed topology.

mod ctl;
mod listen;
mod mgmt;
mod os;

use std::net::TcpListener;
use std::sync::{mpsc, Arc};

use crate::alarm::Alarms;
use crate::broker::count::QueueCount;
use crate::broker::topology::{QueueNames, Topology};
use crate::broker::{Broker, ShardMsg};
use crate::config::Config;
use crate::io::tls::{ServerTls, TlsConfig};
use crate::io::{self, Backend};
use crate::shard::control::ControlReceiver;
use crate::shard::{ring, Shard, RING_CAPACITY};
use crate::store::record::Record;
use crate::store::recover::{self, Recovered, ShardStart};
use crate::store::Store;

/// Starts every shard and blocks until SIGINT or SIGTERM; SIGHUP reloads the TLS
/// certificate and key.
pub fn run(config: Config) -> std::io::Result<()> {
    // Before any shard thread exists, so that they all inherit the mask.
    let signals = os::block_signals()?;
    let tls = start(config)?;
    loop {
        let signal = os::wait_for_signal(&signals);
        if signal == libc::SIGHUP {
            reload_tls(tls.as_deref());
            continue;
        }
        crate::info!("Received signal {signal}, stopping");
        return Ok(());
    }
}

/// SIGHUP: new TLS handshakes use the certificate and key files as they are now; existing
/// connections go on. A file that cannot be used leaves the old pair in place.
fn reload_tls(tls: Option<&ServerTls>) {
    let Some(tls) = tls else {
        crate::info!("Received SIGHUP; no TLS listener, nothing to reload");
        return;
    };
    let cert = tls.files().cert.display();
    match tls.reload() {
        Ok(()) => crate::info!("Received SIGHUP; reloaded TLS certificate {cert}"),
        Err(err) => crate::error!(
            "Received SIGHUP; TLS certificate not reloaded, the old one stays in use: {err}"
        ),
    }
}

/// What every shard thread starts from.
struct Boot {
    config: Arc<Config>,
    backend: Backend,
    alarms: Arc<Alarms>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    queue_count: Arc<QueueCount>,
    topology: Arc<Vec<Record>>,
    queue_refs: Arc<QueueNames>,
    budget_per_shard: u64,
}

/// A shard's listening socket, and the TLS settings of its connections when it is the
/// AMQPS listener.
type Listener = (TcpListener, Option<TlsConfig>);

/// Starts every shard on its own thread and returns once all of them accept connections,
/// with the TLS settings (for SIGHUP) when there is a TLS listener. The shards run until
/// the process exits.
pub fn start(mut config: Config) -> std::io::Result<Option<Arc<ServerTls>>> {
    let backend = io::resolve(config.io)?;
    config.listen = listen::usable(&config.listen);
    let tls = match config.tls_files() {
        Some(files) => Some(Arc::new(ServerTls::load(files)?)),
        None => None,
    };
    let count = config.shard_count();
    let config = Arc::new(config);
    claim(&config)?;
    let budget_per_shard = config.memory_budget_bytes() / count as u64;
    let recovered = recover_store(&config, count, budget_per_shard)?;
    io::fs::sim::start(&config.data_dir)?;
    let alarms = crate::alarm::start_monitor(
        config.data_dir.clone(),
        config.memory_high_watermark.bytes(),
        config.disk_free_limit,
    )?;
    let endpoints = ring::mesh::<ShardMsg>(count, RING_CAPACITY)?;
    let listeners = (0..count)
        .map(|_| shard_listeners(&config, tls.as_deref()))
        .collect::<std::io::Result<Vec<Vec<Listener>>>>()?;
    log_start(&config, count, backend, tls.is_some());
    let queue_count = Arc::new(QueueCount::new(config.queue_max));
    let boot = Arc::new(Boot {
        config,
        queue_count,
        backend,
        alarms,
        connections: Arc::default(),
        queue_refs: Arc::new(queue_refs(&recovered.shards)),
        topology: Arc::new(recovered.topology),
        budget_per_shard,
    });
    let (ready_tx, ready_rx) = mpsc::channel::<std::io::Result<()>>();
    let (control, control_rx) = crate::shard::control::channel();
    let mut control_rx = Some(control_rx);
    let shards = endpoints.into_iter().zip(listeners).zip(recovered.shards);
    for ((endpoint, listeners), start) in shards {
        // Shard 0, the topology owner, serves control requests.
        let control = control_rx.take();
        let ready = ready_tx.clone();
        spawn_shard(boot.clone(), endpoint, listeners, start, control, ready)?;
    }
    drop(ready_tx);
    for _ in 0..count {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(err),
            Err(_) => return Err(std::io::Error::other("a shard failed to start")),
        }
    }
    let had = |kind: fn(&Record) -> bool| boot.topology.iter().any(kind);
    let fresh = !had(|r| matches!(r, Record::User(_) | Record::UserGone { .. }));
    let seed = ctl::Seed {
        vhost: fresh && !had(|r| matches!(r, Record::Vhost(_) | Record::VhostGone { .. })),
        user: fresh,
        permissions: !had(|r| matches!(r, Record::Permission(_) | Record::PermissionGone { .. })),
    };
    if seed.user || seed.permissions {
        let config = &boot.config;
        let (user, pass) = (&config.default_user, &config.default_pass);
        ctl::seed_default_user(&control, seed, user, pass, &config.default_vhost);
    }
    if let Some(path) = &boot.config.definitions {
        ctl::load_definitions(path, &control)?;
    }
    let https = tls.as_ref().map(|t| t.config.clone());
    mgmt::start(
        boot.config.clone(),
        control.clone(),
        Some(boot.alarms.clone()),
        https,
    )?;
    // Without it the broker still serves clients; only `warren ctl` cannot reach it (a
    // socket path longer than 107 bytes, say).
    if let Err(err) = ctl::start(&boot.config, control) {
        crate::warn!("warren ctl cannot reach this broker: {err}");
    }
    crate::info!("Server startup complete; {count} shard(s) accepting connections");
    Ok(tls)
}

/// One shard's listeners: the AMQP addresses, then the same addresses on `--tls-port` when
/// TLS is configured.
fn shard_listeners(config: &Config, tls: Option<&ServerTls>) -> std::io::Result<Vec<Listener>> {
    let mut listeners = Vec::new();
    for addr in &config.listen {
        listeners.push((listen::listener(*addr)?, None));
    }
    if let Some(tls) = tls {
        for addr in tls_addresses(config) {
            listeners.push((listen::listener(addr)?, Some(tls.config.clone())));
        }
    }
    Ok(listeners)
}

/// The AMQPS addresses: those of `--listen` with `--tls-port`.
fn tls_addresses(config: &Config) -> Vec<std::net::SocketAddr> {
    if config.tls_cert.is_none() {
        return Vec::new();
    }
    let mut addrs: Vec<std::net::SocketAddr> = Vec::new();
    for addr in &config.listen {
        let tls = std::net::SocketAddr::new(addr.ip(), config.tls_port);
        if !addrs.contains(&tls) {
            addrs.push(tls);
        }
    }
    addrs
}

/// Creates and locks the data directory, and checks that nobody listens on our addresses.
fn claim(config: &Config) -> std::io::Result<()> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        let dir = config.data_dir.display();
        std::io::Error::new(e.kind(), format!("cannot create data directory {dir}: {e}"))
    })?;
    os::lock_data_dir(&config.data_dir)?;
    for addr in config.listen.iter().chain(&tls_addresses(config)) {
        listen::ensure_address_free(*addr)?;
    }
    Ok(())
}

fn recover_store(config: &Config, count: usize, budget: u64) -> std::io::Result<Recovered> {
    let started = std::time::Instant::now();
    let recovered = recover::recover(&config.data_dir, count, config.segment_size, budget)
        .map_err(|e| {
            let dir = config.data_dir.display();
            std::io::Error::new(e.kind(), format!("cannot recover {dir}: {e}"))
        })?;
    let queue_count: usize = recovered.shards.iter().map(|s| s.queues.len()).sum();
    crate::info!(
        "Recovered {} durable queue(s) and {} message(s) in {} ms",
        queue_count,
        recovered.messages,
        started.elapsed().as_millis()
    );
    Ok(recovered)
}

/// Recovered queues get deterministic references, so every shard can rebuild the same
/// routing replica from the stored topology changes.
fn queue_refs(shards: &[ShardStart]) -> QueueNames {
    let mut refs = QueueNames::new();
    for (shard, start) in shards.iter().enumerate() {
        for (index, q) in start.queues.iter().enumerate() {
            let key = (q.vhost.clone(), q.name.clone());
            refs.insert(key, Broker::recovered_ref(shard, index));
        }
    }
    refs
}

fn log_start(config: &Config, count: usize, backend: Backend, tls: bool) {
    let mut addrs: Vec<String> = config.listen.iter().map(|a| a.to_string()).collect();
    if tls {
        addrs.extend(tls_addresses(config).iter().map(|a| format!("{a} (TLS)")));
    }
    crate::info!(
        "Warren {} starting: {} shard(s) on {}, listening on {}, data in {}",
        env!("CARGO_PKG_VERSION"),
        count,
        backend.name(),
        addrs.join(", "),
        config.data_dir.display()
    );
}

/// Starts shard `endpoint.id()` on its own pinned thread; it reports on `ready` once it
/// accepts connections (or failed to start).
fn spawn_shard(
    boot: Arc<Boot>,
    endpoint: ring::Endpoint<ShardMsg>,
    listeners: Vec<Listener>,
    start: ShardStart,
    control: Option<ControlReceiver>,
    ready: mpsc::Sender<std::io::Result<()>>,
) -> std::io::Result<()> {
    let id = endpoint.id();
    std::thread::Builder::new()
        .name(format!("warren-shard-{id}"))
        .spawn(move || {
            os::pin_to_core(id);
            let backend = boot.backend;
            let failed = ready.clone();
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                io::run(
                    backend,
                    serve_shard(boot, endpoint, listeners, start, control, ready),
                )
            }));
            let err = match run {
                Ok(Ok(())) => return,
                Ok(Err(err)) => err,
                Err(_) => std::io::Error::other(format!("shard {id} panicked")),
            };
            crate::error!("shard {id} stopped: {err}");
            if failed.send(Err(err)).is_err() {
                // Started earlier and failed since: the broker cannot go on without it.
                std::process::exit(70);
            }
        })?;
    Ok(())
}

/// The shard's life on its runtime: build its state, start its tasks and accept loops.
async fn serve_shard(
    boot: Arc<Boot>,
    endpoint: ring::Endpoint<ShardMsg>,
    listeners: Vec<Listener>,
    start: ShardStart,
    control: Option<ControlReceiver>,
    ready: mpsc::Sender<std::io::Result<()>>,
) {
    let id = endpoint.id();
    let config = boot.config.clone();
    let mut broker = Broker::new(id);
    let store = Store::new(
        crate::store::shard_dir(&config.data_dir, id),
        config.segment_size,
        config.sync,
        start.first_segment,
        start.defs_len,
        start.live,
    );
    let topology = Topology::replay(&boot.topology, &boot.queue_refs);
    // Before the queues, so that recovered messages get their policy's TTL.
    broker.set_policies(topology.policies().clone());
    broker.set_vhost_queue_max(topology.vhost_queue_max());
    broker.recovered(start.queues, start.resident_bytes);
    broker.attach_store(store, boot.budget_per_shard);
    broker.count_queues_in(boot.queue_count.clone());
    let shard = std::rc::Rc::new(Shard::new(
        config,
        boot.alarms.clone(),
        boot.connections.clone(),
        endpoint,
        broker,
        topology,
    ));
    drop(boot);
    crate::shard::spawn_tasks(&shard);
    if let Some(control) = control {
        io::spawn(crate::shard::control::serve(shard.clone(), control));
    }
    for (listener, tls) in listeners {
        match io::net::TcpListener::from_std(listener) {
            Ok(listener) => {
                io::spawn(crate::connection::accept_loop(shard.clone(), listener, tls));
            }
            Err(err) => {
                let _ = ready.send(Err(err));
                return;
            }
        }
    }
    let _ = ready.send(Ok(()));
    std::future::pending::<()>().await;
}
