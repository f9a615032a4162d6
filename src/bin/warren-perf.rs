//! warren-perf: a load generator for AMQP 0-9-1 brokers, in the spirit of
//! RabbitMQ's PerfTest, built to cost far less CPU per message than the
//! broker it measures.
//!
//! ```text
//! warren-perf --port 5672 --producers 1 --consumers 1 --size 16 --autoack --duration 6
//! warren-perf --port 5672 --persistent --confirm 256 --multi-ack-every 50 --prefetch 100
//! warren-perf --port 5672 --exchange perf.topic --exchange-type topic --bindings 100 \
//!             --match-ratio 0.01 --autoack --broker-pid $(pidof ...) --json
//! warren-perf --port 5672 --autoack --queue-arg x-max-length=1000 --queue-arg x-overflow=drop-head
//! warren-perf --port 5672 --dead-letter --multi-ack-every 50 --prefetch 100
//! ```
//!
//! How it stays cheap: publish and content-header frames are encoded once
//! per routing key with `warren::protocol` and copied into a 128 KiB batch
//! that goes out in one `write`; consumers read 256 KiB at a time, split
//! frames without copying, and ack with `multiple`. Threads are plain OS
//! threads on blocking sockets (one writer and one reader per producer, one
//! per consumer).
//!
//! What it reports, over a window of `--duration` seconds that starts once
//! every consumer is subscribed and every producer connected: publish,
//! confirm and consume rates; latency (send time written as CLOCK_MONOTONIC
//! ns into the first 8 body bytes, read back on delivery) p50/p99/p99.9/max
//! from an HDR histogram; its own CPU (getrusage) and the broker's
//! (/proc/PID/stat utime+stime, with `--broker-pid`) per message, where a
//! "message" is max(published, delivered, dead-lettered) in the window, so a fanout counts
//! deliveries and a mostly unroutable topic run counts publishes. The run
//! ends by itself: after the window, producers stop, consumers drain for at
//! most 2 s, the topology is deleted, and a watchdog exits the process if
//! any of that hangs.

mod warren_perf;

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use warren_perf::args::Args;
use warren_perf::conn::{Conn, Error, Target, ABORT, RPC_TIMEOUT};
use warren_perf::consumer::{self, ConsumerResult, ConsumerSpec, Role};
use warren_perf::link::client_config;
use warren_perf::producer::{self, ProducerSpec};
use warren_perf::report::Report;
use warren_perf::stats::{self, Counters, Shared};
use warren_perf::topology::{Plan, RoutingArgs};

/// How long consumers may keep draining after the window.
const DRAIN_MAX: Duration = Duration::from_secs(2);
/// Consumers are done draining once nothing arrived for this long.
const DRAIN_IDLE: Duration = Duration::from_millis(300);
/// Slack beyond the window before the watchdog ends the process.
const WATCHDOG_SLACK: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("warren-perf: {e}");
            ExitCode::from(2)
        }
    }
}

fn validate(args: &Args) -> Result<(), Error> {
    if !(args.duration > 0.0 && args.duration <= 3600.0) {
        return Err("--duration must be within (0, 3600] seconds".into());
    }
    if args.producers > 1000 || args.consumers > 1000 || args.queues > 100_000 {
        return Err("at most 1000 producers, 1000 consumers and 100000 queues".into());
    }
    if args.size > 64 << 20 {
        return Err("--size is limited to 64 MiB".into());
    }
    if args.confirm == Some(0) {
        return Err("--confirm needs a window of at least 1".into());
    }
    if args.multi_ack_every == 0 {
        return Err("--multi-ack-every must be at least 1".into());
    }
    if let Some(rate) = args.rate {
        if !(rate > 0.0 && rate.is_finite()) {
            return Err("--rate must be a positive number".into());
        }
    }
    if args.dead_letter && args.autoack {
        return Err("--dead-letter consumers nack what they get: drop --autoack".into());
    }
    if args.consumers > 0 && args.queues == 0 {
        return Err("consumers need at least one queue".into());
    }
    if let (false, Some(p)) = (args.autoack, args.prefetch) {
        if p > 0 && args.multi_ack_every > u64::from(p) {
            return Err(format!(
                "--multi-ack-every {} exceeds --prefetch {p}: consumers would stall",
                args.multi_ack_every
            ));
        }
    }
    Ok(())
}

