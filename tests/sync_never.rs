//! `--sync never` confirms a persistent message once it is written (not fsynced). A confirm
//! that arrived while the writer was busy used to leave the writer asleep for good: every
//! later confirm, declare-ok and commit-ok then hung. Publishers here wait for each confirm
//! in turn on several channels at once, beside transactional publishers whose every commit
//! waits for the batch in flight without adding to it (the pattern that hit it), and then
//! check that the broker still answers and that every message is in its queue.

mod support;

use std::time::Duration;

use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use support::lapin_client::{
    close_quietly, confirm_channel, connect, declare_queue, durable, get_all, open_channel,
    publish_confirmed, within,
};
use support::{run_async, Broker};

/// Publishes `PER_PUBLISHER` transient messages, each in its own transaction.
async fn publish_in_transactions(channel: Channel, p: usize, queue: String) {
    within("tx.select-ok", channel.tx_select())
        .await
        .expect("tx.select-ok");
    for i in 0..PER_PUBLISHER {
        let body = format!("{p}-{i}");
        let props = BasicProperties::default().with_delivery_mode(1);
        within(
            "basic.publish",
            channel.basic_publish(
                "",
                &queue,
                BasicPublishOptions::default(),
                body.as_bytes(),
                props,
            ),
        )
        .await
        .expect("basic.publish");
        within("tx.commit-ok", channel.tx_commit())
            .await
            .unwrap_or_else(|e| panic!("tx.commit {i} of publisher {p}: {e}"));
    }
}

const PUBLISHERS: usize = 4;
const PER_PUBLISHER: usize = 500;

#[test]
fn confirms_keep_coming_under_sync_never() {
    let broker = Broker::start(&["--sync", "never", "--shards", "1"]);
    let url = broker.amqp_url();
    run_async(Duration::from_secs(120), async move {
        let connection = connect(&url).await;
        let setup = open_channel(&connection).await;
        let mut tasks = Vec::new();
        for p in 0..PUBLISHERS {
            let queue = format!("sync-never-{p}");
            declare_queue(&setup, &queue, durable(), FieldTable::default()).await;
            if p % 2 == 1 {
                let channel = open_channel(&connection).await;
                tasks.push(tokio::spawn(publish_in_transactions(channel, p, queue)));
                continue;
            }
            let channel = confirm_channel(&connection).await;
            tasks.push(tokio::spawn(async move {
                for i in 0..PER_PUBLISHER {
                    let body = format!("{p}-{i}");
                    let props = BasicProperties::default().with_delivery_mode(2);
                    // Panics unless basic.ack comes; true means it was returned.
                    let returned =
                        publish_confirmed(&channel, "", &queue, false, body.as_bytes(), props)
                            .await;
                    assert!(!returned, "message {i} of publisher {p} was returned");
                }
            }));
        }
        for task in tasks {
            task.await.expect("a publisher");
        }
        // A durable declare waits for the writer too.
        declare_queue(
            &setup,
            "sync-never-after",
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
        for p in 0..PUBLISHERS {
            let got = get_all(&setup, &format!("sync-never-{p}")).await;
            let bodies: Vec<String> = got
                .iter()
                .map(|d| String::from_utf8_lossy(&d.data).into_owned())
                .collect();
            let expected: Vec<String> = (0..PER_PUBLISHER).map(|i| format!("{p}-{i}")).collect();
            assert_eq!(bodies, expected, "queue sync-never-{p}");
        }
        close_quietly(connection).await;
    });
}
