//! A durable queue deleted, declared again and bound again at once keeps its new binding,
//! in memory and after a restart.
//!
//! queue.delete removes the queue's bindings through the topology owner (shard 0). The new
//! queue.bind must reach the owner after that removal, in every replica and in the
//! definitions log; were it to overtake the removal, the binding would route now but vanish
//! at the next start. The broker runs with `--shards 3`, the queues live on shards 1 and 2
//! (not the owner), and several connections (which land on any shard) do the steps, so the
//! bind often travels on another ring than the removal. Then the broker is killed
//! with SIGKILL and started again on the same data directory, and a publish to each binding
//! must still reach its queue.

mod support;

use std::time::Duration;

use lapin::options::QueueDeleteOptions;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, ExchangeKind};
use support::lapin_client::{
    bind, close_quietly, connect, declare, declare_exchange, message_count, open_channel, publish,
    within,
};
use support::{queue_per_shard, run_async, RestartableBroker};

const SHARDS: usize = 3;
const CONNECTIONS: usize = 6;
const ROUNDS: usize = 10;
const EXCHANGE: &str = "delete-rebind";

/// The queues of one connection: one on each shard other than the topology owner.
fn queues(conn: usize, round: usize) -> Vec<String> {
    queue_per_shard(&format!("delete-rebind-{conn}-{round}"), SHARDS)
        .into_iter()
        .skip(1)
        .collect()
}

async fn delete(channel: &Channel, queue: &str) {
    within(
        "queue.delete-ok",
        channel.queue_delete(queue, QueueDeleteOptions::default()),
    )
    .await
    .unwrap_or_else(|e| panic!("expected queue.delete-ok for {queue}, got {e}"));
}

/// Declare, bind, delete, declare again and bind again, for every queue of `conn`.
async fn churn(url: String, conn: usize) {
    let connection = connect(&url).await;
    let channel = open_channel(&connection).await;
    for round in 0..ROUNDS {
        for queue in queues(conn, round) {
            declare(&channel, &queue, true).await;
            bind(&channel, &queue, EXCHANGE, &queue, FieldTable::default()).await;
            delete(&channel, &queue).await;
            declare(&channel, &queue, true).await;
            bind(&channel, &queue, EXCHANGE, &queue, FieldTable::default()).await;
        }
    }
    close_quietly(connection).await;
}

/// Publishes once to every binding and checks each queue got its message.
async fn check_every_binding_routes(url: &str, when: &str) {
    let connection = connect(url).await;
    let channel = open_channel(&connection).await;
    for conn in 0..CONNECTIONS {
        for round in 0..ROUNDS {
            for queue in queues(conn, round) {
                let before = message_count(&channel, &queue).await;
                publish(&channel, EXCHANGE, &queue, b"x", BasicProperties::default()).await;
                let mut after = before;
                for _ in 0..100 {
                    after = message_count(&channel, &queue).await;
                    if after > before {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                assert_eq!(
                    after,
                    before + 1,
                    "{when}: expected the binding {EXCHANGE} -> {queue} (key {queue}) to route, \
                     the queue went from {before} to {after} messages"
                );
            }
        }
    }
    close_quietly(connection).await;
}

#[test]
fn a_binding_made_right_after_delete_and_redeclare_survives_a_restart() {
    let Some(mut broker) = RestartableBroker::start(&["--shards", "3"]) else {
        eprintln!("skipped: an external broker cannot be restarted by the harness");
        return;
    };
    run_async(Duration::from_secs(180), async {
        let url = broker.amqp_url();
        {
            let connection = connect(&url).await;
            let channel = open_channel(&connection).await;
            declare_exchange(&channel, EXCHANGE, ExchangeKind::Direct, true).await;
            close_quietly(connection).await;
        }
        let tasks: Vec<_> = (0..CONNECTIONS)
            .map(|conn| tokio::spawn(churn(url.clone(), conn)))
            .collect();
        for task in tasks {
            task.await.expect("a churning connection");
        }
        check_every_binding_routes(&url, "before the restart").await;
    });
    broker.restart_after_kill_9();
    run_async(Duration::from_secs(120), async {
        check_every_binding_routes(&broker.amqp_url(), "after kill -9 and a restart").await;
    });
}
