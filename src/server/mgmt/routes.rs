//! The read side of the API: `GET /api/...` for each object kind, in RabbitMQ's shapes,
//! filtered to what the user may see.

use serde_json::{json, Value};

use super::answers::{find, one};
use super::auth::Who;
use super::http::{Reply, Req};
use super::listing::list;
use super::shape::{self, items, node_name};
use super::state::Api;
use super::{node, ApiResult};

/// Answers a GET under `/api`.
pub async fn get(api: &Api, req: &Req, who: &Who, snap: &Value) -> ApiResult {
    let s: Vec<&str> = req.segments.iter().skip(1).map(String::as_str).collect();
    let reply = match s.as_slice() {
        ["overview"] => Reply::json(&node::overview(api, snap, who)),
        ["whoami"] => Reply::json(&json!({"name": who.name, "tags": who.tags})),
        ["cluster-name"] => Reply::json(&json!({"name": node_name()})),
        ["extensions"] => Reply::json(&json!([])),
        ["nodes"] => {
            who.require_monitoring()?;
            list(&req.query, vec![node::node(api, snap)])
        }
        ["nodes", name] => {
            who.require_monitoring()?;
            one(*name == node_name(), || node::node(api, snap))?
        }
        ["connections"] => list(&req.query, connections(api, snap, who, None, false)),
        ["connections", name] => {
            let found = connections(api, snap, who, None, true);
            find(found, |c| c["name"] == *name)?
        }
        ["vhosts", v, "connections"] => {
            who.enter(snap, v)?;
            list(&req.query, connections(api, snap, who, Some(v), false))
        }
        ["connections", name, "channels"] => {
            let all = channels(snap, who, None);
            list(
                &req.query,
                all.into_iter()
                    .filter(|c| c["connection_details"]["name"] == *name)
                    .collect(),
            )
        }
        ["channels"] => list(&req.query, channels(snap, who, None)),
        ["vhosts", v, "channels"] => list(&req.query, channels(snap, who, Some(v))),
        ["channels", name] => {
            let found = find(channels(snap, who, None), |c| c["name"] == *name)?;
            with_details(found, |ch| {
                let consumers =
                    consumers_where(snap, |k| k["channel_details"]["name"] == ch["name"]);
                json!({"consumer_details": consumers, "deliveries": [], "publishes": []})
            })
        }
        ["consumers"] => list(&req.query, consumers(snap, who, None)),
        ["consumers", v] => list(&req.query, consumers(snap, who, Some(v))),
        rest => return objects(api, req, who, snap, rest).await,
    };
    Ok(reply)
}

/// GETs of exchanges, queues and bindings; the rest goes on to [`super::admin_routes`].
async fn objects(api: &Api, req: &Req, who: &Who, snap: &Value, s: &[&str]) -> ApiResult {
    let reply = match s {
        ["exchanges"] => list(&req.query, exchanges(snap, who, None)),
        ["exchanges", v] => in_vhost(snap, who, v, || exchanges(snap, who, Some(v)), req)?,
        ["exchanges", v, name] => {
            who.enter(snap, v)?;
            let found = find(exchanges(snap, who, Some(v)), |e| e["name"] == *name)?;
            with_details(found, |_| json!({"incoming": [], "outgoing": []}))
        }
        ["exchanges", v, name, "bindings", dir @ ("source" | "destination")] => {
            exchange_bindings(snap, who, v, name, dir, req)?
        }
        ["queues"] => list(&req.query, queues(api, snap, who, None)),
        ["queues", v] => in_vhost(snap, who, v, || queues(api, snap, who, Some(v)), req)?,
        ["queues", v, name] => {
            who.enter(snap, v)?;
            let found = find(queues(api, snap, who, Some(v)), |q| q["name"] == *name)?;
            with_details(found, |q| {
                let consumers = consumers_where(snap, |k| {
                    k["queue"]["name"] == q["name"] && k["queue"]["vhost"] == q["vhost"]
                });
                json!({"consumer_details": consumers, "deliveries": [], "incoming": []})
            })
        }
        ["queues", v, name, "bindings"] => {
            queue_exists(api, snap, who, v, name)?;
            let all = bindings(snap, who, Some(v));
            list(
                &req.query,
                all.into_iter()
                    .filter(|b| b["destination"] == *name && b["destination_type"] == "queue")
                    .collect(),
            )
        }
        ["bindings"] => list(&req.query, bindings(snap, who, None)),
        ["bindings", v] => in_vhost(snap, who, v, || bindings(snap, who, Some(v)), req)?,
        ["bindings", v, "e", src, kind @ ("q" | "e"), dest] => {
            list(&req.query, between(snap, who, v, src, kind, dest)?)
        }
        ["bindings", v, "e", src, kind @ ("q" | "e"), dest, props] => {
            let all = between(snap, who, v, src, kind, dest)?;
            find(all, |b| b["properties_key"] == *props)?
        }
        rest => return super::admin_routes::get(api, req, who, snap, rest).await,
    };
    Ok(reply)
}

/// The consumers `mine` picks.
fn consumers_where(snap: &Value, mine: impl Fn(&Value) -> bool) -> Vec<Value> {
    shape::consumers(snap)
        .into_iter()
        .filter(|k| mine(k))
        .collect()
}

