//! Request and reply between shards: queue operations applied on the queue's owner, and
//! answers that wait for the store's sync when the operation wrote a durable definition.

use super::{ReplyTx, Shard};
use crate::broker::{AmqpError, OpOk, QueueOp, ShardMsg};
use crate::protocol::constants::INTERNAL_ERROR;
use tokio::sync::oneshot;

type ReplyRx = oneshot::Receiver<Result<OpOk, AmqpError>>;

impl Shard {
    /// Applies `op` on the shard that owns the queue and returns its answer.
    pub async fn request(&self, target: usize, op: QueueOp) -> Result<OpOk, AmqpError> {
        if target != self.id {
            let (id, rx) = self.expect_reply();
            let from = self.id as u16;
            self.send(target, ShardMsg::Request { from, id, op });
            self.flush();
            return rx.await.unwrap_or_else(|_| Err(stopped()));
        }
        // Everything this shard sent earlier must land before the operation runs.
        self.flush();
        let (result, wait) = self.apply(op);
        // Not flushed here: the caller writes its -ok before the next flush delivers what the
        // operation released.
        if !wait {
            return result;
        }
        let (id, rx) = self.expect_reply();
        self.reply_after_sync(self.id as u16, id, result);
        self.flush();
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Applies a queue operation here; also says whether its answer must wait for the sync.
    fn apply(&self, op: QueueOp) -> (Result<OpOk, AmqpError>, bool) {
        let mut out = self.take_outbox();
        let (result, wait) = {
            let mut broker = self.broker.borrow_mut();
            let result = broker.apply(op, &mut out);
            (result, broker.take_sync_wanted())
        };
        self.send_all(out);
        (result, wait)
    }

    /// Applies a queue operation for another shard; the reply to `id` on `to` waits for the
    /// store when the operation wrote a durable definition.
    pub(super) fn apply_and_reply(&self, to: u16, id: u64, op: QueueOp) {
        let mut out = self.take_outbox();
        let (result, wait) = {
            let mut broker = self.broker.borrow_mut();
            let result = broker.apply(op, &mut out);
            (result, broker.take_sync_wanted())
        };
        // The answer first: a consumer's consume-ok must precede its deliveries.
        if wait {
            self.reply_after_sync(to, id, result);
        } else {
            self.reply(to, id, result);
        }
        self.send_all(out);
    }

    /// Returns once everything every shard's store held when this was called is durable.
    pub async fn sync_barrier(&self) -> Result<(), AmqpError> {
        let mut waits = Vec::with_capacity(self.count);
        for target in 0..self.count {
            let (id, rx) = self.expect_reply();
            let from = self.id as u16;
            self.send(target, ShardMsg::SyncBarrier { from, id });
            waits.push(rx);
        }
        self.flush();
        for rx in waits {
            rx.await.unwrap_or_else(|_| Err(stopped()))?;
        }
        Ok(())
    }

    pub(super) fn expect_reply(&self) -> (u64, ReplyRx) {
        let id = self.next_request_id.get();
        self.next_request_id.set(id + 1);
        let (tx, rx): (ReplyTx, ReplyRx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, tx);
        (id, rx)
    }

    pub(super) fn reply(&self, to: u16, id: u64, result: Result<OpOk, AmqpError>) {
        if id != 0 {
            self.send(to as usize, ShardMsg::Reply { id, result });
        }
    }

    pub(super) fn reply_after_sync(&self, to: u16, id: u64, result: Result<OpOk, AmqpError>) {
        if id != 0 {
            self.send_after_sync(to as usize, ShardMsg::Reply { id, result });
        }
    }

    /// Sends `msg` to `target` once everything this shard's store holds so far is durable.
    pub(super) fn send_after_sync(&self, target: usize, msg: ShardMsg) {
        let now = match self.broker.borrow_mut().store_mut() {
            Some(store) => store.after_sync((target, msg)),
            None => Some((target, msg)),
        };
        if let Some((target, msg)) = now {
            self.send(target, msg);
        }
    }
}

pub(super) fn stopped() -> AmqpError {
    AmqpError::new(INTERNAL_ERROR, "shard stopped")
}
