//! Listings that span every shard: shard 0 asks each shard by message
//! ([`ShardMsg::Inspect`]) and waits for all answers. Each shard answers from its own state
//! between two messages, so nothing is locked and publishes never wait for a listing.

use crate::broker::inspect::{ConnectionInfo, Inspect, Inspected, QueueInfo, ShardReport};
use crate::broker::{OpOk, ShardMsg};
use crate::shard::Shard;
use crate::stats::shard_metrics::ShardMetrics;

impl Shard {
    /// What this shard holds (or did) for `what`.
    pub(in crate::shard) fn inspect_local(&self, what: &Inspect) -> Inspected {
        match what {
            Inspect::Queues => Inspected::Queues(self.broker.borrow().queue_infos()),
            Inspect::Connections => Inspected::Connections(self.connection_infos()),
            Inspect::Report => Inspected::Report(Box::new(ShardReport {
                queues: self.broker.borrow().queue_infos(),
                connections: self.connection_infos(),
                stats: crate::stats::snapshot(),
                exchanges: self.exchange_stats(),
                metrics: self.shard_metrics(),
            })),
            Inspect::CloseConnection { name, explanation } => {
                let mut closed = 0;
                for conn in self.conns_snapshot() {
                    if conn
                        .info()
                        .is_some_and(|i| self.connection_name(&i) == *name)
                    {
                        conn.force_close(explanation);
                        closed += 1;
                    }
                }
                Inspected::Closed(closed)
            }
        }
    }

    /// (vhost, name, publish_in, publish_out) of every exchange that routed here.
    fn exchange_stats(&self) -> Vec<(bytes::Bytes, bytes::Bytes, u64, u64)> {
        self.topology
            .borrow()
            .exchanges()
            .filter(|ex| ex.publish_in.get() > 0)
            .map(|ex| {
                let (i, o) = (ex.publish_in.get(), ex.publish_out.get());
                (ex.vhost.clone(), ex.name.clone(), i, o)
            })
            .chain(self.default_exchange_stats())
            .collect()
    }

    /// Every shard's report, in shard order.
    pub(super) async fn all_reports(&self) -> Vec<ShardReport> {
        let mut all = Vec::with_capacity(self.count);
        for answer in self.gather(Inspect::Report).await {
            if let Inspected::Report(r) = answer {
                all.push(*r);
            }
        }
        all
    }

    /// The default exchange's `publish_in` per vhost on this shard: its closed connections'
    /// publishes and its open ones'. Everything published to it goes out to a queue name.
    fn default_exchange_stats(&self) -> Vec<(bytes::Bytes, bytes::Bytes, u64, u64)> {
        let mut sums = crate::stats::default_exchange();
        for info in self.conns_snapshot().iter().filter_map(|c| c.info()) {
            let vhost = info.vhost.as_bytes();
            match sums.iter_mut().find(|(v, _)| v == vhost) {
                Some((_, n)) => *n += info.default_published,
                None => sums.push((vhost.to_vec(), info.default_published)),
            }
        }
        sums.into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(v, n)| (bytes::Bytes::from(v), bytes::Bytes::new(), n, n))
            .collect()
    }

    /// Every shard's answer to `what`, this shard's included.
    pub(super) async fn gather(&self, what: Inspect) -> Vec<Inspected> {
        let mut waits = Vec::with_capacity(self.count);
        let mut answers = Vec::with_capacity(self.count);
        for target in 0..self.count {
            if target == self.id {
                answers.push(self.inspect_local(&what));
                continue;
            }
            let (id, rx) = self.expect_reply();
            let from = self.id as u16;
            let what = Box::new(what.clone());
            self.send(target, ShardMsg::Inspect { from, id, what });
            waits.push(rx);
        }
        self.flush();
        for rx in waits {
            if let Ok(Ok(OpOk::Inspected(answer))) = rx.await {
                answers.push(*answer);
            }
        }
        answers
    }

    /// Every queue on every shard.
    pub(super) async fn all_queues(&self) -> Vec<QueueInfo> {
        let mut queues = Vec::new();
        for answer in self.gather(Inspect::Queues).await {
            if let Inspected::Queues(q) = answer {
                queues.extend(q);
            }
        }
        queues
    }

    /// Every client connection on every shard.
    pub(super) async fn all_connections(&self) -> Vec<ConnectionInfo> {
        let mut conns = Vec::new();
        for answer in self.gather(Inspect::Connections).await {
            if let Inspected::Connections(c) = answer {
                conns.extend(c);
            }
        }
        conns
    }

    /// Every shard's engine metrics as JSON objects, in shard order.
    /// This thread's engine counters, with the gauges read from the shard's own state now.
    fn shard_metrics(&self) -> ShardMetrics {
        let mut m = crate::stats::shard_metrics::snapshot();
        m.ring_depth_msgs = self.endpoint.borrow().outgoing_len() as u64;
        m.overflow_msgs = self.overflow.borrow().held() as u64;
        m.queues = self.broker.borrow().queue_count() as u64;
        m.connections = self.conns.borrow().len() as u64;
        m
    }

    pub(in crate::shard) fn conns_snapshot(&self) -> Vec<std::rc::Rc<dyn crate::shard::Client>> {
        self.conns.borrow().iter().map(|(_, c)| c.clone()).collect()
    }

    fn connection_infos(&self) -> Vec<ConnectionInfo> {
        let mut infos = Vec::new();
        for conn in self.conns_snapshot() {
            if let Some(mut info) = conn.info() {
                info.name = self.connection_name(&info);
                infos.push(info);
            }
        }
        infos
    }

    /// RabbitMQ's connection name, `PEER -> LOCAL` (the listener's address).
    fn connection_name(&self, info: &ConnectionInfo) -> String {
        match self.config.listen.first() {
            Some(local) => format!("{} -> {local}", info.peer),
            None => info.peer.to_string(),
        }
    }
}
