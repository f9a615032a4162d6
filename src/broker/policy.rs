//! Policies and operator policies, with RabbitMQ's semantics: a policy names the queues
//! and/or exchanges whose names its pattern (a regular expression, searched anywhere in the
//! name) matches, and supplies their optional arguments in bulk.
//!
//! - Of the policies that match, the one with the highest priority applies (ties: the first
//!   name in byte order, so every shard picks the same one); the same for operator policies.
//! - Numeric limits (`max-length`, `max-length-bytes`, `message-ttl`, `expires`,
//!   `delivery-limit`) take the lowest of the queue's argument, the policy and the operator
//!   policy: an operator policy caps what users ask for.
//! - Other keys (`dead-letter-exchange`, `dead-letter-routing-key`, `overflow`,
//!   `alternate-exchange`) come from the policy only where the argument is absent.
//! - `x-max-priority` and `x-single-active-consumer` are arguments only, as in RabbitMQ.
//!
//! Policies are topology: changed through the owner shard, stored in the definitions log and
//! applied by every shard to the queues it owns as soon as they change.

use std::borrow::Cow;

use bytes::Bytes;
use regex::bytes::Regex;

use super::overflow::Overflow;
use crate::protocol::{FieldTable, FieldValue};
use crate::store::record::PolicyDef;

/// Keys whose lowest value applies: (policy key, queue argument).
const LIMITS: [(&str, &str); 5] = [
    ("max-length", "x-max-length"),
    ("max-length-bytes", "x-max-length-bytes"),
    ("message-ttl", "x-message-ttl"),
    ("expires", "x-expires"),
    ("delivery-limit", "x-delivery-limit"),
];

/// Keys where the queue's own argument wins over the policy.
const ARGUMENT_WINS: [(&str, &str); 3] = [
    ("dead-letter-exchange", "x-dead-letter-exchange"),
    ("dead-letter-routing-key", "x-dead-letter-routing-key"),
    ("overflow", "x-overflow"),
];

/// Keys RabbitMQ knows that mean nothing on a single Warren node (mirroring, queue
/// modes and versions, in-memory limits): accepted, so that definitions exported from
/// RabbitMQ load, and ignored.
const IGNORED: [&str; 13] = [
    "ha-mode",
    "ha-params",
    "ha-sync-mode",
    "ha-sync-batch-size",
    "ha-promote-on-shutdown",
    "ha-promote-on-failure",
    "queue-master-locator",
    "queue-mode",
    "queue-version",
    "max-in-memory-length",
    "max-in-memory-bytes",
    "federation-upstream",
    "federation-upstream-set",
];

/// Keys an operator policy may set (numeric caps only, as in RabbitMQ).
const OPERATOR_KEYS: [&str; 7] = [
    "max-length",
    "max-length-bytes",
    "message-ttl",
    "expires",
    "delivery-limit",
    "max-in-memory-length",
    "max-in-memory-bytes",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApplyTo {
    Queues,
    Exchanges,
    All,
}

/// What a policy is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Queue,
    Exchange,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub def: PolicyDef,
    pattern: Regex,
    apply_to: ApplyTo,
}

impl Policy {
    /// Checks a definition as RabbitMQ does before it is stored: the pattern compiles,
    /// apply-to is known, and every key is known with a valid value (the topology checks that
    /// the vhost exists).
    pub fn compile(def: PolicyDef) -> Result<Policy, String> {
        if def.name.is_empty() {
            return Err("a policy needs a name".to_string());
        }
        let apply_to = match def.apply_to.as_ref() {
            b"queues" => ApplyTo::Queues,
            b"exchanges" => ApplyTo::Exchanges,
            b"all" => ApplyTo::All,
            other => {
                return Err(format!(
                    "apply-to '{}' unrecognised; should be 'queues', 'exchanges' or 'all'",
                    lossy(other)
                ))
            }
        };
        if def.operator && apply_to == ApplyTo::Exchanges {
            return Err("operator policies apply to queues only".to_string());
        }
        let text = std::str::from_utf8(&def.pattern)
            .map_err(|_| "the pattern is not valid UTF-8".to_string())?;
        let pattern = Regex::new(text).map_err(|e| {
            let why = e.to_string().lines().last().unwrap_or_default().to_string();
            format!("pattern should be regular expression but is invalid: {why}")
        })?;
        if def.definition.is_empty() {
            return Err("the definition is empty".to_string());
        }
        for (key, value) in &def.definition.0 {
            check_key(&lossy(key), value, def.operator)?;
        }
        Ok(Policy {
            def,
            pattern,
            apply_to,
        })
    }

