//! The end of a run: a human summary and one JSON line.

use std::time::Duration;

use hdrhistogram::Histogram;
use warren::protocol::FieldValue;

use super::args::Args;
use super::conn::Target;
use super::stats::{json_num, json_str, Counters};

pub struct Report<'a> {
    pub args: &'a Args,
    pub target: &'a Target,
    pub window: Duration,
    pub counts: Counters,
    pub self_cpu_ns: u64,
    pub broker_cpu_ns: Option<u64>,
    pub latency_ns: &'a Histogram<u64>,
    pub returned: u64,
    pub blocked: u64,
    pub blocked_at_stop: u64,
    pub errors: Vec<String>,
}

impl Report<'_> {
    fn secs(&self) -> f64 {
        self.window.as_secs_f64().max(1e-9)
    }

    fn rate(&self, n: u64) -> f64 {
        n as f64 / self.secs()
    }

    /// Messages the CPU figures are divided by: deliveries for fanouts,
    /// publishes for mostly unroutable runs.
    fn basis(&self) -> u64 {
        let c = &self.counts;
        c.published.max(c.consumed).max(c.dead_lettered)
    }

    fn per_msg_us(&self, cpu_ns: u64) -> Option<f64> {
        match self.basis() {
            0 => None,
            n => Some(cpu_ns as f64 / 1000.0 / n as f64),
        }
    }

    fn cores(&self, cpu_ns: u64) -> f64 {
        cpu_ns as f64 / 1e9 / self.secs()
    }

    /// Latency quantile in µs, `None` without samples.
    fn lat_us(&self, q: f64) -> Option<f64> {
        (!self.latency_ns.is_empty()).then(|| self.latency_ns.value_at_quantile(q) as f64 / 1000.0)
    }

    fn lat_max_us(&self) -> Option<f64> {
        (!self.latency_ns.is_empty()).then(|| self.latency_ns.max() as f64 / 1000.0)
    }

    /// The summary's first lines: what was run against what.
    fn setup(&self) -> String {
        let a = self.args;
        let exchange = if a.exchange.is_empty() {
            "default exchange".to_string()
        } else {
            format!("{} exchange {:?}", a.exchange_type.as_str(), a.exchange)
        };
        let ack = match (a.autoack, a.dead_letter) {
            (true, _) => "autoack".to_string(),
            (false, false) => format!("ack every {}", a.multi_ack_every),
            (false, true) => format!("nack (requeue=false) every {}", a.multi_ack_every),
        };
        let mut s = format!(
            "warren-perf against {}:{}: {} producer(s), {} consumer(s), {} queue(s), {} B{}, {exchange}, {ack}{}{}{}\n",
            self.target.host,
            self.target.port,
            a.producers,
            a.consumers,
            a.queues,
            a.size,
            if a.persistent { " persistent" } else { "" },
            a.prefetch.map(|p| format!(", prefetch {p}")).unwrap_or_default(),
            a.confirm.map(|w| format!(", confirms window {w}")).unwrap_or_default(),
            a.rate.map(|r| format!(", rate {r} msg/s")).unwrap_or_default(),
        );
        if !a.queue_args.is_empty() || a.dead_letter {
            let dead = if a.dead_letter {
                ", dead-lettering to <queue>.dead (one autoack consumer each)"
            } else {
                ""
            };
            s += &format!("  queue args  {}{dead}\n", queue_args_json(a));
        }
        s
    }

    pub fn summary(&self) -> String {
        let a = self.args;
        let c = &self.counts;
        let mut s = self.setup();
        s += &format!("  window      {:.2} s\n", self.secs());
        s += &format!(
            "  published   {:>10.0} msg/s  ({} msgs)\n",
            self.rate(c.published),
            c.published
        );
        if a.confirm.is_some() {
            s += &format!(
                "  confirmed   {:>10.0} msg/s  ({} msgs, {} nacked)\n",
                self.rate(c.confirmed),
                c.confirmed,
                c.nacked
            );
        }
        s += &format!(
            "  consumed    {:>10.0} msg/s  ({} msgs)\n",
            self.rate(c.consumed),
            c.consumed
        );
        if a.dead_letter {
            s += &format!(
                "  dead-lettered {:>8.0} msg/s  ({} msgs received from the dead-letter queues)\n",
                self.rate(c.dead_lettered),
                c.dead_lettered
            );
        }
        match (
            self.lat_us(0.5),
            self.lat_us(0.99),
            self.lat_us(0.999),
            self.lat_max_us(),
        ) {
            (Some(p50), Some(p99), Some(p999), Some(max)) => {
                s += &format!(
                    "  latency     p50 {p50:.0} µs  p99 {p99:.0} µs  p99.9 {p999:.0} µs  max {max:.0} µs  ({} samples)\n",
                    self.latency_ns.len()
                );
            }
            _ => s += "  latency     no samples\n",
        }
        if let Some(cpu) = self.broker_cpu_ns {
            s += &format!(
                "  broker CPU  {} µs/msg  ({:.2} cores)\n",
                json_num(self.per_msg_us(cpu)),
                self.cores(cpu)
            );
        }
        s += &format!(
            "  own CPU     {} µs/msg  ({:.2} cores)",
            json_num(self.per_msg_us(self.self_cpu_ns)),
            self.cores(self.self_cpu_ns)
        );
        if self.returned > 0 || self.blocked > 0 || self.blocked_at_stop > 0 {
            s += &format!(
                "\n  returned    {}  connection.blocked {}  producers still blocked at the end {}",
                self.returned, self.blocked, self.blocked_at_stop
            );
        }
        for e in &self.errors {
            s += &format!("\n  ERROR       {e}");
        }
        s
    }

    pub fn json(&self) -> String {
        let a = self.args;
        let c = &self.counts;
        let opt_u = |v: Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
        let errors: Vec<String> = self.errors.iter().map(|e| json_str(e)).collect();
        format!(
            concat!(
                "{{\"tool\":\"warren-perf\",\"label\":{},\"target\":{},",
                "\"producers\":{},\"consumers\":{},\"queues\":{},\"size\":{},",
                "\"exchange\":{},\"exchange_type\":{},\"persistent\":{},\"confirm\":{},",
                "\"autoack\":{},\"multi_ack_every\":{},\"prefetch\":{},\"rate\":{},",
                "\"queue_args\":{},\"dead_letter\":{},",
                "\"window_s\":{:.3},\"published\":{},\"confirmed\":{},\"nacked\":{},",
                "\"consumed\":{},\"dead_lettered\":{},\"returned\":{},\"blocked\":{},\"blocked_at_stop\":{},",
                "\"publish_rate\":{:.1},\"confirm_rate\":{:.1},\"consume_rate\":{:.1},\"dead_letter_rate\":{:.1},",
                "\"latency_us\":{{\"samples\":{},\"p50\":{},\"p99\":{},\"p999\":{},\"max\":{}}},",
                "\"cpu_basis_msgs\":{},\"client_cpu_us_per_msg\":{},\"client_cpu_cores\":{:.3},",
                "\"broker_pid\":{},\"broker_cpu_us_per_msg\":{},\"broker_cpu_cores\":{},",
                "\"errors\":[{}]}}"
            ),
            a.label.as_deref().map_or("null".to_string(), json_str),
            json_str(&format!("{}:{}", self.target.host, self.target.port)),
            a.producers,
            a.consumers,
            a.queues,
            a.size,
            json_str(&a.exchange),
            json_str(a.exchange_type.as_str()),
            a.persistent,
            opt_u(a.confirm),
            a.autoack,
            a.multi_ack_every,
            opt_u(a.prefetch.map(u64::from)),
            json_num(a.rate),
            queue_args_json(a),
            a.dead_letter,
            self.secs(),
            c.published,
            c.confirmed,
            c.nacked,
            c.consumed,
            c.dead_lettered,
            self.returned,
            self.blocked,
            self.blocked_at_stop,
            self.rate(c.published),
            self.rate(c.confirmed),
            self.rate(c.consumed),
            self.rate(c.dead_lettered),
            self.latency_ns.len(),
            json_num(self.lat_us(0.5)),
            json_num(self.lat_us(0.99)),
            json_num(self.lat_us(0.999)),
            json_num(self.lat_max_us()),
            self.basis(),
            json_num(self.per_msg_us(self.self_cpu_ns)),
            self.cores(self.self_cpu_ns),
            opt_u(a.broker_pid.map(u64::from)),
            json_num(self.broker_cpu_ns.and_then(|n| self.per_msg_us(n))),
            json_num(self.broker_cpu_ns.map(|n| self.cores(n))),
            errors.join(","),
        )
    }
}

/// The `--queue-arg`s as a JSON object (integers, booleans and strings are all they can be).
fn queue_args_json(a: &Args) -> String {
    let fields: Vec<String> = a
        .queue_args
        .iter()
        .map(|arg| {
            let value = match &arg.value {
                FieldValue::I64(n) => n.to_string(),
                FieldValue::Bool(b) => b.to_string(),
                FieldValue::LongStr(s) => json_str(&String::from_utf8_lossy(s)),
                other => json_str(&format!("{other:?}")),
            };
            format!("{}:{value}", json_str(&arg.key))
        })
        .collect();
    format!("{{{}}}", fields.join(","))
}
