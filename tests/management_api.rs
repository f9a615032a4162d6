//! The management HTTP API and the Prometheus endpoint against RabbitMQ 3.10's, as pinned in
//! `tests/data/management-shapes.json` (regenerated from a fresh RabbitMQ node by
//! `tests/management-vs-rabbitmq.sh`).
//!
//! * `api_matches_rabbitmq`: `tests/mgmt/scenario.py` runs its fixed requests against a fresh
//!   broker; every request must get RabbitMQ's status, and every 2xx answer (and every error
//!   body) the same keys with the same JSON types. Requests that pinned exact facts (sort
//!   order, pagination counts, who sees what, error names, `WWW-Authenticate`) must match them.
//!   Keys that only describe RabbitMQ's Erlang machinery are listed in [`NOT_FOR_WARREN`].
//! * `metrics_expose_rabbitmq_families`: `/metrics` and `/metrics/per-object` have the named
//!   families with RabbitMQ's TYPE and label names.
//! * `per_object_metrics_count_published_messages`: after N messages published with lapin,
//!   `rabbitmq_queue_messages_ready{queue,vhost="/"}` is N and
//!   `rabbitmq_global_messages_received_total` at least N.
//!
//! Against RabbitMQ: `WARREN_TEST_AMQP_PORT=36600 WARREN_TEST_MGMT_PORT=36672
//! WARREN_TEST_PROMETHEUS_PORT=36692 cargo test --test management_api` on a node started by
//! `RABBIT_MGMT_PORT=36672 RABBIT_PROMETHEUS_PORT=36692 tests/rabbitmq-node.sh start 36600 DIR`
//! (the scenario needs a fresh node: it compares whole listings).

#[path = "mgmt/harness.rs"]
mod harness;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use harness::{data_file, http, python_script, MgmtBroker};
use lapin::BasicProperties;
use serde_json::Value;
use support::broker::external_port;
use support::lapin_client::{close, confirm_channel, connect, declare, publish_confirmed};
use support::{fresh_dir, run_async, unique_suffix};

/// Bounds the whole scenario (its statistics waits included).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);
/// How long counters may take to show on `/metrics` (RabbitMQ: every 5 s; Warren: at once).
const METRICS_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages published for the per-object metrics test.
const PUBLISHED: usize = 7;

/// Keys of RabbitMQ's answers that Warren need not have, wherever they appear, each with why:
/// they describe the Erlang VM or RabbitMQ's own storage, not anything a client acts on.
/// A key ending in `*` covers every key with that prefix.
const NOT_FOR_WARREN: &[(&str, &str)] = &[
    ("erlang_version", "version of the Erlang/OTP runtime"),
    ("erlang_full_version", "banner of the Erlang/OTP runtime"),
    (
        "applications",
        "the Erlang/OTP applications running in the node",
    ),
    ("garbage_collection", "GC settings of an Erlang process"),
    ("reductions", "Erlang scheduler work units of a process"),
    ("reductions_details", "rate of the above"),
    ("gc_num*", "Erlang VM garbage collection count"),
    ("gc_bytes_reclaimed*", "Erlang VM garbage collection volume"),
    ("context_switches*", "Erlang scheduler context switches"),
    ("run_queue", "Erlang scheduler run queue length"),
    ("proc_total", "Erlang process limit"),
    ("proc_used*", "Erlang processes in use"),
    (
        "mnesia_*",
        "transactions of Mnesia, RabbitMQ's Erlang database",
    ),
    (
        "metrics_gc_queue_length",
        "backlog of the management agent's Erlang GC processes",
    ),
    (
        "ra_open_file_metrics",
        "file handles of Ra, the Erlang Raft library",
    ),
    ("net_ticktime", "Erlang distribution heartbeat"),
    (
        "statistics_db_event_queue",
        "mailbox of the Erlang statistics database process",
    ),
    (
        "backing_queue_status",
        "classic queue implementation internals (q1-q4, delta)",
    ),
    ("io_*", "RabbitMQ's Erlang file_handle_cache counters"),
    ("msg_store_*", "classic queue message store counters"),
    ("queue_index_*", "classic queue index counters"),
    ("socket_opts", "Erlang gen_tcp options of a listener"),
    (
        "contexts",
        "Erlang web dispatcher contexts; RabbitMQ lists them only seconds after boot",
    ),
    (
        "config_files",
        "RabbitMQ always runs from a config file; Warren lists one only when given --config",
    ),
];

