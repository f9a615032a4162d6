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
//!
//! Every work queue is declared with the `--queue-arg`s. With `--dead-letter`,
//! each work queue `Q` also gets `x-dead-letter-exchange` = [`DLX`] and
//! `x-dead-letter-routing-key` = `Q.dead`, a direct exchange that routes that
//! key to queue `Q.dead` (declared without arguments).

use bytes::{Bytes, BytesMut};
use clap::ValueEnum;
use warren::protocol::frame::{encode_header, encode_method};
use warren::protocol::method::{
    BasicPublish, ExchangeDeclare, ExchangeDeclareOk, ExchangeDelete, ExchangeDeleteOk, QueueBind,
    QueueBindOk, QueueDeclare, QueueDeclareOk, QueueDelete, QueueDeleteOk,
};
use warren::protocol::{BasicProperties, FieldTable, FieldValue};

use super::conn::{Conn, Error};

/// The direct exchange `--dead-letter` declares for the work queues to dead-letter to.
pub const DLX: &str = "warren-perf.dlx";

/// One `--queue-arg KEY=VALUE`: an integer goes out as a signed long (`l`),
/// `true` / `false` as a boolean, anything else as a long string.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueArg {
    pub key: String,
    pub value: FieldValue,
}

impl std::str::FromStr for QueueArg {
    type Err = String;

    fn from_str(s: &str) -> Result<QueueArg, String> {
        let (key, value) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
        if key.is_empty() || key.len() > 255 {
            return Err(format!("{key:?}: a key is 1 to 255 bytes"));
        }
        let value = match (value.parse::<i64>(), value) {
            (Ok(n), _) => FieldValue::I64(n),
            (_, "true") => FieldValue::Bool(true),
            (_, "false") => FieldValue::Bool(false),
            (_, text) => long_str(text),
        };
        Ok(QueueArg {
            key: key.to_string(),
            value,
        })
    }
}

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
    pub queue_args: Vec<QueueArg>,
    pub dead_letter: bool,
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
    /// Arguments of every work queue (`--queue-arg`, `--dead-letter`'s).
    pub queue_arguments: FieldTable,
    /// Dead-letter queue i takes what work queue i dead-letters (`--dead-letter`).
    pub dead_letter_queues: Vec<String>,
}

/// `--queue-pattern` with `%d` replaced by each queue's index (or `-index`
/// appended when there are several queues and no `%d`).
fn queue_names(a: &RoutingArgs) -> Vec<String> {
    (0..a.queues)
        .map(|i| {
            if a.queue_pattern.contains("%d") {
                a.queue_pattern.replace("%d", &i.to_string())
            } else if a.queues == 1 {
                a.queue_pattern.clone()
            } else {
                format!("{}-{i}", a.queue_pattern)
            }
        })
        .collect()
}