/// The single-object answer `found`, with the fields only that answer has.
fn with_details(found: Reply, extra: impl FnOnce(&Value) -> Value) -> Reply {
    let Ok(mut object) = serde_json::from_slice::<Value>(&found.body) else {
        return found;
    };
    let more = extra(&object);
    if let (Some(o), Value::Object(more)) = (object.as_object_mut(), more) {
        o.extend(more);
    }
    Reply::json(&object)
}

/// A listing of one vhost: 404 when the vhost does not exist.
fn in_vhost(
    snap: &Value,
    who: &Who,
    vhost: &str,
    all: impl FnOnce() -> Vec<Value>,
    req: &Req,
) -> ApiResult {
    who.enter(snap, vhost)?;
    Ok(list(&req.query, all()))
}

fn connections(api: &Api, snap: &Value, who: &Who, vhost: Option<&str>, one: bool) -> Vec<Value> {
    let any = std::net::SocketAddr::from(([0, 0, 0, 0], 5672));
    let local = api.config.listen.first().copied().unwrap_or(any);
    items(snap, "connections")
        .filter(|c| who.is_monitoring() || c["user"] == who.name.as_str())
        .filter(|c| vhost.is_none_or(|v| c["vhost"] == v))
        .map(|c| shape::connection(c, local, one))
        .collect()
}

fn channels(snap: &Value, who: &Who, vhost: Option<&str>) -> Vec<Value> {
    shape::channels(snap)
        .into_iter()
        .filter(|(c, _)| who.is_monitoring() || c["user"] == who.name.as_str())
        .filter(|(c, _)| vhost.is_none_or(|v| c["vhost"] == v))
        .map(|(c, ch)| shape::channel(c, ch))
        .collect()
}

fn consumers(snap: &Value, who: &Who, vhost: Option<&str>) -> Vec<Value> {
    shape::consumers(snap)
        .into_iter()
        .filter(|k| who.has_access(snap, k["queue"]["vhost"].as_str().unwrap_or_default()))
        .filter(|k| vhost.is_none_or(|v| k["queue"]["vhost"] == v))
        .collect()
}

fn exchanges(snap: &Value, who: &Who, vhost: Option<&str>) -> Vec<Value> {
    items(snap, "exchanges")
        .filter(|e| who.sees(snap, e) && vhost.is_none_or(|v| e["vhost"] == v))
        .map(shape::exchange)
        .collect()
}

pub fn queues(api: &Api, snap: &Value, who: &Who, vhost: Option<&str>) -> Vec<Value> {
    let mut all: Vec<Value> = api.with_rates(|rates| {
        items(snap, "queues")
            .filter(|q| who.sees(snap, q) && vhost.is_none_or(|v| q["vhost"] == v))
            .map(|q| shape::queue(q, rates))
            .collect()
    });
    all.sort_by(|a, b| {
        let key = |q: &Value| (q["vhost"].to_string(), q["name"].to_string());
        key(a).cmp(&key(b))
    });
    all
}

fn queue_exists(api: &Api, snap: &Value, who: &Who, v: &str, name: &str) -> Result<(), Reply> {
    if queues(api, snap, who, Some(v))
        .iter()
        .any(|q| q["name"] == name)
    {
        Ok(())
    } else {
        Err(Reply::not_found())
    }
}

pub fn bindings(snap: &Value, who: &Who, vhost: Option<&str>) -> Vec<Value> {
    items(snap, "bindings")
        .filter(|b| who.sees(snap, b) && vhost.is_none_or(|v| b["vhost"] == v))
        .map(shape::binding)
        .collect()
}

fn exchange_bindings(
    snap: &Value,
    who: &Who,
    vhost: &str,
    name: &str,
    dir: &str,
    req: &Req,
) -> ApiResult {
    if !exchanges(snap, who, Some(vhost))
        .iter()
        .any(|e| e["name"] == name)
    {
        return Err(Reply::not_found());
    }
    let all = bindings(snap, who, Some(vhost));
    let picked = all
        .into_iter()
        .filter(|b| match dir {
            "source" => b["source"] == name,
            _ => b["destination"] == name && b["destination_type"] == "exchange",
        })
        .collect();
    Ok(list(&req.query, picked))
}

/// Bindings from exchange `src` to queue (`q`) or exchange (`e`) `dest`; 404 when either end
/// is missing.
pub fn between(
    snap: &Value,
    who: &Who,
    vhost: &str,
    src: &str,
    kind: &str,
    dest: &str,
) -> Result<Vec<Value>, Reply> {
    let exchange_exists =
        |n: &str| items(snap, "exchanges").any(|e| e["vhost"] == vhost && e["name"] == n);
    let dest_exists = match kind {
        "q" => items(snap, "queues").any(|q| q["vhost"] == vhost && q["name"] == dest),
        _ => exchange_exists(dest),
    };
    who.enter(snap, vhost)?;
    if !exchange_exists(src) || !dest_exists {
        return Err(if kind == "q" && !dest_exists {
            Reply::no_queue()
        } else {
            Reply::not_found()
        });
    }
    let dest_type = if kind == "q" { "queue" } else { "exchange" };
    Ok(bindings(snap, who, Some(vhost))
        .into_iter()
        .filter(|b| {
            b["source"] == src && b["destination"] == dest && b["destination_type"] == dest_type
        })
        .collect())
}
