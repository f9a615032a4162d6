//! What a run declares (exchange, queues, bindings) and what its producers
//! publish (routing keys, headers), decided once before any connection.
//!
//! Routing keys follow one scheme per exchange type so that `--bindings N`
//! and `--match-ratio R` mean the same on every broker:
//!
//! | type    | binding j (queue j % Q)             | matching publish    | non-matching   |
//! |---------|-------------------------------------|---------------------|----------------|
//! | default | none: key = queue name              | queue p % Q         | -              |
//! | direct  | `perf.k{j}`                         | `perf.k{j}`         | `perf.n{t}`    |
//! | topic   | `perf.k{j}.*`                       | `perf.k{j}.x`       | `perf.n{t}.x`  |
//! | headers | x-match=all, `k` = `v{j}`           | header `k`=`v{j}`   | `k`=`n{t}`     |
//! | fanout  | `""` on every queue                 | everything          | -              |
//!
//! A producer cycles through a fixed list of pre-encoded publish+header
//! frames in which a fraction R, spread evenly, match a binding.

use bytes::{Bytes, BytesMut};
use clap::ValueEnum;
use warren::protocol::frame::{encode_header, encode_method};
use warren::protocol::method::{
    BasicPublish, ExchangeDeclare, ExchangeDeclareOk, ExchangeDelete, ExchangeDeleteOk, QueueBind,
    QueueBindOk, QueueDeclare, QueueDeclareOk, QueueDelete, QueueDeleteOk,
};
use warren::protocol::{BasicProperties, FieldTable, FieldValue};

use super::conn::{Conn, Error};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExchangeType {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeType::Direct => "direct",
            ExchangeType::Fanout => "fanout",
            ExchangeType::Topic => "topic",
            ExchangeType::Headers => "headers",
        }
    }
}

/// The routing-related part of the command line.
#[derive(Clone, Debug)]
pub struct RoutingArgs {
    pub exchange: String,
    pub exchange_type: ExchangeType,
    pub queues: usize,
    pub queue_pattern: String,
    pub routing_keys: Vec<String>,
    pub binding_keys: Vec<String>,
    pub bindings: Option<usize>,
    pub match_ratio: f64,
    pub persistent: bool,
}

#[derive(Clone, Debug)]
pub struct Binding {
    pub queue: usize,
    pub key: String,
    pub arguments: FieldTable,
}

/// What one message is published with.
#[derive(Clone, Debug)]
pub struct PublishKey {
    pub key: String,
    pub headers: Option<FieldTable>,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub exchange: String,
    pub exchange_type: ExchangeType,
    pub durable: bool,
    pub queues: Vec<String>,
    pub bindings: Vec<Binding>,
    /// Cycle of keys shared by all producers; empty for the default
    /// exchange without explicit keys (each producer then targets a queue).
    pub keys: Vec<PublishKey>,
}

/// Longest key cycle: bounds template memory for tiny match ratios.
const MAX_CYCLE: usize = 100_000;

