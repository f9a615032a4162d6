//! The write side of the API: PUT, POST and DELETE on queues, exchanges, bindings, vhosts,
//! users, permissions, policies, limits, connections and definitions. Each becomes the
//! request `warren ctl` would send (or a queue operation), served by shard 0.

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::answers::{bytes_of, created, definition, done, with_names};
use super::auth::Who;
use super::http::{Reply, Req};
use super::routes::between;
use super::shape::items;
use super::state::Api;
use super::ApiResult;
use crate::server::ctl;
use crate::shard::control::{ApiOp, Control, Query};

pub async fn write(api: &Api, req: &Req, who: &Who, snap: &Value) -> ApiResult {
    let s: Vec<&str> = req.segments.iter().skip(1).map(String::as_str).collect();
    if s.first() == Some(&"queues") {
        return queue_write(api, req, who, snap, &s).await;
    }
    let configure_in = |v: &str| configure_in(who, snap, v);
    match (&req.method, s.as_slice()) {
        (&Method::POST, ["exchanges", v, name, "publish"]) => {
            configure_in(v)?;
            if !items(snap, "exchanges").any(|e| e["vhost"] == *v && e["name"] == *name) {
                return Err(Reply::bad_request("not_found"));
            }
            super::messages::publish(api, req, snap, v, name).await
        }
        (&Method::PUT, ["exchanges", v, name]) => {
            configure_in(v)?;
            let exists = items(snap, "exchanges").any(|e| e["vhost"] == *v && e["name"] == *name);
            let mut item = with_names(req.json()?, v, name);
            if item.get("type").is_none() {
                item["type"] = json!("direct");
            }
            let what = definition(&item, "exchanges")?;
            created(api.ask(what).await, exists)
        }
        (&Method::DELETE, ["exchanges", v, name]) => {
            configure_in(v)?;
            if !items(snap, "exchanges").any(|e| e["vhost"] == *v && e["name"] == *name) {
                return Err(Reply::not_found());
            }
            let change = crate::broker::topology::TopologyChange::DeleteExchange {
                vhost: bytes_of(v),
                name: bytes_of(name),
                if_unused: req.query.contains_key("if-unused"),
            };
            done(api.ask(Control::Change(change)).await)
        }
        (&Method::POST, ["bindings", v, "e", src, kind @ ("q" | "e"), dest]) => {
            configure_in(v)?;
            between(snap, who, v, src, kind, dest)?;
            bind(api, req, v, src, kind, dest).await
        }
        (&Method::DELETE, ["bindings", v, "e", src, kind @ ("q" | "e"), dest, props]) => {
            configure_in(v)?;
            let all = between(snap, who, v, src, kind, dest)?;
            let b = all
                .into_iter()
                .find(|b| b["properties_key"] == *props)
                .ok_or_else(Reply::not_found)?;
            let def = ctl_binding(&b);
            let Some(Ok(Control::Query(Query::ImportBinding(def)))) = def else {
                return Err(Reply::bad_request("invalid binding"));
            };
            done(api.ask(Control::Query(Query::Unbind(def))).await)
        }
        (&Method::DELETE, ["connections", name]) => {
            let mine = items(snap, "connections")
                .any(|c| c["name"] == *name && (who.is_admin() || c["user"] == who.name.as_str()));
            if !mine {
                return Err(Reply::not_found());
            }
            let query = Query::CloseConnection {
                name: (*name).to_string(),
                explanation: format!(
                    "CONNECTION_FORCED - {}",
                    req.reason
                        .as_deref()
                        .unwrap_or("Closed via management plugin")
                ),
            };
            done(api.ask(Control::Query(query)).await)
        }
        (&Method::POST, ["warren", "ctl"]) => super::ctl_route::ctl(api, req, who).await,
        _ => super::admin_write::write(api, req, who, snap, &s).await,
    }
}

/// The vhost may be written to: a missing one is named with RabbitMQ's other 404 wording.
fn configure_in(who: &Who, snap: &Value, v: &str) -> Result<(), Reply> {
    who.enter(snap, v).map_err(|e| match e.status {
        StatusCode::NOT_FOUND => Reply::error(StatusCode::NOT_FOUND, "not_found", "no vhost"),
        _ => e,
    })
}

/// PUT, DELETE and POST on a queue.
async fn queue_write(api: &Api, req: &Req, who: &Who, snap: &Value, s: &[&str]) -> ApiResult {
    let configure_in = |v: &str| configure_in(who, snap, v);
    match (&req.method, s) {
        (&Method::PUT, ["queues", v, name]) => {
            configure_in(v)?;
            let exists = items(snap, "queues").any(|q| q["vhost"] == *v && q["name"] == *name);
            let item = with_names(req.json()?, v, name);
            let what = definition(&item, "queues")?;
            created(api.ask(what).await, exists)
        }
        (&Method::DELETE, ["queues", v, name]) => {
            configure_in(v)?;
            exists_queue(snap, v, name)?;
            let op = ApiOp::DeleteQueue {
                vhost: bytes_of(v),
                name: bytes_of(name),
                if_unused: req.query.contains_key("if-unused"),
                if_empty: req.query.contains_key("if-empty"),
            };
            done(api.ask(Control::Api(op)).await)
        }
        (&Method::DELETE, ["queues", v, name, "contents"]) => {
            configure_in(v)?;
            exists_queue(snap, v, name)?;
            let op = ApiOp::PurgeQueue {
                vhost: bytes_of(v),
                name: bytes_of(name),
            };
            done(api.ask(Control::Api(op)).await)
        }
        (&Method::POST, ["queues", v, name, "get"]) => {
            configure_in(v)?;
            exists_queue(snap, v, name).map_err(|_| Reply::no_queue())?;
            super::messages::get(api, req, v, name).await
        }
        (&Method::POST, ["queues", v, name, "actions"]) => {
            configure_in(v)?;
            exists_queue(snap, v, name)?;
            // sync and cancel_sync concern mirrored queues: a classic queue has nothing to do.
            match req.json()?["action"].as_str() {
                Some("sync" | "cancel_sync") => Ok(Reply::empty(StatusCode::NO_CONTENT)),
                _ => Err(Reply::bad_request("unknown action")),
            }
        }
        _ => Err(Reply::method_not_allowed()),
    }
}

fn exists_queue(snap: &Value, v: &str, name: &str) -> Result<(), Reply> {
    if items(snap, "queues").any(|q| q["vhost"] == v && q["name"] == name) {
        Ok(())
    } else {
        Err(Reply::not_found())
    }
}

fn ctl_binding(b: &Value) -> Option<Result<Control, String>> {
    ctl::definition_request("bindings", b)
}

async fn bind(api: &Api, req: &Req, v: &str, src: &str, kind: &str, dest: &str) -> ApiResult {
    let body = req.json()?;
    let item = json!({"vhost": v, "source": src, "destination": dest,
        "destination_type": if kind == "q" { "queue" } else { "exchange" },
        "routing_key": body["routing_key"].as_str().unwrap_or_default(),
        "arguments": body.get("arguments").cloned().unwrap_or(json!({}))});
    let what = definition(&item, "bindings")?;
    api.ask(what).await.map_err(|e| Reply::bad_request(&e))?;
    let mut reply = Reply::empty(StatusCode::CREATED);
    reply.location = Some(super::shape::properties_key(&item));
    Ok(reply)
}