/// On an external broker the tests of this file take turns: the scenario compares whole
/// listings, which another test's queue would change.
static EXTERNAL: Mutex<()> = Mutex::new(());

/// [`MgmtBroker::start`], holding [`EXTERNAL`] on an external broker.
fn start() -> Option<(MgmtBroker, Option<MutexGuard<'static, ()>>)> {
    let guard = external_port().map(|_| EXTERNAL.lock().unwrap_or_else(PoisonError::into_inner));
    Some((MgmtBroker::start()?, guard))
}

/// The union marker of `tests/mgmt/common.py`'s shapes.
const UNION: &str = "$oneOf";

#[test]
fn api_matches_rabbitmq() {
    let Some((broker, _turn)) = start() else {
        return;
    };
    let warren = run_scenario(&broker);
    let pinned = pinned();
    let differences = compare_requests(&pinned["requests"], &warren);
    assert!(
        differences.is_empty(),
        "expected the management API to answer as RabbitMQ {} does, got {} difference(s):\n{}",
        pinned["rabbitmq_version"],
        differences.len(),
        differences.join("\n")
    );
}

#[test]
fn metrics_expose_rabbitmq_families() {
    let Some((broker, _turn)) = start() else {
        return;
    };
    // A queue with a message, so that per-queue series exist.
    let queue = format!("mgmt-families-{}", unique_suffix());
    publish_to_new_queue(&broker, &queue, 1);
    let pinned = pinned();
    let deadline = Instant::now() + METRICS_TIMEOUT;
    let differences = loop {
        let differences = family_differences(&broker, &pinned);
        if differences.is_empty() || Instant::now() > deadline {
            break differences;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    broker.api("DELETE", &format!("/api/queues/%2F/{queue}"), None);
    assert!(
        differences.is_empty(),
        "expected RabbitMQ's metric families, got {} difference(s):\n{}",
        differences.len(),
        differences.join("\n")
    );
}

/// Every difference between the pinned metric families and the broker's, both endpoints.
fn family_differences(broker: &MgmtBroker, pinned: &Value) -> Vec<String> {
    let mut differences = Vec::new();
    for endpoint in ["/metrics", "/metrics/per-object"] {
        let families = parse_prometheus(&scrape(broker, endpoint))
            .unwrap_or_else(|e| panic!("expected Prometheus text on {endpoint}, got {e}"));
        let named = pinned["prometheus"][endpoint]["named"]
            .as_object()
            .unwrap_or_else(|| panic!("expected pinned families for {endpoint}"));
        for (name, expected) in named {
            differences.extend(compare_family(endpoint, name, expected, &families));
        }
    }
    differences
}

#[test]
fn per_object_metrics_count_published_messages() {
    let Some((broker, _turn)) = start() else {
        return;
    };
    let queue = format!("mgmt-metrics-{}", unique_suffix());
    publish_to_new_queue(&broker, &queue, PUBLISHED);
    let deadline = Instant::now() + METRICS_TIMEOUT;
    let (ready, received) = loop {
        let families = parse_prometheus(&scrape(&broker, "/metrics/per-object"))
            .unwrap_or_else(|e| panic!("expected Prometheus text, got {e}"));
        let labels = [("queue", queue.as_str()), ("vhost", "/")];
        let ready = sample(&families, "rabbitmq_queue_messages_ready", &labels);
        let received = total(&families, "rabbitmq_global_messages_received_total");
        if ready == Some(PUBLISHED as f64) || Instant::now() > deadline {
            break (ready, received);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    broker.api("DELETE", &format!("/api/queues/%2F/{queue}"), None);
    assert_eq!(
        ready,
        Some(PUBLISHED as f64),
        "expected rabbitmq_queue_messages_ready{{queue=\"{queue}\",vhost=\"/\"}} {PUBLISHED} on /metrics/per-object"
    );
    assert!(
        received.is_some_and(|r| r >= PUBLISHED as f64),
        "expected rabbitmq_global_messages_received_total >= {PUBLISHED}, got {received:?}"
    );
}

/// Runs `tests/mgmt/scenario.py` against the broker; its records.
fn run_scenario(broker: &MgmtBroker) -> Value {
    let dir = fresh_dir("mgmt-scenario");
    let out = dir.join("warren.json");
    let out_text = out.to_str().expect("a UTF-8 path");
    let output = python_script(
        "scenario.py",
        &[
            &broker.mgmt_url(),
            &broker.amqp_port().to_string(),
            out_text,
        ],
        SCENARIO_TIMEOUT,
    );
    output.assert_success("tests/mgmt/scenario.py");
    let text = std::fs::read_to_string(&out)
        .unwrap_or_else(|e| panic!("expected the scenario's output in {out:?}, got {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("expected JSON records, got {e}"))
}

/// `tests/data/management-shapes.json`.
fn pinned() -> Value {
    let path = data_file("management-shapes.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("expected the pinned shapes in {path:?}, got {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("expected JSON in {path:?}, got {e}"))
}

/// Every difference between the pinned records and Warren's, one line each.
fn compare_requests(pinned: &Value, warren: &Value) -> Vec<String> {
    let by_name: BTreeMap<&str, &Value> = warren
        .as_array()
        .expect("a list of records")
        .iter()
        .filter_map(|r| Some((r["name"].as_str()?, r)))
        .collect();
    let mut differences = Vec::new();
    for expected in pinned.as_array().expect("a list of pinned records") {
        let name = expected["name"].as_str().unwrap_or_default();
        let what = format!("{name} ({} {})", expected["method"], expected["path"]);
        match by_name.get(name) {
            None => differences.push(format!("{what}: not run")),
            Some(actual) => compare_record(&what, expected, actual, &mut differences),
        }
    }
    differences
}

/// Status, then (for 2xx answers and error bodies) shape, then the pinned exact facts.
fn compare_record(what: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    if expected["status"] != actual["status"] {
        out.push(format!(
            "{what}: status {} where RabbitMQ answers {}",
            actual["status"], expected["status"]
        ));
        return;
    }
    if !expected["shape"].is_null() {
        compare_shape(what, "", &expected["shape"], &actual["shape"], out);
    }
    for field in ["values", "error", "www_authenticate"] {
        let (want, got) = (&expected[field], &actual[field]);
        if !want.is_null() && want != got {
            out.push(format!("{what}: {field} {got} where RabbitMQ has {want}"));
        }
    }
}

/// Compares two shapes (see `tests/mgmt/common.py`) at `path`, pushing each difference.
fn compare_shape(what: &str, path: &str, want: &Value, got: &Value, out: &mut Vec<String>) {
    let here = if path.is_empty() { "body" } else { path };
    match (want, got) {
        (Value::Object(w), Value::Object(g))
            if !w.contains_key(UNION) && !g.contains_key(UNION) =>
        {
            compare_objects(what, path, w, g, out);
        }
        (Value::Array(w), Value::Array(g)) => match (w.first(), g.first()) {
            (Some(w), Some(g)) => compare_shape(what, &format!("{path}[]"), w, g, out),
            (Some(_), None) => out.push(format!(
                "{what}: {here} is an empty list where RabbitMQ's has elements"
            )),
            (None, Some(_)) => out.push(format!(
                "{what}: {here} has elements where RabbitMQ's list is empty"
            )),
            (None, None) => {}
        },
        _ => {
            let allowed = alternatives(want);
            let stray: Vec<String> = alternatives(got)
                .into_iter()
                .filter(|g| !allowed.contains(g))
                .collect();
            if !stray.is_empty() {
                out.push(format!(
                    "{what}: {here} is {} where RabbitMQ's is {}",
                    stray.join(" or "),
                    allowed.join(" or ")
                ));
            }
        }
    }
}

fn compare_objects(
    what: &str,
    path: &str,
    want: &serde_json::Map<String, Value>,
    got: &serde_json::Map<String, Value>,
    out: &mut Vec<String>,
) {
    for (key, want_value) in want.iter().filter(|(k, _)| !not_for_warren(k)) {
        let at = format!("{path}.{key}");
        match got.get(key) {
            Some(got_value) => compare_shape(what, &at, want_value, got_value, out),
            None => out.push(format!("{what}: missing {at} ({})", short(want_value))),
        }
    }
    for (key, got_value) in got {
        if !want.contains_key(key) && !not_for_warren(key) {
            out.push(format!("{what}: extra {path}.{key} ({})", short(got_value)));
        }
    }
}

/// The alternatives of a shape (several for a `$oneOf` union), as canonical JSON texts.
fn alternatives(shape: &Value) -> Vec<String> {
    match shape.get(UNION).and_then(Value::as_array) {
        Some(alts) => alts.iter().map(Value::to_string).collect(),
        None => vec![shape.to_string()],
    }
}

/// A shape for a message, cut to a readable length.
fn short(shape: &Value) -> String {
    let text = shape.to_string();
    if text.chars().count() > 80 {
        format!("{}...", text.chars().take(77).collect::<String>())
    } else {
        text
    }
}

/// True for a key in [`NOT_FOR_WARREN`].
fn not_for_warren(key: &str) -> bool {
    NOT_FOR_WARREN
        .iter()
        .any(|(pattern, _why)| match pattern.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => key == *pattern,
        })
}

/// One Prometheus sample: its labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// One metric family: its TYPE and samples.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    samples: Vec<Sample>,
}

/// Parses the Prometheus text exposition format. A sample belongs to the family of the last
/// `# TYPE` line whose name prefixes the sample's (histograms: `_bucket`, `_sum`, `_count`),
/// else to a family of its own name (`untyped`).
fn parse_prometheus(text: &str) -> Result<BTreeMap<String, Family>, String> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            if let (Some("TYPE"), Some(name), Some(kind)) =
                (words.next(), words.next(), words.next())
            {
                families.entry(name.to_string()).or_default().kind = kind.to_string();
                current = Some(name.to_string());
            }
            continue;
        }
        let sample = parse_sample(line)?;
        let family = match &current {
            Some(name) if sample.name.starts_with(name.as_str()) => name.clone(),
            _ => sample.name.clone(),
        };
        let entry = families.entry(family).or_default();
        if entry.kind.is_empty() {
            entry.kind = "untyped".to_string();
        }
        entry.samples.push(sample);
    }
    Ok(families)
}

/// `name{label="value",...} value [timestamp]`
fn parse_sample(line: &str) -> Result<Sample, String> {
    let bad = || format!("expected a sample line, got {line:?}");
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}').ok_or_else(bad)?;
            (
                &line[..open],
                parse_labels(&line[open + 1..close]).ok_or_else(bad)?,
                &line[close + 1..],
            )
        }
        None => {
            let (name, rest) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
            (name, BTreeMap::new(), rest)
        }
    };
    let value = rest.split_whitespace().next().ok_or_else(bad)?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|_| bad())?,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `a="x",b="y\"z"` (escapes \\, \" and \n).
fn parse_labels(text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(labels);
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => value.push(match chars.next()? {
                    'n' => '\n',
                    other => other,
                }),
                c => value.push(c),
            }
        }
        labels.insert(name.trim().to_string(), value);
    }
}

