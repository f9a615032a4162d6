//! The mailbox task: drains the shard's incoming rings in batches and parks on the eventfd
//! when there is nothing to do. Other shards write the eventfd only while this one is parked
//! (see [`super::ring`]).

use std::rc::Rc;
use std::time::Duration;

use super::Shard;
use crate::io::{self, time, EventFd};

/// Most messages drained from the rings in one mailbox turn before yielding to sockets.
const DRAIN_BATCH: usize = 4096;

/// Drains the incoming rings forever.
pub async fn run(shard: Rc<Shard>) {
    let eventfd = match EventFd::watch(shard.endpoint.borrow().eventfd()) {
        Ok(fd) => fd,
        Err(err) => {
            crate::error!("shard {}: cannot watch its eventfd: {err}", shard.id);
            return;
        }
    };
    let mut batch = Vec::with_capacity(DRAIN_BATCH);
    loop {
        if shard.store_backlogged() {
            // Senders' rings fill up and they stop reading their sockets in turn.
            shard.flush();
            time::sleep(Duration::from_micros(100)).await;
            continue;
        }
        let n = shard
            .endpoint
            .borrow_mut()
            .drain(DRAIN_BATCH, |m| batch.push(m));
        for msg in batch.drain(..) {
            shard.handle(msg);
        }
        shard.flush();
        if n > 0 {
            io::yield_now().await;
            continue;
        }
        if shard.congested() {
            time::sleep(Duration::from_micros(50)).await;
            continue;
        }
        if shard.endpoint.borrow().prepare_park() {
            let res = eventfd.wait().await;
            shard.endpoint.borrow().unpark();
            if let Err(err) = res {
                crate::error!("shard {}: eventfd read failed: {err}", shard.id);
                time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}
