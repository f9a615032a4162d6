//! The mailbox task: drains the shard's incoming rings in batches and parks on the eventfd
//! when there is nothing to do. Other shards write the eventfd only while this one is parked
//! (see [`super::ring`]).

use std::rc::Rc;
use std::time::Duration;

use super::Shard;
use crate::io::{self, time, EventFd};

/// Most messages drained from the rings in one mailbox turn before yielding to sockets.
const DRAIN_BATCH: usize = 4096;

impl Shard {
    /// One mailbox turn: takes a batch from the incoming rings, handles it and flushes what
    /// that produced. Returns how many messages it took.
    ///
    /// It takes no more than the overflow has room for, and nothing while the overflow is at
    /// its bound towards a shard that is still draining: handling a message may send others,
    /// and a shard cannot wait in the middle of that (see [`super::overflow`]).
    pub(super) fn drain_rings(&self, batch: &mut Vec<crate::broker::ShardMsg>) -> usize {
        let room = self.ring_room();
        if room == 0 {
            self.flush();
            return 0;
        }
        let n = self
            .endpoint
            .borrow_mut()
            .drain(room.min(DRAIN_BATCH), |m| batch.push(m));
        for msg in batch.drain(..) {
            self.handle(msg);
        }
        self.flush();
        n
    }

    /// How many messages this turn may take from the rings, and tells the peers when that
    /// is none. A target that has paused itself is left out: two shards each full towards
    /// the other must not both wait for the other to drain.
    fn ring_room(&self) -> usize {
        let endpoint = self.endpoint.borrow();
        let room = self
            .overflow
            .borrow()
            .room(|target| endpoint.is_paused(target));
        endpoint.set_paused(room == 0);
        room
    }
}

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
        let n = shard.drain_rings(&mut batch);
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