    fn matches(&self, vhost: &[u8], name: &[u8], target: Target) -> bool {
        if self.def.vhost != vhost {
            return false;
        }
        let kind = matches!(
            (self.apply_to, target),
            (ApplyTo::All, _)
                | (ApplyTo::Queues, Target::Queue)
                | (ApplyTo::Exchanges, Target::Exchange)
        );
        kind && self.pattern.is_match(name)
    }

    fn get(&self, key: &str) -> Option<&FieldValue> {
        self.def.definition.get(key)
    }
}

/// The matching policy of highest priority; of equals, the first name in byte order.
fn best<'a>(list: &'a [Policy], vhost: &[u8], name: &[u8], target: Target) -> Option<&'a Policy> {
    list.iter()
        .filter(|p| p.matches(vhost, name, target))
        .max_by(|a, b| {
            (a.def.priority, std::cmp::Reverse(&a.def.name))
                .cmp(&(b.def.priority, std::cmp::Reverse(&b.def.name)))
        })
}

fn lossy(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// One definition key and its value, checked in RabbitMQ's terms.
fn check_key(key: &str, value: &FieldValue, operator: bool) -> Result<(), String> {
    if operator && !OPERATOR_KEYS.contains(&key) {
        return Err(format!(
            "'{key}' is not a recognised operator policy setting (allowed: {})",
            OPERATOR_KEYS.join(", ")
        ));
    }
    let shown = match (value.as_i64(), value.as_bytes()) {
        (Some(n), _) => n.to_string(),
        (_, Some(s)) => format!("'{}'", lossy(s)),
        _ => format!("{value:?}"),
    };
    // RabbitMQ's wording: "<value> is not a valid <what>".
    let integer = |min: i64, what: &str| match value.as_i64() {
        Some(n) if n >= min => Ok(()),
        _ => Err(format!("{shown} is not a valid {what}")),
    };
    match key {
        "max-length" => integer(0, "maximum length"),
        "max-length-bytes" => integer(0, "maximum length in bytes"),
        "message-ttl" => integer(0, "message TTL"),
        "delivery-limit" => integer(0, "delivery limit"),
        "expires" => integer(1, "queue expiry"),
        "dead-letter-exchange" | "dead-letter-routing-key" | "alternate-exchange" => {
            match value.as_bytes() {
                Some(_) => Ok(()),
                None => Err(format!("{key} must be a string")),
            }
        }
        "overflow" => match value.as_bytes().and_then(Overflow::parse) {
            Some(_) => Ok(()),
            None => Err(format!("{shown} is not a valid overflow value")),
        },
        "max-priority" => Err(
            "max-priority cannot be set by a policy (as in RabbitMQ): declare the queue with x-max-priority"
                .to_string(),
        ),
        "single-active-consumer" => Err(
            "single-active-consumer cannot be set by a policy (as in RabbitMQ): declare the queue with x-single-active-consumer"
                .to_string(),
        ),
        _ if IGNORED.contains(&key) => Ok(()),
        _ => Err(format!("'{key}' is not a recognised policy setting")),
    }
}

/// Every policy and operator policy of the broker.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    user: Vec<Policy>,
    operator: Vec<Policy>,
}

impl Policies {
    /// Adds or replaces (by vhost and name) a compiled policy.
    pub fn set(&mut self, policy: Policy) {
        let list = self.list_mut(policy.def.operator);
        match list
            .iter_mut()
            .find(|p| p.def.name == policy.def.name && p.def.vhost == policy.def.vhost)
        {
            Some(slot) => *slot = policy,
            None => list.push(policy),
        }
    }

    /// Removes a policy; false when there was none of that name.
    pub fn clear(&mut self, vhost: &[u8], name: &[u8], operator: bool) -> bool {
        let list = self.list_mut(operator);
        let before = list.len();
        list.retain(|p| !(p.def.name == name && p.def.vhost == vhost));
        list.len() != before
    }

    pub fn contains(&self, vhost: &[u8], name: &[u8], operator: bool) -> bool {
        let list = if operator { &self.operator } else { &self.user };
        list.iter()
            .any(|p| p.def.name == name && p.def.vhost == vhost)
    }

    /// Every policy, then every operator policy, each in the order they were first set.
    pub fn iter(&self) -> impl Iterator<Item = &PolicyDef> {
        self.user.iter().chain(&self.operator).map(|p| &p.def)
    }

    pub fn is_empty(&self) -> bool {
        self.user.is_empty() && self.operator.is_empty()
    }