impl Plan {
    pub fn new(a: &RoutingArgs) -> Result<Plan, Error> {
        if a.queues == 0 && a.exchange.is_empty() {
            return Err("--queues 0 needs a named --exchange to publish to".into());
        }
        if !(0.0..=1.0).contains(&a.match_ratio) {
            return Err("--match-ratio must be within 0..=1".into());
        }
        let queues: Vec<String> = (0..a.queues)
            .map(|i| {
                if a.queue_pattern.contains("%d") {
                    a.queue_pattern.replace("%d", &i.to_string())
                } else if a.queues == 1 {
                    a.queue_pattern.clone()
                } else {
                    format!("{}-{i}", a.queue_pattern)
                }
            })
            .collect();
        let q = a.queues.max(1);
        let mut plan = Plan {
            exchange: a.exchange.clone(),
            exchange_type: a.exchange_type,
            durable: a.persistent,
            queues,
            bindings: Vec::new(),
            keys: Vec::new(),
        };
        let explicit = |keys: &[String]| -> Vec<PublishKey> {
            keys.iter()
                .map(|k| PublishKey {
                    key: k.clone(),
                    headers: None,
                })
                .collect()
        };
        if a.exchange.is_empty() {
            plan.keys = explicit(&a.routing_keys);
            return Ok(plan);
        }
        if !a.routing_keys.is_empty() {
            let binding_keys = if a.binding_keys.is_empty() {
                &a.routing_keys
            } else {
                &a.binding_keys
            };
            plan.bindings = binding_keys
                .iter()
                .enumerate()
                .filter(|_| a.queues > 0)
                .map(|(j, k)| Binding {
                    queue: j % q,
                    key: k.clone(),
                    arguments: FieldTable::default(),
                })
                .collect();
            plan.keys = explicit(&a.routing_keys);
            return Ok(plan);
        }
        if a.exchange_type == ExchangeType::Fanout {
            plan.bindings = (0..a.queues)
                .map(|queue| Binding {
                    queue,
                    key: String::new(),
                    arguments: FieldTable::default(),
                })
                .collect();
            plan.keys = vec![PublishKey {
                key: String::new(),
                headers: None,
            }];
            return Ok(plan);
        }
        plan.generate(a);
        Ok(plan)
    }

    /// Generated bindings (one per queue unless `--bindings`) and a cycle of publish keys
    /// of which `--match-ratio` match one of them.
    fn generate(&mut self, a: &RoutingArgs) {
        let q = a.queues.max(1);
        let bindings = if a.queues == 0 {
            0
        } else {
            a.bindings.unwrap_or(a.queues)
        };
        self.bindings = (0..bindings)
            .map(|j| binding_for(a.exchange_type, j, j % q))
            .collect();
        // A cycle long enough to express the ratio and to visit every binding.
        let cycle = if a.match_ratio >= 1.0 || a.match_ratio <= 0.0 {
            bindings.max(1)
        } else {
            ((1.0 / a.match_ratio).ceil() as usize * bindings.max(1)).clamp(100, MAX_CYCLE)
        };
        let mut matched = 0usize;
        self.keys = (0..cycle)
            .map(|t| {
                let hit = bindings > 0
                    && ((t + 1) as f64 * a.match_ratio).floor()
                        > (t as f64 * a.match_ratio).floor();
                if hit {
                    matched += 1;
                    publish_for(a.exchange_type, true, (matched - 1) % bindings)
                } else {
                    publish_for(a.exchange_type, false, t)
                }
            })
            .collect();
    }

    /// Keys producer `index` cycles through.
    pub fn keys_for_producer(&self, index: usize) -> Vec<PublishKey> {
        if !self.keys.is_empty() {
            // Start producers at different points of the cycle.
            let mut keys = self.keys.clone();
            let len = keys.len();
            keys.rotate_left((index * 7919) % len);
            return keys;
        }
        vec![PublishKey {
            key: self.queues[index % self.queues.len()].clone(),
            headers: None,
        }]
    }

    /// True when the exchange is ours to declare and delete.
    fn owns_exchange(&self) -> bool {
        !self.exchange.is_empty() && !self.exchange.starts_with("amq.")
    }

    /// Deletes leftovers of an earlier run, then declares everything.
    pub fn declare(&self, conn: &mut Conn) -> Result<(), Error> {
        self.delete(conn)?;
        if self.owns_exchange() {
            conn.rpc(
                1,
                ExchangeDeclare {
                    exchange: bytes_of(&self.exchange),
                    kind: Bytes::from_static(self.exchange_type.as_str().as_bytes()),
                    durable: self.durable,
                    ..Default::default()
                }
                .into(),
                (ExchangeDeclareOk::CLASS_ID, ExchangeDeclareOk::METHOD_ID),
            )?;
        }
        for queue in &self.queues {
            conn.rpc(
                1,
                QueueDeclare {
                    queue: bytes_of(queue),
                    durable: self.durable,
                    ..Default::default()
                }
                .into(),
                (QueueDeclareOk::CLASS_ID, QueueDeclareOk::METHOD_ID),
            )?;
        }
        for b in &self.bindings {
            conn.rpc(
                1,
                QueueBind {
                    queue: bytes_of(&self.queues[b.queue]),
                    exchange: bytes_of(&self.exchange),
                    routing_key: bytes_of(&b.key),
                    arguments: b.arguments.clone(),
                    ..Default::default()
                }
                .into(),
                (QueueBindOk::CLASS_ID, QueueBindOk::METHOD_ID),
            )?;
        }
        Ok(())
    }