/// Differences between a pinned family (`{"type", "labels"}`) and the scraped one.
fn compare_family(
    endpoint: &str,
    name: &str,
    expected: &Value,
    families: &BTreeMap<String, Family>,
) -> Vec<String> {
    let Some(family) = families.get(name).filter(|f| !f.samples.is_empty()) else {
        return vec![format!("{endpoint}: no {name} series")];
    };
    let mut differences = Vec::new();
    if expected["type"].as_str() != Some(family.kind.as_str()) {
        differences.push(format!(
            "{endpoint}: {name} has TYPE {} where RabbitMQ's has {}",
            family.kind, expected["type"]
        ));
    }
    let want: BTreeSet<&str> = expected["labels"]
        .as_array()
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let got: BTreeSet<&str> = family
        .samples
        .iter()
        .flat_map(|s| s.labels.keys().map(String::as_str))
        .collect();
    if want != got {
        differences.push(format!(
            "{endpoint}: {name} has labels {got:?} where RabbitMQ's has {want:?}"
        ));
    }
    differences
}

/// The value of the sample of `name` that has (at least) `labels`.
fn sample(families: &BTreeMap<String, Family>, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families
        .get(name)?
        .samples
        .iter()
        .find(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// The sum of the samples of `name` (`None` without any).
fn total(families: &BTreeMap<String, Family>, name: &str) -> Option<f64> {
    let samples = &families.get(name)?.samples;
    (!samples.is_empty()).then(|| samples.iter().map(|s| s.value).sum())
}

/// The body of `GET endpoint` on the Prometheus port, which must answer 200.
fn scrape(broker: &MgmtBroker, endpoint: &str) -> String {
    let response = http(broker.prometheus_port, "GET", endpoint, None, None);
    assert_eq!(
        response.status, 200,
        "expected 200 from GET {endpoint} on the Prometheus port, got {}: {}",
        response.status, response.body
    );
    response.body
}

/// Declares `queue` and publishes `count` confirmed messages to it with lapin.
fn publish_to_new_queue(broker: &MgmtBroker, queue: &str, count: usize) {
    let url = broker.broker.amqp_url();
    run_async(Duration::from_secs(60), async move {
        let connection = connect(&url).await;
        let channel = confirm_channel(&connection).await;
        declare(&channel, queue, true).await;
        for i in 0..count {
            let body = format!("message {i}");
            publish_confirmed(
                &channel,
                "",
                queue,
                false,
                body.as_bytes(),
                BasicProperties::default(),
            )
            .await;
        }
        close(connection, "publisher").await;
    });
}

#[test]
fn prometheus_parser_reads_labels_types_and_histograms() {
    let text = "# HELP a_total Things.\n# TYPE a_total counter\na_total{protocol=\"amqp091\",q=\"x\\\"y\"} 12\n\
                # TYPE h histogram\nh_bucket{le=\"+Inf\"} 3\nh_sum 1.5\nh_count 3\nlone 4 1700000000\n";
    let families = parse_prometheus(text).expect("valid text");
    assert_eq!(families["a_total"].kind, "counter");
    assert_eq!(sample(&families, "a_total", &[("q", "x\"y")]), Some(12.0));
    assert_eq!(families["h"].samples.len(), 3);
    assert_eq!(families["lone"].kind, "untyped");
    assert_eq!(total(&families, "lone"), Some(4.0));
}

#[test]
fn comparison_lists_every_difference() {
    let pinned = serde_json::json!([
        {"name": "a", "method": "GET", "path": "/a", "status": 200,
         "shape": {"n": "number", "s": "string", "gc_num": "number", "l": [{"x": "boolean"}],
                   "u": {"$oneOf": ["null", "string"]}},
         "values": ["x"]},
        {"name": "b", "method": "GET", "path": "/b", "status": 404, "shape": null, "error": "Object Not Found"},
        {"name": "c", "method": "GET", "path": "/c", "status": 200, "shape": []},
    ]);
    let warren = serde_json::json!([
        {"name": "a", "method": "GET", "path": "/a", "status": 200,
         "shape": {"n": "string", "extra": "number", "l": [], "u": "string"},
         "values": ["y"]},
        {"name": "b", "method": "GET", "path": "/b", "status": 404, "shape": null, "error": "not_found"},
    ]);
    let differences = compare_requests(&pinned, &warren);
    let expected = [
        "a (\"GET\" \"/a\"): .l is an empty list where RabbitMQ's has elements",
        "a (\"GET\" \"/a\"): .n is \"string\" where RabbitMQ's is \"number\"",
        "a (\"GET\" \"/a\"): missing .s (\"string\")",
        "a (\"GET\" \"/a\"): extra .extra (\"number\")",
        "a (\"GET\" \"/a\"): values [\"y\"] where RabbitMQ has [\"x\"]",
        "b (\"GET\" \"/b\"): error \"not_found\" where RabbitMQ has \"Object Not Found\"",
        "c (\"GET\" \"/c\"): not run",
    ];
    assert_eq!(differences, expected);
}
