//! Limits of users (`max-connections`, `max-channels`) and vhosts (`max-connections`,
//! `max-queues`), as RabbitMQ's `set_user_limits` and `set_vhost_limits` set them. They are
//! topology (replicated to every shard); the counts they bound are node-wide.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::protocol::{FieldTable, FieldValue};
use crate::store::record::{LimitScope, LimitsDef};

/// The keys each scope knows.
fn keys(scope: LimitScope) -> &'static [&'static str] {
    match scope {
        LimitScope::User => &["max-connections", "max-channels"],
        LimitScope::Vhost => &["max-connections", "max-queues"],
    }
}

/// Refuses unknown keys and values that are not integers.
pub fn validate(def: &LimitsDef) -> Result<(), String> {
    let known = keys(def.scope);
    for (key, value) in &def.limits.0 {
        let key = String::from_utf8_lossy(key);
        if !known.contains(&key.as_ref()) {
            return Err(format!(
                "Validation failed: '{key}' is not a recognised limit (known: {})",
                known.join(", ")
            ));
        }
        if value.as_i64().is_none() {
            return Err(format!(
                "Validation failed: the value of '{key}' must be an integer"
            ));
        }
    }
    Ok(())
}

/// Parses rabbitmqctl's JSON (`{"max-connections": 10}`) into a limits table.
pub fn from_json(text: &str) -> Result<FieldTable, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    from_value(&value)
}

/// A limits table from a JSON object (as definitions files hold them).
pub fn from_value(value: &serde_json::Value) -> Result<FieldTable, String> {
    // RabbitMQ exports a vhost whose last limit was cleared with `"value": []`.
    if value.as_array().is_some_and(Vec::is_empty) {
        return Ok(FieldTable::default());
    }
    let Some(object) = value.as_object() else {
        return Err("limits must be a JSON object".to_string());
    };
    let mut table = FieldTable::default();
    for (key, value) in object {
        let Some(n) = value.as_i64() else {
            return Err(format!(
                "Validation failed: the value of '{key}' must be an integer"
            ));
        };
        table.insert(key, FieldValue::I64(n));
    }
    Ok(table)
}

/// As JSON, the way list_user_limits and list_vhost_limits print them.
pub fn to_json(limits: &FieldTable) -> String {
    to_value(limits).to_string()
}

/// As a JSON object.
pub fn to_value(limits: &FieldTable) -> serde_json::Value {
    let object: serde_json::Map<String, serde_json::Value> = limits
        .0
        .iter()
        .filter_map(|(k, v)| {
            let key = String::from_utf8_lossy(k).into_owned();
            Some((key, v.as_i64()?.into()))
        })
        .collect();
    serde_json::Value::Object(object)
}

#[derive(Debug, Clone, Default)]
pub struct Limits {
    by_key: BTreeMap<(LimitScope, Bytes), LimitsDef>,
}

impl Limits {
    /// Replaces the limits of one user or vhost; an empty table clears them.
    pub fn set(&mut self, def: LimitsDef) {
        let key = (def.scope, def.name.clone());
        if def.limits.is_empty() {
            self.by_key.remove(&key);
        } else {
            self.by_key.insert(key, def);
        }
    }

    pub fn get_all(&self, scope: LimitScope, name: &[u8]) -> Option<&LimitsDef> {
        self.by_key.get(&(scope, Bytes::copy_from_slice(name)))
    }

    /// One limit; None when unset or negative (no limit).
    pub fn get(&self, scope: LimitScope, name: &[u8], key: &str) -> Option<u64> {
        let n = self.get_all(scope, name)?.limits.get(key)?.as_i64()?;
        u64::try_from(n).ok()
    }

    /// A deleted user's limits go with it.
    pub fn clear_user(&mut self, user: &[u8]) {
        self.by_key
            .retain(|(scope, name), _| !(*scope == LimitScope::User && name.as_ref() == user));
    }

    /// A deleted vhost's limits go with it.
    pub fn clear_vhost(&mut self, vhost: &[u8]) {
        self.by_key
            .retain(|(scope, name), _| !(*scope == LimitScope::Vhost && name.as_ref() == vhost));
    }

    pub fn iter(&self) -> impl Iterator<Item = &LimitsDef> {
        self.by_key.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(scope: LimitScope, json: &str) -> LimitsDef {
        LimitsDef {
            scope,
            name: Bytes::from_static(b"alice"),
            limits: from_json(json).expect("valid JSON"),
        }
    }

    #[test]
    fn an_empty_list_is_no_limits() {
        let none = from_value(&serde_json::json!([]));
        assert_eq!(none.map(|t| t.0.len()), Ok(0));
        assert!(from_value(&serde_json::json!([1])).is_err());
    }

    #[test]
    fn limits_are_set_read_and_cleared() {
        let mut limits = Limits::default();
        let d = def(
            LimitScope::User,
            r#"{"max-connections": 2, "max-channels": -1}"#,
        );
        validate(&d).expect("known keys");
        limits.set(d);
        assert_eq!(
            limits.get(LimitScope::User, b"alice", "max-connections"),
            Some(2)
        );
        assert_eq!(limits.get(LimitScope::User, b"alice", "max-channels"), None);
        assert_eq!(
            limits.get(LimitScope::Vhost, b"alice", "max-connections"),
            None
        );
        limits.set(def(LimitScope::User, "{}"));
        assert_eq!(limits.iter().count(), 0);
        assert!(validate(&def(LimitScope::User, r#"{"max-queues": 1}"#)).is_err());
        assert!(from_json(r#"{"max-queues": "x"}"#).is_err());
    }
}