fn run(args: &Args) -> Result<bool, Error> {
    validate(args)?;
    let mut target = match &args.uri {
        Some(uri) => Target::from_uri(uri)?,
        None => Target {
            host: args.host.clone(),
            port: args.port,
            user: "guest".into(),
            password: "guest".into(),
            vhost: "/".into(),
            tls: None,
        },
    };
    target.tls = args.tls_ca.as_deref().map(client_config).transpose()?;
    spawn_watchdog(Duration::from_secs_f64(args.duration) + WATCHDOG_SLACK);
    let plan = Plan::new(&RoutingArgs {
        exchange: args.exchange.clone(),
        exchange_type: args.exchange_type,
        queues: args.queues,
        queue_pattern: args.queue_pattern.clone(),
        routing_keys: args.routing_keys.clone(),
        binding_keys: args.binding_keys.clone(),
        bindings: args.bindings,
        match_ratio: args.match_ratio,
        persistent: args.persistent,
        queue_args: args.queue_args.clone(),
        dead_letter: args.dead_letter,
    })?;
    let mut control = Conn::open(&target, "warren-perf control")?;
    plan.declare(&mut control)?;
    let shared = Arc::new(Shared::default());
    let consumers = start_consumers(args, &target, &plan, &shared)?;
    let producers = start_producers(args, &target, &plan, &shared)?;
    let window = measure(args, &shared)?;
    let latency_ns = wind_down(producers, consumers, &shared);
    if !args.keep_topology {
        if let Err(e) = plan.delete(&mut control) {
            shared.fail("teardown", e);
        }
    }
    let report = Report {
        args,
        target: &target,
        window: window.elapsed,
        counts: window.counts,
        self_cpu_ns: window.self_cpu_ns,
        broker_cpu_ns: window.broker_cpu_ns,
        latency_ns: &latency_ns,
        returned: shared.returned.load(Ordering::Relaxed),
        blocked: shared.blocked.load(Ordering::Relaxed),
        blocked_at_stop: shared.blocked_at_stop.load(Ordering::Relaxed),
        errors: shared.errors.lock().map(|e| e.clone()).unwrap_or_default(),
    };
    if !args.json {
        println!("{}", report.summary());
    }
    println!("{}", report.json());
    Ok(report.errors.is_empty())
}

/// What the measured window saw.
struct Window {
    elapsed: Duration,
    counts: Counters,
    self_cpu_ns: u64,
    broker_cpu_ns: Option<u64>,
}

/// Opens the window, prints a line a second, and closes it after `--duration`.
fn measure(args: &Args, shared: &Shared) -> Result<Window, Error> {
    let broker_cpu = |pid: Option<u32>| pid.map(stats::proc_cpu_ns).transpose();
    let before = shared.counters();
    let self_before = stats::self_cpu_ns();
    let broker_before = broker_cpu(args.broker_pid)?;
    let started = Instant::now();
    shared.measuring.store(true, Ordering::Relaxed);
    shared.go.store(true, Ordering::Release);
    let window = Duration::from_secs_f64(args.duration);
    let mut last = before;
    let mut next_tick = Duration::from_secs(1);
    while started.elapsed() < window && !ABORT.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(20).min(window.saturating_sub(started.elapsed())));
        if started.elapsed() >= next_tick && !args.quiet {
            let now = shared.counters();
            let d = now.since(&last);
            let dead = if args.dead_letter {
                format!("  dead-lettered {:>8} msg/s", d.dead_lettered)
            } else {
                String::new()
            };
            eprintln!(
                "warren-perf: {:>3} s  sent {:>8} msg/s  confirmed {:>8} msg/s  received {:>8} msg/s{dead}",
                next_tick.as_secs(),
                d.published,
                d.confirmed,
                d.consumed
            );
            last = now;
            next_tick += Duration::from_secs(1);
        }
    }
    let elapsed = started.elapsed();
    let after = shared.counters();
    let self_after = stats::self_cpu_ns();
    let broker_after = broker_cpu(args.broker_pid).ok().flatten();
    shared.measuring.store(false, Ordering::Relaxed);
    Ok(Window {
        elapsed,
        counts: after.since(&before),
        self_cpu_ns: self_after.saturating_sub(self_before),
        broker_cpu_ns: match (broker_before, broker_after) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b)),
            _ => None,
        },
    })
}

/// Producers stop first (they wait for their confirms), then consumers drain what is in
/// flight; returns the consumers' merged latency histogram.
fn wind_down(
    producers: Vec<JoinHandle<Option<()>>>,
    consumers: Vec<JoinHandle<Option<ConsumerResult>>>,
    shared: &Shared,
) -> Histogram<u64> {
    shared.stop_producers.store(true, Ordering::Relaxed);
    join_all(producers, Duration::from_secs(8), "producer", shared);
    let drain_started = Instant::now();
    let received = |c: Counters| c.consumed + c.dead_lettered;
    let mut seen = received(shared.counters());
    let mut idle_since = Instant::now();
    while drain_started.elapsed() < DRAIN_MAX && !ABORT.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(20));
        let now = received(shared.counters());
        if now != seen {
            seen = now;
            idle_since = Instant::now();
        } else if idle_since.elapsed() >= DRAIN_IDLE {
            break;
        }
    }
    shared.stop_consumers.store(true, Ordering::Relaxed);
    let mut latency_ns = consumer::new_histogram();
    for result in join_all(consumers, Duration::from_secs(5), "consumer", shared) {
        if let Err(e) = latency_ns.add(&result.latency_ns) {
            shared.fail("report", format!("merging histograms: {e}"));
        }
    }
    latency_ns
}

fn spawn_watchdog(after: Duration) {
    thread::spawn(move || {
        thread::sleep(after);
        eprintln!(
            "warren-perf: still running {} s after start; the broker is not answering. Exiting.",
            after.as_secs()
        );
        std::process::exit(3);
    });
}