    /// Deletes the queues and the exchange (deleting what does not exist
    /// succeeds, as in RabbitMQ).
    pub fn delete(&self, conn: &mut Conn) -> Result<(), Error> {
        for queue in &self.queues {
            conn.rpc(
                1,
                QueueDelete {
                    queue: bytes_of(queue),
                    ..Default::default()
                }
                .into(),
                (QueueDeleteOk::CLASS_ID, QueueDeleteOk::METHOD_ID),
            )?;
        }
        if self.owns_exchange() {
            conn.rpc(
                1,
                ExchangeDelete {
                    exchange: bytes_of(&self.exchange),
                    ..Default::default()
                }
                .into(),
                (ExchangeDeleteOk::CLASS_ID, ExchangeDeleteOk::METHOD_ID),
            )?;
        }
        Ok(())
    }

    /// Pre-encoded basic.publish + content header frames on channel 1, one
    /// per key; the body frames are appended per message.
    pub fn templates(
        &self,
        keys: &[PublishKey],
        body_size: usize,
        persistent: bool,
    ) -> Result<Vec<Bytes>, Error> {
        keys.iter()
            .map(|k| {
                if k.key.len() > 255 {
                    return Err(format!("routing key {:?} is over 255 bytes", k.key));
                }
                let mut out = BytesMut::with_capacity(128);
                let publish = BasicPublish {
                    exchange: bytes_of(&self.exchange),
                    routing_key: bytes_of(&k.key),
                    ..Default::default()
                };
                encode_method(&mut out, 1, &publish.into());
                let properties = BasicProperties {
                    delivery_mode: Some(if persistent { 2 } else { 1 }),
                    headers: k.headers.clone(),
                    ..Default::default()
                };
                let mut raw = BytesMut::with_capacity(64);
                properties.encode(&mut raw);
                encode_header(&mut out, 1, body_size as u64, &raw);
                Ok(out.freeze())
            })
            .collect()
    }
}

fn binding_for(kind: ExchangeType, j: usize, queue: usize) -> Binding {
    let mut arguments = FieldTable::default();
    let key = match kind {
        ExchangeType::Direct => format!("perf.k{j}"),
        ExchangeType::Topic => format!("perf.k{j}.*"),
        ExchangeType::Headers => {
            arguments.insert("x-match", long_str("all"));
            arguments.insert("k", long_str(&format!("v{j}")));
            String::new()
        }
        ExchangeType::Fanout => String::new(),
    };
    Binding {
        queue,
        key,
        arguments,
    }
}

fn publish_for(kind: ExchangeType, hit: bool, n: usize) -> PublishKey {
    let (key, headers) = match (kind, hit) {
        (ExchangeType::Direct, true) => (format!("perf.k{n}"), None),
        (ExchangeType::Direct, false) => (format!("perf.n{n}"), None),
        (ExchangeType::Topic, true) => (format!("perf.k{n}.x"), None),
        (ExchangeType::Topic, false) => (format!("perf.n{n}.x"), None),
        (ExchangeType::Headers, _) => {
            let mut h = FieldTable::default();
            let value = if hit {
                format!("v{n}")
            } else {
                format!("n{n}")
            };
            h.insert("k", long_str(&value));
            (String::new(), Some(h))
        }
        (ExchangeType::Fanout, _) => (String::new(), None),
    };
    PublishKey { key, headers }
}

fn bytes_of(s: &str) -> Bytes {
    Bytes::from(s.as_bytes().to_vec())
}

fn long_str(s: &str) -> FieldValue {
    FieldValue::LongStr(bytes_of(s))
}
