//! The shard's background tasks besides connections: the mailbox, the store's writer and
//! pager (which the shard serves as their host), and the alarm watcher.

use std::rc::Rc;

use bytes::Bytes;

use super::{mailbox, Shard};
use crate::broker::{AmqpError, ShardMsg};
use crate::ids::QueueRef;
use crate::io::{self, time};
use crate::message::Loc;
use crate::protocol::constants::INTERNAL_ERROR;
use crate::store::pager::{self, PageRequest, PagerHost};
use crate::store::writer::{self, WriterHost};
use crate::store::Batch;

/// Starts the shard's mailbox, store writer, pager and alarm watcher on its runtime.
pub fn spawn_tasks(shard: &Rc<Shard>) {
    io::spawn_core("the mailbox", mailbox::run(shard.clone()));
    let store = shard
        .broker
        .borrow()
        .store()
        .map(|s| (s.wake.clone(), s.dir().to_path_buf()));
    if let Some((wake, dir)) = store {
        io::spawn_core(
            "the store writer",
            writer::run(shard.clone(), wake, dir.clone()),
        );
        io::spawn_core(
            "the pager",
            pager::run(shard.clone(), shard.page_wake.clone(), dir),
        );
    }
    io::spawn_core("the alarm watcher", watch_alarms(shard.clone()));
    io::spawn_core("the credit sender", send_grants(shard.clone()));
    io::spawn_core(
        "the expiry timer",
        super::dead_letters::expire_idle_queues(shard.clone()),
    );
}

/// Sends back publisher credit that gathered below a batch, so that none waits for long.
async fn send_grants(shard: Rc<Shard>) {
    loop {
        time::sleep(crate::broker::envelope::GRANT_FLUSH_EVERY).await;
        if shard.broker.borrow().has_grants() {
            shard.send_grants(true);
            shard.flush();
        }
    }
}

impl WriterHost for Shard {
    fn take_batch(&self) -> Option<Batch> {
        let mut broker = self.broker.borrow_mut();
        broker.store_mut()?.next_batch()
    }

    /// Releases what waited for the sync; confirms turn negative when a write failed.
    fn written(&self, ticket: u64, synced: bool, ok: bool) {
        let mut released = Vec::new();
        if let Some(store) = self.broker.borrow_mut().store_mut() {
            store.written(ticket, synced, ok, &mut released);
        }
        for ((target, mut msg), durable) in released {
            match &mut msg {
                ShardMsg::Confirm { ok, .. } => *ok &= durable,
                // A declare-ok, bind-ok or commit-ok promises what is not on disk: refuse.
                ShardMsg::Reply { result, .. } if !durable => *result = Err(not_durable()),
                _ => {}
            }
            self.send(target, msg);
        }
        self.flush();
    }
}

impl PagerHost for Shard {
    fn take_page_requests(&self) -> Vec<PageRequest> {
        self.broker.borrow_mut().take_page_requests()
    }

    fn pending_frame(&self, loc: Loc) -> Option<Bytes> {
        self.broker.borrow().store()?.pending_frame(loc)
    }

    fn paged_in(&self, queue: QueueRef, bodies: &mut Vec<(u64, Bytes)>) {
        let mut out = self.take_outbox();
        self.broker.borrow_mut().paged_in(queue, bodies, &mut out);
        self.send_all(out);
        self.flush();
    }
}

/// The answer to an operation whose definition could not be made durable.
fn not_durable() -> AmqpError {
    AmqpError::new(
        INTERNAL_ERROR,
        "the broker could not write to disk; the change may not survive a restart",
    )
}

/// Tells this shard's connections when a resource alarm is raised or cleared, and hands
/// memory this thread freed back to the OS: the allocator otherwise keeps it, so a shard
/// that churned through a large backlog would look as big as its peak.
async fn watch_alarms(shard: Rc<Shard>) {
    let mut last = 0;
    loop {
        time::sleep(crate::alarm::CHECK_EVERY / 2).await;
        // SAFETY: mi_collect only works on the calling thread's own heap.
        unsafe { libmimalloc_sys::mi_collect(false) };
        let now = shard.alarms.state();
        if (now == 0) != (last == 0) {
            let clients: Vec<_> = shard
                .conns
                .borrow()
                .iter()
                .map(|(_, c)| c.clone())
                .collect();
            for client in clients {
                client.alarm(now);
            }
        }
        last = now;
    }
}
