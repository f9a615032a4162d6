//! GET of the access-control objects (vhosts, users, permissions, policies, limits), the
//! definitions export, and the health checks.

use serde_json::{json, Value};

use super::answers::{find, one, vhost_exists};
use super::auth::Who;
use super::http::{Reply, Req};
use super::listing::list;
use super::shape::{self, items};
use super::state::Api;
use super::ApiResult;
use crate::shard::control::{Control, Query};

pub async fn get(api: &Api, req: &Req, who: &Who, snap: &Value, s: &[&str]) -> ApiResult {
    if matches!(s.first(), Some(&"vhosts" | &"users")) {
        return vhosts_and_users(req, who, snap, s);
    }
    let all = |section: &str| -> Vec<Value> { items(snap, section).cloned().collect() };
    let reply = match s {
        ["permissions"] => admin_list(who, req, true, all("permissions"))?,
        ["permissions", v, u] => {
            who.require_admin()?;
            find(all("permissions"), |p| p["vhost"] == *v && p["user"] == *u)?
        }
        ["topic-permissions"] => admin_list(who, req, true, all("topic_permissions"))?,
        ["topic-permissions", v, u] => {
            who.require_admin()?;
            let mine = items(snap, "topic_permissions")
                .filter(|p| p["vhost"] == *v && p["user"] == *u)
                .cloned()
                .collect::<Vec<_>>();
            if mine.is_empty() {
                return Err(Reply::not_found());
            }
            list(&req.query, mine)
        }
        [kind @ ("policies" | "operator-policies"), rest @ ..] => {
            policies(who, req, snap, kind, rest)?
        }
        ["vhost-limits"] => list(&req.query, vhost_limits(snap, None)),
        // Runtime parameters: Warren's only component is the vhost limits.
        ["parameters"] | ["parameters", "vhost-limits"] => {
            who.require_monitoring()?;
            list(&req.query, items(snap, "vhost_limits").cloned().collect())
        }
        ["global-parameters"] => {
            who.require_admin()?;
            let id = format!("warren-cluster-id-{}", shape::node_name());
            list(
                &req.query,
                vec![json!({"name": "internal_cluster_id", "value": id})],
            )
        }
        // No OAuth 2: the web UI logs in with basic auth.
        ["auth"] => Reply::json(&json!({"oauth_enabled": false})),
        ["vhost-limits", v] => list(&req.query, vhost_limits(snap, Some(v))),
        ["user-limits"] => admin_list(who, req, true, user_limits(snap, None))?,
        ["user-limits", u] => admin_list(who, req, true, user_limits(snap, Some(u)))?,
        ["definitions"] => {
            who.require_admin()?;
            Reply::json(&definitions(api, None).await)
        }
        ["definitions", v] => {
            who.require_admin()?;
            if !vhost_exists(snap, v) {
                return Err(Reply::not_found());
            }
            Reply::json(&definitions(api, Some(v)).await)
        }
        ["health", "checks", rest @ ..] => health(api, rest)?,
        ["aliveness-test", v] => one(vhost_exists(snap, v), || json!({"status": "ok"}))?,
        _ => return Err(Reply::not_found()),
    };
    Ok(reply)
}

/// The export in the API's form, which differs from `rabbitmqctl export_definitions`'s:
/// vhosts by name only, no queue type, exchanges with `internal`, the cluster id as a
/// global parameter. For one vhost: its items without their `vhost` field (parameters and
/// policies keep it), and no users, vhosts or permissions.
async fn definitions(api: &Api, vhost: Option<&str>) -> Value {
    let text = api.ask(Control::Query(Query::ExportDefinitions)).await;
    let mut defs: Value = text
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let names: Vec<Value> = items(&defs, "vhosts")
        .map(|v| json!({"name": v["name"]}))
        .collect();
    defs["vhosts"] = Value::Array(names);
    for q in defs["queues"].as_array_mut().into_iter().flatten() {
        if let Some(q) = q.as_object_mut() {
            q.remove("type");
        }
    }
    for ex in defs["exchanges"].as_array_mut().into_iter().flatten() {
        ex["internal"] = json!(false);
    }
    let id = format!("warren-cluster-id-{}", shape::node_name());
    defs["global_parameters"] = json!([{"name": "internal_cluster_id", "value": id}]);
    match vhost {
        None => defs,
        Some(v) => one_vhost(&defs, v),
    }
}

fn one_vhost(defs: &Value, vhost: &str) -> Value {
    let mut out = json!({"rabbit_version": defs["rabbit_version"]});
    for section in ["parameters", "policies", "queues", "exchanges", "bindings"] {
        let keep_vhost = matches!(section, "parameters" | "policies");
        let picked: Vec<Value> = items(defs, section)
            .filter(|i| i["vhost"] == vhost)
            .map(|i| {
                let mut i = i.clone();
                if let (false, Some(o)) = (keep_vhost, i.as_object_mut()) {
                    o.remove("vhost");
                }
                i
            })
            .collect();
        out[section] = Value::Array(picked);
    }
    out
}

