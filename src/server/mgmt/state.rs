//! What the API thread keeps: the way to shard 0 (requests answered asynchronously, so one
//! slow listing never holds another request) and the message-rate samples.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;

use crate::config::Config;
use crate::shard::control::{Control, ControlRequest, ControlSender, Query};

/// How often message counters are sampled for rates (RabbitMQ's
/// `collect_statistics_interval` default).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

pub struct Api {
    control: ControlSender,
    pub config: Arc<Config>,
    pub started: Instant,
    pub alarms: Option<Arc<crate::alarm::Alarms>>,
    rates: Mutex<Rates>,
}

/// Per-second rates from the last two samples: global counters by name, and per queue
/// (`vhost`, `name`) counters by name.
#[derive(Default)]
pub struct Rates {
    last: Option<(Instant, Value)>,
    pub global: HashMap<String, f64>,
    pub queues: HashMap<(String, String), HashMap<String, f64>>,
}

impl Api {
    pub fn new(
        control: ControlSender,
        config: Arc<Config>,
        alarms: Option<Arc<crate::alarm::Alarms>>,
    ) -> Api {
        Api {
            control,
            config,
            alarms,
            started: Instant::now(),
            rates: Mutex::new(Rates::default()),
        }
    }

    /// The sender to shard 0 (for work done on a blocking thread).
    pub fn control(&self) -> ControlSender {
        self.control.clone()
    }

    /// Hands `what` to shard 0 and waits for its answer.
    pub async fn ask(&self, what: Control) -> Result<String, String> {
        let (reply, answer) = oneshot::channel();
        self.control
            .send(ControlRequest { what, reply })
            .map_err(|_| "the broker is stopping".to_string())?;
        answer
            .await
            .unwrap_or_else(|_| Err("the broker is stopping".to_string()))
    }

    /// The whole state as shard 0 reports it (see `shard::control::snapshot`).
    pub async fn snapshot(&self) -> Result<Value, String> {
        let text = self.ask(Control::Query(Query::Snapshot)).await?;
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }

    /// Runs `f` on the current rates.
    pub fn with_rates<T>(&self, f: impl FnOnce(&Rates) -> T) -> T {
        let rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        f(&rates)
    }

    /// Takes a sample every [`SAMPLE_EVERY`] until the broker stops.
    pub async fn sample_forever(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        loop {
            tick.tick().await;
            let Ok(snapshot) = self.snapshot().await else {
                return;
            };
            let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
            rates.sample(Instant::now(), snapshot);
        }
    }
}

impl Rates {
    fn sample(&mut self, now: Instant, snapshot: Value) {
        if let Some((then, before)) = &self.last {
            let secs = now.duration_since(*then).as_secs_f64().max(0.001);
            self.global = per_second(&before["totals"], &snapshot["totals"], secs);
            let old = queue_stats(before);
            self.queues = queue_stats(&snapshot)
                .into_iter()
                .map(|(key, now)| {
                    let rates =
                        per_second(old.get(&key).copied().unwrap_or(&Value::Null), now, secs);
                    (key, rates)
                })
                .collect();
        }
        self.last = Some((now, snapshot));
    }

    /// The rate of `counter` (0 before two samples exist).
    pub fn global(&self, counter: &str) -> f64 {
        self.global.get(counter).copied().unwrap_or(0.0)
    }

    pub fn queue(&self, vhost: &str, name: &str, counter: &str) -> f64 {
        let key = (vhost.to_string(), name.to_string());
        self.queues
            .get(&key)
            .and_then(|r| r.get(counter))
            .copied()
            .unwrap_or(0.0)
    }
}

fn queue_stats(snapshot: &Value) -> HashMap<(String, String), &Value> {
    let queues = snapshot["queues"].as_array().map(Vec::as_slice);
    queues
        .unwrap_or_default()
        .iter()
        .map(|q| {
            let key = (str_of(&q["vhost"]), str_of(&q["name"]));
            (key, &q["stats"])
        })
        .collect()
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// `(now - before) / secs` for every numeric field of `now`; a counter that went back (a
/// queue deleted and declared again) counts from zero.
fn per_second(before: &Value, now: &Value, secs: f64) -> HashMap<String, f64> {
    let Some(now) = now.as_object() else {
        return HashMap::new();
    };
    now.iter()
        .filter_map(|(k, v)| {
            let n = v.as_u64()?;
            let b = before[k].as_u64().unwrap_or(0);
            let delta = if n >= b { n - b } else { n };
            Some((k.clone(), (delta as f64 / secs * 10.0).round() / 10.0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rates_come_from_the_last_two_samples() {
        let mut rates = Rates::default();
        let t0 = Instant::now();
        let q = |n: u64| json!([{"vhost": "/", "name": "q", "stats": {"publish": n}}]);
        rates.sample(t0, json!({"totals": {"publish": 10}, "queues": q(10)}));
        assert_eq!(rates.global("publish"), 0.0);
        let t1 = t0 + Duration::from_secs(5);
        rates.sample(t1, json!({"totals": {"publish": 60}, "queues": q(35)}));
        assert_eq!(rates.global("publish"), 10.0);
        assert_eq!(rates.queue("/", "q", "publish"), 5.0);
        assert_eq!(rates.queue("/", "other", "publish"), 0.0);
    }
}
