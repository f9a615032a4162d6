//! Control-socket requests for topic permissions and limits.

use bytes::Bytes;
use serde_json::Value;

use crate::broker::limits::{from_json, from_value};
use crate::broker::topology::TopologyChange;
use crate::shard::control::Control;
use crate::store::record::{LimitScope, LimitsDef, TopicPermissionDef, VhostDef};

fn text(request: &Value, key: &str) -> Result<Bytes, String> {
    request[key]
        .as_str()
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .ok_or_else(|| format!("{key} must be a string"))
}

fn optional(request: &Value, key: &str) -> Option<Bytes> {
    text(request, key).ok()
}

fn vhost(request: &Value) -> Bytes {
    optional(request, "vhost").unwrap_or_else(|| Bytes::from_static(b"/"))
}

fn scope(request: &Value) -> Result<LimitScope, String> {
    match request["scope"].as_str() {
        Some("user") => Ok(LimitScope::User),
        Some("vhost") => Ok(LimitScope::Vhost),
        _ => Err("scope must be user or vhost".to_string()),
    }
}

/// The request for `command`, or None when the command is not one of these.
pub fn parse(command: &str, request: &Value) -> Option<Result<Control, String>> {
    let parsed = match command {
        "set-topic-permissions" => set_topic_permissions(request),
        "clear-topic-permissions" => (|| {
            Ok(Control::Change(TopologyChange::ClearTopicPermissions {
                user: text(request, "user")?,
                vhost: vhost(request),
                exchange: optional(request, "exchange").unwrap_or_default(),
            }))
        })(),
        "list-topic-permissions" => Ok(Control::ListTopicPermissions {
            vhost: optional(request, "vhost"),
            user: optional(request, "user"),
        }),
        "set-limits" => set_limits(request),
        "clear-limit" => (|| {
            Ok(Control::ClearLimit {
                scope: scope(request)?,
                name: text(request, "name")?,
                key: request["key"].as_str().unwrap_or("all").to_string(),
            })
        })(),
        "add-vhost" => (|| {
            Ok(Control::Change(TopologyChange::AddVhost(VhostDef {
                name: text(request, "vhost")?,
                description: optional(request, "description").unwrap_or_default(),
                tags: optional(request, "tags").unwrap_or_default(),
            })))
        })(),
        "delete-vhost" => (|| {
            Ok(Control::Change(TopologyChange::DeleteVhost {
                name: text(request, "vhost")?,
            }))
        })(),
        "list-vhosts" => Ok(Control::ListVhosts {
            columns: request["columns"]
                .as_array()
                .map(|c| {
                    c.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        }),
        "list-limits" => (|| {
            Ok(Control::ListLimits {
                scope: scope(request)?,
                name: optional(request, "name"),
            })
        })(),
        _ => return None,
    };
    Some(parsed)
}

fn set_topic_permissions(request: &Value) -> Result<Control, String> {
    Ok(Control::Change(TopologyChange::SetTopicPermission(
        TopicPermissionDef {
            user: text(request, "user")?,
            vhost: vhost(request),
            exchange: text(request, "exchange")?,
            write: text(request, "write")?,
            read: text(request, "read")?,
        },
    )))
}

fn set_limits(request: &Value) -> Result<Control, String> {
    let limits = request["limits"]
        .as_str()
        .ok_or("limits must be a JSON string")?;
    Ok(Control::Change(TopologyChange::SetLimits(LimitsDef {
        scope: scope(request)?,
        name: text(request, "name")?,
        limits: from_json(limits)?,
    })))
}

/// A `vhosts` item of a definitions file: `name`, and `description` and `tags` in its
/// `metadata` (RabbitMQ 3.10) or beside the name (older exports).
pub fn vhost_from_json(item: &Value) -> Result<Control, String> {
    let meta = |key: &str| item["metadata"].get(key).or(item.get(key));
    let tags = match meta("tags") {
        Some(Value::Array(tags)) => tags
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        Some(Value::String(tags)) => tags.clone(),
        _ => String::new(),
    };
    let description = meta("description").and_then(Value::as_str).unwrap_or("");
    Ok(Control::Change(TopologyChange::AddVhost(VhostDef {
        name: text(item, "name")?,
        description: Bytes::copy_from_slice(description.as_bytes()),
        tags: Bytes::from(tags),
    })))
}

/// A `topic_permissions` item of a definitions file.
pub fn topic_permission_from_json(item: &Value) -> Result<Control, String> {
    set_topic_permissions(item)
}

/// The limits of a `users` item, when it has some.
pub fn user_limits_from_json(item: &Value) -> Option<Result<Control, String>> {
    let limits = item.get("limits")?;
    if limits.as_object().is_none_or(|o| o.is_empty()) {
        return None;
    }
    Some((|| {
        Ok(Control::Change(TopologyChange::SetLimits(LimitsDef {
            scope: LimitScope::User,
            name: text(item, "name")?,
            limits: from_value(limits)?,
        })))
    })())
}

/// A `parameters` item holding a vhost's limits (component `vhost-limits`, as RabbitMQ
/// exports them); None for other components.
pub fn vhost_limits_from_json(item: &Value) -> Option<Result<Control, String>> {
    if item["component"].as_str() != Some("vhost-limits") {
        return None;
    }
    Some((|| {
        Ok(Control::Change(TopologyChange::SetLimits(LimitsDef {
            scope: LimitScope::Vhost,
            name: vhost(item),
            limits: from_value(&item["value"])?,
        })))
    })())
}