/// Consumer i reads work queue i % queues; with `--dead-letter` it nacks
/// what it gets, and one more consumer per dead-letter queue reads it (autoack).
fn consumer_specs(args: &Args, plan: &Plan) -> Vec<ConsumerSpec> {
    let role = if args.dead_letter {
        Role::Reject
    } else {
        Role::Consume
    };
    let work = (0..args.consumers).map(|index| ConsumerSpec {
        index,
        queue: plan.queues[index % plan.queues.len()].clone(),
        role,
        autoack: args.autoack,
        ack_every: args.multi_ack_every,
        prefetch: args.prefetch,
    });
    let dead = plan
        .dead_letter_queues
        .iter()
        .enumerate()
        .map(|(i, queue)| ConsumerSpec {
            index: args.consumers + i,
            queue: queue.clone(),
            role: Role::DeadLetters,
            autoack: true,
            ack_every: 1,
            prefetch: None,
        });
    work.chain(dead).collect()
}

fn start_consumers(
    args: &Args,
    target: &Target,
    plan: &Plan,
    shared: &Arc<Shared>,
) -> Result<Vec<JoinHandle<Option<ConsumerResult>>>, Error> {
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), Error>>();
    let specs = consumer_specs(args, plan);
    let count = specs.len();
    let mut handles = Vec::with_capacity(count);
    for spec in specs {
        let index = spec.index;
        let (target, shared, ready) = (target.clone(), shared.clone(), ready_tx.clone());
        let name = format!("consumer-{index}");
        let handle = thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let opened = Conn::open(&target, &name)
                    .and_then(|mut conn| consumer::subscribe(&mut conn, &spec).map(|()| conn));
                let conn = match opened {
                    Ok(conn) => {
                        let _ = ready.send(Ok(()));
                        conn
                    }
                    Err(e) => {
                        let _ = ready.send(Err(format!("{name}: {e}")));
                        return None;
                    }
                };
                let (result, err) = consumer::run(conn, spec, shared.clone());
                if let Some(e) = err {
                    shared.fail(&name, e);
                }
                Some(result)
            })
            .map_err(|e| format!("spawning a consumer thread: {e}"))?;
        handles.push(handle);
    }
    wait_ready(&ready_rx, count)?;
    Ok(handles)
}

fn start_producers(
    args: &Args,
    target: &Target,
    plan: &Plan,
    shared: &Arc<Shared>,
) -> Result<Vec<JoinHandle<Option<()>>>, Error> {
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), Error>>();
    let mut handles = Vec::with_capacity(args.producers);
    for index in 0..args.producers {
        let keys = plan.keys_for_producer(index);
        let spec = ProducerSpec {
            index,
            templates: plan.templates(&keys, args.size, args.persistent)?,
            body_size: args.size,
            confirm_window: args.confirm,
            rate_per_sec: args.rate.map(|r| r / args.producers as f64),
        };
        let (target, shared, ready) = (target.clone(), shared.clone(), ready_tx.clone());
        let name = format!("producer-{index}");
        let handle = thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let conn = match Conn::open(&target, &name) {
                    Ok(conn) => {
                        let _ = ready.send(Ok(()));
                        conn
                    }
                    Err(e) => {
                        let _ = ready.send(Err(format!("{name}: {e}")));
                        return None;
                    }
                };
                if let Err(e) = producer::run(conn, spec, shared.clone()) {
                    shared.fail(&name, e);
                }
                Some(())
            })
            .map_err(|e| format!("spawning a producer thread: {e}"))?;
        handles.push(handle);
    }
    wait_ready(&ready_rx, args.producers)?;
    Ok(handles)
}

fn wait_ready(ready: &mpsc::Receiver<Result<(), Error>>, count: usize) -> Result<(), Error> {
    let deadline = Instant::now() + RPC_TIMEOUT + Duration::from_secs(5);
    for _ in 0..count {
        let left = deadline.saturating_duration_since(Instant::now());
        match ready.recv_timeout(left) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                ABORT.store(true, Ordering::Relaxed);
                return Err(e);
            }
            Err(_) => {
                ABORT.store(true, Ordering::Relaxed);
                return Err("connections did not open in time".into());
            }
        }
    }
    Ok(())
}

/// Joins every thread that finishes before `limit`; a thread still running
/// then is reported (and left to the watchdog).
fn join_all<T>(
    handles: Vec<JoinHandle<Option<T>>>,
    limit: Duration,
    kind: &str,
    shared: &Shared,
) -> Vec<T> {
    let deadline = Instant::now() + limit;
    let mut results = Vec::with_capacity(handles.len());
    for (i, handle) in handles.into_iter().enumerate() {
        while !handle.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        if !handle.is_finished() {
            shared.fail(&format!("{kind}-{i}"), "did not stop in time".into());
            continue;
        }
        match handle.join() {
            Ok(Some(result)) => results.push(result),
            Ok(None) => {}
            Err(_) => shared.fail(&format!("{kind}-{i}"), "panicked".into()),
        }
    }
    results
}