    fn list_mut(&mut self, operator: bool) -> &mut Vec<Policy> {
        if operator {
            &mut self.operator
        } else {
            &mut self.user
        }
    }

    /// The policy that applies to `name` in `vhost` (and the operator policy, for queues).
    pub fn applying(
        &self,
        vhost: &[u8],
        name: &[u8],
        target: Target,
    ) -> (Option<&Policy>, Option<&Policy>) {
        (
            best(&self.user, vhost, name, target),
            best(&self.operator, vhost, name, target),
        )
    }

    /// Every policy of `vhost` goes (the vhost was deleted).
    pub fn clear_vhost(&mut self, vhost: &[u8]) {
        self.user.retain(|p| p.def.vhost != vhost);
        self.operator.retain(|p| p.def.vhost != vhost);
    }

    /// A queue's arguments with what its policies add: the table the queue's behaviour
    /// (limits, TTLs, dead-lettering, delivery limit) is read from. Unchanged, and not
    /// copied, when no policy applies.
    pub fn queue_arguments<'a>(
        &self,
        vhost: &[u8],
        name: &[u8],
        arguments: &'a FieldTable,
    ) -> Cow<'a, FieldTable> {
        let (policy, operator) = self.applying(vhost, name, Target::Queue);
        if policy.is_none() && operator.is_none() {
            return Cow::Borrowed(arguments);
        }
        let mut effective = arguments.clone();
        for (key, arg) in LIMITS {
            let lowest = [
                arguments.get(arg),
                policy.and_then(|p| p.get(key)),
                operator.and_then(|p| p.get(key)),
            ]
            .into_iter()
            .flatten()
            .filter_map(FieldValue::as_i64)
            .min();
            if let Some(value) = lowest {
                effective.insert(arg, FieldValue::I64(value));
            }
        }
        for (key, arg) in ARGUMENT_WINS {
            if let (None, Some(value)) = (arguments.get(arg), policy.and_then(|p| p.get(key))) {
                effective.insert(arg, value.clone());
            }
        }
        Cow::Owned(effective)
    }

    /// An exchange's alternate exchange: its argument, else its policy's.
    pub fn alternate_exchange(
        &self,
        vhost: &[u8],
        name: &[u8],
        arguments: &FieldTable,
    ) -> Option<Bytes> {
        let from = |v: &FieldValue| v.as_bytes().map(Bytes::copy_from_slice);
        if let Some(value) = arguments.get("alternate-exchange") {
            return from(value);
        }
        let (policy, _) = self.applying(vhost, name, Target::Exchange);
        policy
            .and_then(|p| p.get("alternate-exchange"))
            .and_then(from)
    }
}

/// A policy definition given as JSON (`{"max-length": 10, "overflow": "reject-publish"}`),
/// as `rabbitmqctl set_policy` and definitions files take it.
pub fn definition_from_json(json: &serde_json::Value) -> Result<FieldTable, String> {
    let Some(object) = json.as_object() else {
        return Err("the definition must be a JSON object".to_string());
    };
    let mut table = FieldTable::default();
    for (key, value) in object {
        let value = match value {
            serde_json::Value::String(s) => FieldValue::LongStr(Bytes::from(s.clone())),
            serde_json::Value::Bool(b) => FieldValue::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(n) => FieldValue::I64(n),
                None => return Err(format!("{key} must be an integer")),
            },
            _ => return Err(format!("{key}: unsupported value {value}")),
        };
        table.insert(key, value);
    }
    Ok(table)
}

/// A definition as JSON, for listings.
pub fn definition_to_json(table: &FieldTable) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    for (key, value) in &table.0 {
        object.insert(lossy(key).into_owned(), value_to_json(value));
    }
    serde_json::Value::Object(object)
}

/// One field value as JSON: nested tables and arrays too (client properties carry both).
fn value_to_json(value: &FieldValue) -> serde_json::Value {
    match value {
        FieldValue::Bool(b) => serde_json::Value::Bool(*b),
        FieldValue::Table(t) => definition_to_json(t),
        FieldValue::Array(items) => items.iter().map(value_to_json).collect(),
        FieldValue::F32(f) => serde_json::Value::from(f64::from(*f)),
        FieldValue::F64(f) => serde_json::Value::from(*f),
        FieldValue::Timestamp(t) => serde_json::Value::from(*t),
        v => match (v.as_i64(), v.as_bytes()) {
            (Some(n), _) => serde_json::Value::from(n),
            (_, Some(s)) => serde_json::Value::String(lossy(s).into_owned()),
            _ => serde_json::Value::Null,
        },
    }
}

#[cfg(test)]
mod tests;