/// The work queues' arguments: the `--queue-arg`s in order (a repeated key
/// keeps its last value).
fn queue_arguments(a: &RoutingArgs) -> Result<FieldTable, Error> {
    let mut table = FieldTable::default();
    for arg in &a.queue_args {
        if a.dead_letter && arg.key.starts_with("x-dead-letter-") {
            return Err(format!("--queue-arg {}: --dead-letter sets it", arg.key));
        }
        table.insert(&arg.key, arg.value.clone());
    }
    Ok(table)
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
        if a.dead_letter && a.queues == 0 {
            return Err("--dead-letter needs at least one queue".into());
        }
        let queues = queue_names(a);
        let q = a.queues.max(1);
        let mut plan = Plan {
            exchange: a.exchange.clone(),
            exchange_type: a.exchange_type,
            durable: a.persistent,
            dead_letter_queues: if a.dead_letter {
                queues.iter().map(|q| format!("{q}.dead")).collect()
            } else {
                Vec::new()
            },
            queues,
            bindings: Vec::new(),
            keys: Vec::new(),
            queue_arguments: queue_arguments(a)?,
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

    /// Deletes leftovers of an earlier run, then declares everything: the
    /// dead-letter side first, so the work queues can point at it.
    pub fn declare(&self, conn: &mut Conn) -> Result<(), Error> {
        self.delete(conn)?;
        if !self.dead_letter_queues.is_empty() {
            declare_exchange(conn, DLX, ExchangeType::Direct, self.durable)?;
        }
        for dead in &self.dead_letter_queues {
            declare_queue(conn, dead, self.durable, FieldTable::default())?;
            bind(conn, dead, DLX, dead, FieldTable::default())?;
        }
        if self.owns_exchange() {
            declare_exchange(conn, &self.exchange, self.exchange_type, self.durable)?;
        }
        for (i, queue) in self.queues.iter().enumerate() {
            let mut arguments = self.queue_arguments.clone();
            if let Some(dead) = self.dead_letter_queues.get(i) {
                arguments.insert("x-dead-letter-exchange", long_str(DLX));
                arguments.insert("x-dead-letter-routing-key", long_str(dead));
            }
            declare_queue(conn, queue, self.durable, arguments)?;
        }
        for b in &self.bindings {
            let queue = &self.queues[b.queue];
            bind(conn, queue, &self.exchange, &b.key, b.arguments.clone())?;
        }
        Ok(())
    }

    /// Deletes the queues and the exchanges (deleting what does not exist
    /// succeeds, as in RabbitMQ).
    pub fn delete(&self, conn: &mut Conn) -> Result<(), Error> {
        for queue in self.queues.iter().chain(&self.dead_letter_queues) {
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
        let dlx = (!self.dead_letter_queues.is_empty()).then_some(DLX);
        let own = self.owns_exchange().then_some(self.exchange.as_str());
        for exchange in own.into_iter().chain(dlx) {
            conn.rpc(
                1,
                ExchangeDelete {
                    exchange: bytes_of(exchange),
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

fn declare_exchange(
    conn: &mut Conn,
    name: &str,
    kind: ExchangeType,
    durable: bool,
) -> Result<(), Error> {
    conn.rpc(
        1,
        ExchangeDeclare {
            exchange: bytes_of(name),
            kind: Bytes::from_static(kind.as_str().as_bytes()),
            durable,
            ..Default::default()
        }
        .into(),
        (ExchangeDeclareOk::CLASS_ID, ExchangeDeclareOk::METHOD_ID),
    )?;
    Ok(())
}

fn declare_queue(
    conn: &mut Conn,
    name: &str,
    durable: bool,
    arguments: FieldTable,
) -> Result<(), Error> {
    conn.rpc(
        1,
        QueueDeclare {
            queue: bytes_of(name),
            durable,
            arguments,
            ..Default::default()
        }
        .into(),
        (QueueDeclareOk::CLASS_ID, QueueDeclareOk::METHOD_ID),
    )?;
    Ok(())
}

fn bind(
    conn: &mut Conn,
    queue: &str,
    exchange: &str,
    key: &str,
    arguments: FieldTable,
) -> Result<(), Error> {
    conn.rpc(
        1,
        QueueBind {
            queue: bytes_of(queue),
            exchange: bytes_of(exchange),
            routing_key: bytes_of(key),
            arguments,
            ..Default::default()
        }
        .into(),
        (QueueBindOk::CLASS_ID, QueueBindOk::METHOD_ID),
    )?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_args_parse_integers_booleans_and_strings() {
        let parse = |s: &str| s.parse::<QueueArg>().map(|a| (a.key, a.value));
        assert_eq!(
            parse("x-max-length=1000"),
            Ok(("x-max-length".into(), FieldValue::I64(1000)))
        );
        assert_eq!(
            parse("x-overflow=drop-head"),
            Ok(("x-overflow".into(), long_str("drop-head")))
        );
        assert_eq!(
            parse("x-single-active-consumer=true"),
            Ok(("x-single-active-consumer".into(), FieldValue::Bool(true)))
        );
        assert_eq!(parse("k=a=b"), Ok(("k".into(), long_str("a=b"))));
        assert!(parse("no-equals").is_err());
        assert!(parse("=1").is_err());
    }

    fn routing(queue_args: Vec<QueueArg>, dead_letter: bool) -> RoutingArgs {
        RoutingArgs {
            exchange: String::new(),
            exchange_type: ExchangeType::Direct,
            queues: 2,
            queue_pattern: "q-%d".into(),
            routing_keys: Vec::new(),
            binding_keys: Vec::new(),
            bindings: None,
            match_ratio: 1.0,
            persistent: false,
            queue_args,
            dead_letter,
        }
    }

    #[test]
    fn dead_letter_plans_one_dead_letter_queue_per_work_queue() {
        let args = vec!["x-max-length=5".parse().unwrap()];
        let plan = Plan::new(&routing(args, true)).unwrap();
        assert_eq!(plan.dead_letter_queues, ["q-0.dead", "q-1.dead"]);
        assert_eq!(
            plan.queue_arguments.get("x-max-length"),
            Some(&FieldValue::I64(5))
        );
        let clash = vec!["x-dead-letter-exchange=x".parse().unwrap()];
        assert!(Plan::new(&routing(clash, true)).is_err());
        let plain = Plan::new(&routing(Vec::new(), false)).unwrap();
        assert!(plain.dead_letter_queues.is_empty());
    }
}