/// GETs of vhosts and users (and their permissions).
fn vhosts_and_users(req: &Req, who: &Who, snap: &Value, s: &[&str]) -> ApiResult {
    let all = |section: &str| -> Vec<Value> { items(snap, section).cloned().collect() };
    let of_vhost = |section: &str, v: &str| -> Vec<Value> {
        items(snap, section)
            .filter(|i| i["vhost"] == v)
            .cloned()
            .collect()
    };
    let reply = match s {
        ["vhosts"] => {
            let vhosts = items(snap, "vhosts")
                .filter(|v| who.sees_vhost(snap, v["name"].as_str().unwrap_or_default()))
                .map(|v| shape::vhost(v, snap))
                .collect();
            list(&req.query, vhosts)
        }
        ["vhosts", v] if who.sees_vhost(snap, v) => {
            let vhosts = items(snap, "vhosts")
                .map(|x| shape::vhost(x, snap))
                .collect();
            find(vhosts, |x| x["name"] == *v)?
        }
        ["vhosts", v, "permissions"] => {
            admin_list(who, req, vhost_exists(snap, v), of_vhost("permissions", v))?
        }
        ["vhosts", v, "topic-permissions"] => admin_list(
            who,
            req,
            vhost_exists(snap, v),
            of_vhost("topic_permissions", v),
        )?,
        ["users"] => admin_list(
            who,
            req,
            true,
            all("users").iter().map(shape::user).collect(),
        )?,
        ["users", "without-permissions"] => {
            let with: Vec<Value> = all("permissions");
            let users = all("users")
                .iter()
                .filter(|u| !with.iter().any(|p| p["user"] == u["name"]))
                .map(shape::user)
                .collect();
            admin_list(who, req, true, users)?
        }
        ["users", u] => {
            who.require_admin()?;
            find(all("users").iter().map(shape::user).collect(), |x| {
                x["name"] == *u
            })?
        }
        ["users", u, section @ ("permissions" | "topic-permissions")] => {
            let section = section.replace('-', "_");
            let exists = items(snap, "users").any(|x| x["name"] == *u);
            let mine = items(snap, &section)
                .filter(|p| p["user"] == *u)
                .cloned()
                .collect();
            admin_list(who, req, exists, mine)?
        }
        _ => return Err(Reply::not_found()),
    };
    Ok(reply)
}

/// An administrator-only listing; 404 when what it belongs to does not exist.
fn admin_list(who: &Who, req: &Req, exists: bool, all: Vec<Value>) -> ApiResult {
    who.require_admin()?;
    if !exists {
        return Err(Reply::not_found());
    }
    Ok(list(&req.query, all))
}

fn policies(who: &Who, req: &Req, snap: &Value, kind: &str, rest: &[&str]) -> ApiResult {
    let operator = kind == "operator-policies";
    if operator {
        who.require_admin()?;
    }
    let section = if operator {
        "operator_policies"
    } else {
        "policies"
    };
    let visible = items(snap, section).filter(|p| who.sees(snap, p)).cloned();
    match rest {
        [] => Ok(list(&req.query, visible.collect())),
        [v] => {
            if !vhost_exists(snap, v) {
                return Err(Reply::not_found());
            }
            Ok(list(
                &req.query,
                visible.filter(|p| p["vhost"] == *v).collect(),
            ))
        }
        [v, name] => find(visible.collect(), |p| {
            p["vhost"] == *v && p["name"] == *name
        }),
        _ => Err(Reply::not_found()),
    }
}

fn vhost_limits(snap: &Value, vhost: Option<&str>) -> Vec<Value> {
    items(snap, "vhost_limits")
        .filter(|l| vhost.is_none_or(|v| l["vhost"] == v))
        .map(|l| json!({"vhost": l["vhost"], "value": l["value"]}))
        .collect()
}

fn user_limits(snap: &Value, user: Option<&str>) -> Vec<Value> {
    items(snap, "users")
        .filter(|u| user.is_none_or(|name| u["name"] == name))
        .filter(|u| u["limits"].as_object().is_some_and(|l| !l.is_empty()))
        .map(|u| json!({"user": u["name"], "value": u["limits"]}))
        .collect()
}

/// Every port a listener of this node accepts on.
fn listening_ports(api: &Api) -> Vec<u16> {
    let c = &api.config;
    let mut ports: Vec<u16> = c.listen.iter().map(|a| a.port()).collect();
    if c.tls_cert.is_some() {
        ports.push(c.tls_port);
    }
    ports.extend(
        [c.management_port, c.prometheus_port]
            .iter()
            .filter(|p| **p != 0),
    );
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// `/api/health/checks/...`: 200 `{"status":"ok"}`, or 503 `{"status":"failed","reason":..}`.
fn health(api: &Api, rest: &[&str]) -> ApiResult {
    let failed = |reason: String| {
        Reply::with(
            hyper::StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "failed", "reason": reason}),
        )
    };
    match rest {
        ["alarms"] | ["local-alarms"] => match super::node::alarm_reason(api) {
            None => Ok(Reply::json(&json!({"status": "ok"}))),
            Some(reason) => Ok(failed(reason)),
        },
        ["port-listener", port] => {
            let port: u16 = port
                .parse()
                .map_err(|_| Reply::bad_request("invalid port"))?;
            let ports = listening_ports(api);
            if ports.contains(&port) {
                Ok(Reply::json(&json!({"status": "ok", "port": port})))
            } else {
                let body = json!({"status": "failed", "missing": port, "ports": ports,
                    "reason": format!("No active listener on port {port}")});
                Ok(Reply::with(hyper::StatusCode::SERVICE_UNAVAILABLE, &body))
            }
        }
        ["protocol-listener", protocol] => {
            let known = ["amqp", "amqp/ssl", "amqps", "http", "http/prometheus"];
            if known.contains(protocol) {
                Ok(Reply::json(&json!({"status": "ok", "protocol": protocol})))
            } else {
                Ok(failed(format!(
                    "No active listener for protocol {protocol}"
                )))
            }
        }
        ["node-is-quorum-critical"] | ["node-is-mirror-sync-critical"] => Ok(Reply::json(
            &json!({"status": "ok", "reason": "single node cluster"}),
        )),
        ["virtual-hosts"] | ["certificate-expiration", ..] => {
            Ok(Reply::json(&json!({"status": "ok"})))
        }
        _ => Err(Reply::not_found()),
    }
}
