//! Queues larger than memory: past `--memory-budget`, bodies of waiting messages live only in
//! the store and are read back just before delivery. A backlog several times the budget builds
//! and drains completely, in order and intact, while the broker's resident memory stays under
//! the budget plus a stated margin.

mod common;

use std::time::Duration;

use common::RestartableBroker;
use lapin::message::DeliveryResult;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

const BUDGET_MIB: u64 = 16;
/// Above the budget: the broker's baseline (code, two shards' runtimes and rings: about
/// 20 MiB), bodies in flight (read buffers, the store's write batches, the page-in window of
/// up to 4 MiB per queue, prefetched deliveries), and what the allocator has not yet handed
/// back after churning through 64 KiB bodies at hundreds of MB/s (measured peak on a 2-core
/// VM: about 110 MiB filling and 130 MiB draining with a 16 MiB budget; idle afterwards about
/// 45 MiB). Without paging the 384 MiB backlog alone would exceed budget plus margin.
const MARGIN_MIB: u64 = 160;
const BODY: usize = 64 * 1024;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn body(index: u32) -> Vec<u8> {
    let mut b = vec![(index % 251) as u8; BODY];
    b[..4].copy_from_slice(&index.to_be_bytes());
    b
}

fn check_body(data: &[u8]) -> u32 {
    assert_eq!(data.len(), BODY, "expected a {BODY}-byte body");
    let index = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    assert!(
        data[4..].iter().all(|&b| b == (index % 251) as u8),
        "expected message {index}'s body intact, got corrupted bytes"
    );
    index
}

async fn channel(url: &str) -> (Connection, Channel) {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    (conn, ch)
}

async fn publish_confirmed(ch: &Channel, queue: &str, count: u32, persistent: bool) {
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    let mode = if persistent { 2 } else { 1 };
    let mut pending = Vec::new();
    for i in 0..count {
        let confirm = ch
            .basic_publish(
                "",
                queue,
                BasicPublishOptions::default(),
                &body(i),
                BasicProperties::default().with_delivery_mode(mode),
            )
            .await
            .expect("publish");
        pending.push(confirm);
        if pending.len() >= 64 {
            for c in pending.drain(..) {
                assert!(c.await.expect("confirm").is_ack(), "expected an ack");
            }
        }
    }
    for c in pending {
        assert!(c.await.expect("confirm").is_ack(), "expected an ack");
    }
}

fn run(body: impl std::future::Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(240), body)
            .await
            .expect("expected the test to finish within 240 s");
    });
}

#[test]
fn a_backlog_past_the_memory_budget_drains_completely_within_budget() {
    let budget = format!("{BUDGET_MIB}MiB");
    let Some(broker) = RestartableBroker::start(&["--memory-budget", &budget]) else {
        return;
    };
    let pid = broker.pid().expect("broker pid");
    let url = broker.amqp_url();
    // 256 MiB persistent in a durable queue, 128 MiB transient in a non-durable one: 24 times
    // the budget.
    let (durable_n, transient_n) = (4096u32, 2048u32);
    let max_rss = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (max_rss, sampling) = (max_rss.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                max_rss.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    run(async {
        let (_c, ch) = channel(&url).await;
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.queue_declare("big-durable", durable, FieldTable::default())
            .await
            .expect("declare");
        ch.queue_declare(
            "big-transient",
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare");
        publish_confirmed(&ch, "big-durable", durable_n, true).await;
        let (_c2, ch2) = channel(&url).await;
        publish_confirmed(&ch2, "big-transient", transient_n, false).await;
        let filled_kib = max_rss.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!(
            "fill: {} MiB queued, max RSS {} MiB (budget {BUDGET_MIB} MiB + margin {MARGIN_MIB} MiB)",
            (u64::from(durable_n + transient_n) * BODY as u64) >> 20,
            filled_kib / 1024
        );
        assert!(
            filled_kib < (BUDGET_MIB + MARGIN_MIB) * 1024,
            "expected resident memory under {} MiB while filling, got {} MiB",
            BUDGET_MIB + MARGIN_MIB,
            filled_kib / 1024
        );

        // Drain both, in order, every body intact.
        for (queue, n) in [("big-durable", durable_n), ("big-transient", transient_n)] {
            let (_c, ch) = channel(&url).await;
            ch.basic_qos(50, BasicQosOptions::default())
                .await
                .expect("qos");
            let consumer = ch
                .basic_consume(
                    queue,
                    "drain",
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("consume");
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            // Sent synchronously, in frame order, from lapin's reader.
            consumer.set_delegate(move |delivery: DeliveryResult| {
                if let Ok(Some(delivery)) = delivery {
                    let _ = tx.send(delivery);
                }
                async {}
            });
            for expected in 0..n {
                let delivery = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                    .await
                    .unwrap_or_else(|_| {
                        panic!("expected message {expected} of {queue}, got nothing in 30 s")
                    })
                    .expect("a delivery");
                assert_eq!(
                    check_body(&delivery.data),
                    expected,
                    "expected {queue} in order"
                );
                delivery.ack(BasicAckOptions::default()).await.expect("ack");
            }
            let left = ch
                .queue_declare(
                    queue,
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("passive declare");
            assert_eq!(left.message_count(), 0, "expected {queue} drained");
        }
    });
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.join();
    let max_kib = max_rss.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("fill and drain: max RSS {} MiB", max_kib / 1024);
    assert!(
        max_kib < (BUDGET_MIB + MARGIN_MIB) * 1024,
        "expected resident memory under {} MiB throughout, got {} MiB",
        BUDGET_MIB + MARGIN_MIB,
        max_kib / 1024
    );
}

#[test]
fn basic_get_reads_paged_bodies_back() {
    let Some(broker) = RestartableBroker::start(&["--memory-budget", "1MiB", "--shards", "1"])
    else {
        return;
    };
    let url = broker.amqp_url();
    run(async {
        let (_c, ch) = channel(&url).await;
        ch.queue_declare(
            "paged-get",
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare");
        publish_confirmed(&ch, "paged-get", 200, false).await;
        for expected in 0..200 {
            let got = ch
                .basic_get("paged-get", BasicGetOptions { no_ack: true })
                .await
                .expect("basic.get")
                .unwrap_or_else(|| panic!("expected message {expected}, got get-empty"));
            assert_eq!(check_body(&got.delivery.data), expected);
        }
        let empty = ch
            .basic_get("paged-get", BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get");
        assert!(empty.is_none(), "expected get-empty after 200 messages");
    });
}
