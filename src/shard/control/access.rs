//! Control requests on topic permissions and limits, answered in rabbitmqctl's columns.

use bytes::Bytes;

use super::{text, Shard};
use crate::broker::limits::to_json;
use crate::broker::topology::TopologyChange;
use crate::store::record::{LimitScope, LimitsDef};

/// `list_topic_permissions -p VHOST` (user, exchange, write, read) or
/// `list_user_topic_permissions USER` (vhost, exchange, write, read).
pub fn list_topic_permissions(shard: &Shard, vhost: Option<Bytes>, user: Option<Bytes>) -> String {
    let topology = shard.topology.borrow();
    let all = topology.topic_permissions().iter();
    let mut out = String::new();
    if let Some(user) = user {
        out.push_str("vhost\texchange\twrite\tread");
        for p in all.filter(|p| p.user == user) {
            let row = [&p.vhost, &p.exchange, &p.write, &p.read].map(text);
            out.push_str(&format!("\n{}", row.join("\t")));
        }
        return out;
    }
    let vhost = vhost.unwrap_or_else(|| Bytes::from_static(b"/"));
    out.push_str("user\texchange\twrite\tread");
    for p in all.filter(|p| p.vhost == vhost) {
        let row = [&p.user, &p.exchange, &p.write, &p.read].map(text);
        out.push_str(&format!("\n{}", row.join("\t")));
    }
    out
}

/// `list_vhosts [COLUMN...]`: name, description, tags, tracing.
pub fn list_vhosts(shard: &Shard, asked: &[String]) -> Result<String, String> {
    const COLUMNS: &[&str] = &["name", "description", "tags", "tracing"];
    let columns = super::listing::columns(asked, COLUMNS, &["name"])?;
    let topology = shard.topology.borrow();
    if topology.vhosts().next().is_none() {
        return Ok(String::new());
    }
    let mut out = columns.join("\t");
    for v in topology.vhosts() {
        let row: Vec<String> = columns
            .iter()
            .map(|c| match *c {
                "name" => text(&v.def.name).into_owned(),
                "description" => text(&v.def.description).into_owned(),
                "tags" => format!("[{}]", text(&v.def.tags)),
                // `warren ctl trace` is running on it (see `crate::trace`).
                _ => crate::trace::is_traced(&v.def.name).to_string(),
            })
            .collect();
        out.push_str(&format!("\n{}", row.join("\t")));
    }
    Ok(out)
}

/// One user's or vhost's limits as JSON (`{}` when none), or every one's as rows.
pub fn list_limits(shard: &Shard, scope: LimitScope, name: Option<Bytes>) -> String {
    let topology = shard.topology.borrow();
    if let Some(name) = name {
        return topology
            .limits()
            .get_all(scope, &name)
            .map_or_else(|| "{}".to_string(), |d| to_json(&d.limits));
    }
    let mut out = match scope {
        LimitScope::User => String::from("user\tlimits"),
        LimitScope::Vhost => String::from("vhost\tlimits"),
    };
    for d in topology.limits().iter().filter(|d| d.scope == scope) {
        out.push_str(&format!("\n{}\t{}", text(&d.name), to_json(&d.limits)));
    }
    out
}

/// The limits without `key` (without any with `all`), as a change to apply.
pub fn clear_limit(
    shard: &Shard,
    scope: LimitScope,
    name: Bytes,
    key: &str,
) -> Result<TopologyChange, String> {
    let topology = shard.topology.borrow();
    let mut limits = topology
        .limits()
        .get_all(scope, &name)
        .map(|d| d.limits.clone())
        .unwrap_or_default();
    if key == "all" {
        limits.0.clear();
    } else {
        limits.0.retain(|(k, _)| k.as_ref() != key.as_bytes());
    }
    Ok(TopologyChange::SetLimits(LimitsDef {
        scope,
        name,
        limits,
    }))
}
