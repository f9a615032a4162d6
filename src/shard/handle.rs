//! Applying one [`ShardMsg`] on the shard it was sent to.

use smallvec::SmallVec;

use super::Shard;
use crate::broker::{
    Broker, Delivery, Message, OpOk, Origin, Outbox, Pushed, QueueTarget, SettleKind, ShardMsg,
};
use crate::ids::QueueRef;

impl Shard {
    pub(super) fn handle(&self, msg: ShardMsg) {
        match msg {
            ShardMsg::Enqueue { queue, msg, origin } => self.enqueue(queue, msg, origin),
            ShardMsg::Confirm {
                conn,
                channel,
                seq,
                ok,
            } => {
                if let Some(client) = self.client(conn) {
                    client.confirmed(channel, seq, ok);
                }
            }
            ShardMsg::DirectReply {
                conn,
                channel,
                secret,
                msg,
            } => {
                if let Some(client) = self.client(conn) {
                    client.direct_reply(channel, secret, &msg);
                }
            }
            ShardMsg::Deliver(delivery) => self.deliver(delivery),
            ShardMsg::Settle { queue, kind, seqs } => {
                self.on_broker(|broker, out| broker.settle(queue, kind, &seqs, out))
            }
            ShardMsg::PublishCredit { conn, key, n } => {
                if let Some(client) = self.client(conn) {
                    client.publish_credit(key, n);
                }
            }
            ShardMsg::Credit {
                queue,
                consumer_id,
                n,
            } => self.on_broker(|broker, out| broker.credit(queue, consumer_id, n, out)),
            ShardMsg::ConsumerCancelled { conn, channel, tag } => {
                if let Some(client) = self.client(conn) {
                    client.consumer_cancelled(channel, &tag);
                }
            }
            ShardMsg::Return { conn, channel, msg } => {
                if let Some(client) = self.client(conn) {
                    client.basic_return(channel, &msg);
                }
            }
            ShardMsg::Request { from, id, op } => self.apply_and_reply(from, id, op),
            ShardMsg::Oneway(op) => self.on_broker(|broker, out| {
                let _ = broker.apply(op, out);
            }),
            ShardMsg::TopologyRequest { from, id, change } => {
                self.topology_request(from, id, change)
            }
            ShardMsg::TopologyApply { change, token } => self.topology_apply(&change, token),
            ShardMsg::TopologyApplied { token } => self.topology_applied(token),
            ShardMsg::Inspect { from, id, what } => {
                let answer = OpOk::Inspected(Box::new(self.inspect_local(&what)));
                self.reply(from, id, Ok(answer));
            }
            ShardMsg::SyncBarrier { from, id } => self.reply_after_sync(from, id, Ok(OpOk::Done)),
            ShardMsg::Reply { id, result } => {
                if let Some(tx) = self.pending.borrow_mut().remove(&id) {
                    let _ = tx.send(result);
                }
            }
        }
    }

    /// Runs `f` on this shard's broker with a fresh outbox, then sends what it produced.
    fn on_broker(&self, f: impl FnOnce(&mut Broker, &mut Outbox)) {
        let mut out = self.take_outbox();
        f(&mut self.broker.borrow_mut(), &mut out);
        self.send_all(out);
    }

    /// A publish for a queue of this shard. Its confirm goes back once the queue took it (after
    /// the sync when the queue wrote it to the store); a message for a queue that does not
    /// exist is returned when mandatory, and confirmed all the same, as in RabbitMQ.
    fn enqueue(&self, queue: QueueTarget, msg: Message, origin: Origin) {
        let mut out = self.take_outbox();
        let from = origin.conn;
        let result = {
            let mut broker = self.broker.borrow_mut();
            if origin.dead_letter {
                broker.enqueue_dead_letter(queue, msg, from, &mut out)
            } else {
                broker.enqueue(queue, msg, from, &mut out)
            }
        };
        self.send_all(out);
        let target = origin.conn.shard as usize;
        let confirm = |seq, ok| ShardMsg::Confirm {
            conn: origin.conn,
            channel: origin.channel,
            seq,
            ok,
        };
        match result {
            Ok(Pushed::Stored) => {
                if let Some(seq) = origin.confirm {
                    self.send_after_sync(target, confirm(seq, true));
                }
                return;
            }
            Ok(Pushed::Kept) => {}
            Ok(Pushed::Rejected) => {
                // A full queue with x-overflow reject-publish: the publisher gets basic.nack.
                if let Some(seq) = origin.confirm {
                    self.send(target, confirm(seq, false));
                }
                return;
            }
            Err(msg) => {
                if origin.mandatory {
                    let channel = origin.channel;
                    let conn = origin.conn;
                    self.send(target, ShardMsg::Return { conn, channel, msg });
                }
            }
        }
        if let Some(seq) = origin.confirm {
            self.send(target, confirm(seq, true));
        }
    }

    /// A delivery for a connection of this shard; back to its queue when the connection is
    /// gone (unless no-ack) or its channel refuses it.
    fn deliver(&self, delivery: Delivery) {
        match self.client(delivery.conn) {
            Some(client) => {
                if let Some((queue, seq)) = client.deliver(delivery) {
                    self.bounce(queue, seq);
                }
            }
            None if !delivery.no_ack => self.bounce(delivery.queue, delivery.seq),
            None => {}
        }
    }

    /// A delivery whose channel is gone goes back to its queue.
    pub fn bounce(&self, queue: QueueRef, seq: u64) {
        let mut seqs = SmallVec::new();
        seqs.push(seq);
        let kind = SettleKind::Requeue;
        self.send(queue.shard as usize, ShardMsg::Settle { queue, kind, seqs });
    }
}
