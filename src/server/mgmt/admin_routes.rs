//! GET of the access-control objects (vhosts, users, permissions, policies, limits), the
//! definitions export, and the health checks.

use serde_json::{json, Value};

use super::auth::Who;
use super::http::{Reply, Req};
use super::listing::list;
use super::routes::{find, one, vhost_exists};
use super::shape::{self, items};
use super::state::Api;
use super::ApiResult;
use crate::shard::control::{Control, Query};

pub async fn get(api: &Api, req: &Req, who: &Who, snap: &Value, s: &[&str]) -> ApiResult {
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
        ["vhost-limits", v] => list(&req.query, vhost_limits(snap, Some(v))),
        ["user-limits"] => admin_list(who, req, true, user_limits(snap, None))?,
        ["user-limits", u] => admin_list(who, req, true, user_limits(snap, Some(u)))?,
        ["definitions"] => {
            who.require_admin()?;
            let text = api.ask(Control::Query(Query::ExportDefinitions)).await;
            let defs: Value = text
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            Reply::json(&defs)
        }
        ["health", "checks", rest @ ..] => health(api, rest)?,
        ["aliveness-test", v] => one(vhost_exists(snap, v), || json!({"status": "ok"}))?,
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
            let listening = api.config.listen.iter().any(|a| a.port() == port)
                || api.config.management_port == port
                || (api.config.tls_cert.is_some() && api.config.tls_port == port);
            if listening {
                Ok(Reply::json(&json!({"status": "ok", "port": port})))
            } else {
                Ok(failed(format!("No active listener on port {port}")))
            }
        }
        ["protocol-listener", _]
        | ["virtual-hosts"]
        | ["node-is-quorum-critical"]
        | ["node-is-mirror-sync-critical"]
        | ["certificate-expiration", ..] => Ok(Reply::json(&json!({"status": "ok"}))),
        _ => Err(Reply::not_found()),
    }
}
