//! PUT and DELETE of vhosts, users, permissions, topic permissions, policies and limits,
//! and `POST /api/definitions`.

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::answers::{created, definition, done, vhost_exists, with_names};
use super::auth::Who;
use super::http::{Reply, Req};
use super::shape::items;
use super::state::Api;
use super::ApiResult;
use crate::server::ctl;

pub async fn write(api: &Api, req: &Req, who: &Who, snap: &Value, s: &[&str]) -> ApiResult {
    let m = &req.method;
    if matches!(s, ["policies", ..]) {
        return policy(api, req, who, snap, s, false).await;
    }
    who.require_admin()?;
    match (m, s) {
        (&Method::PUT, ["vhosts", v]) => put_vhost(api, req, who, snap, v).await,
        (&Method::DELETE, ["vhosts", v]) => {
            if !vhost_exists(snap, v) {
                return Err(Reply::not_found());
            }
            ask(api, json!({"command": "delete-vhost", "vhost": v})).await
        }
        (&Method::PUT, ["users", u]) => put_user(api, req, snap, u).await,
        (&Method::DELETE, ["users", u]) => {
            if !items(snap, "users").any(|x| x["name"] == *u) {
                return Err(Reply::not_found());
            }
            ask(api, json!({"command": "delete-user", "name": u})).await
        }
        (&Method::PUT, ["permissions", v, u]) => {
            exists(snap, v, u).map_err(|_| Reply::bad_request("vhost_or_user_not_found"))?;
            let mut body = req.json()?;
            body["command"] = json!("set-permissions");
            body["vhost"] = json!(v);
            body["user"] = json!(u);
            let existed = items(snap, "permissions").any(|p| p["vhost"] == *v && p["user"] == *u);
            created(ask_text(api, body).await, existed)
        }
        (&Method::DELETE, ["permissions", v, u]) => {
            if !items(snap, "permissions").any(|p| p["vhost"] == *v && p["user"] == *u) {
                return Err(Reply::not_found());
            }
            ask(
                api,
                json!({"command": "clear-permissions", "vhost": v, "user": u}),
            )
            .await
        }
        (&Method::PUT, ["topic-permissions", v, u]) => {
            exists(snap, v, u)?;
            let mut body = req.json()?;
            body["command"] = json!("set-topic-permissions");
            body["vhost"] = json!(v);
            body["user"] = json!(u);
            created(ask_text(api, body).await, false)
        }
        (&Method::DELETE, ["topic-permissions", v, u]) => {
            if !items(snap, "topic_permissions").any(|p| p["vhost"] == *v && p["user"] == *u) {
                return Err(Reply::not_found());
            }
            ask(
                api,
                json!({"command": "clear-topic-permissions", "vhost": v, "user": u}),
            )
            .await
        }
        (_, ["operator-policies", ..]) => policy(api, req, who, snap, s, true).await,
        (&Method::PUT, [kind @ ("vhost-limits" | "user-limits"), name, key]) => {
            put_limit(api, req, snap, kind, name, key).await
        }
        (&Method::DELETE, [kind @ ("vhost-limits" | "user-limits"), name, key]) => {
            let scope = if *kind == "vhost-limits" {
                "vhost"
            } else {
                "user"
            };
            ask(
                api,
                json!({"command": "clear-limit", "scope": scope, "name": name, "key": key}),
            )
            .await
        }
        (&Method::POST, ["definitions"]) => import(api, req).await,
        _ => Err(Reply::method_not_allowed()),
    }
}

/// 404 unless both the vhost and the user exist.
fn exists(snap: &Value, v: &str, u: &str) -> Result<(), Reply> {
    if vhost_exists(snap, v) && items(snap, "users").any(|x| x["name"] == u) {
        Ok(())
    } else {
        Err(Reply::not_found())
    }
}

async fn ask_text(api: &Api, request: Value) -> Result<String, String> {
    let what = ctl::request(&request)?;
    api.ask(what).await
}

async fn ask(api: &Api, request: Value) -> ApiResult {
    done(ask_text(api, request).await)
}

/// A new vhost, whose creator gets full permissions there, as RabbitMQ grants them. Its
/// `tags` are taken from the body; RabbitMQ 3.10 leaves the description of a vhost made
/// through the API empty, and so does Warren.
async fn put_vhost(api: &Api, req: &Req, who: &Who, snap: &Value, v: &str) -> ApiResult {
    let body = req.json()?;
    let existed = vhost_exists(snap, v);
    let item = json!({"name": v, "tags": body.get("tags").cloned().unwrap_or(json!([]))});
    let answer = api.ask(definition(&item, "vhosts")?).await;
    if answer.is_ok() && !existed {
        let grant = json!({"command": "set-permissions", "vhost": v, "user": who.name,
            "configure": ".*", "write": ".*", "read": ".*"});
        ask_text(api, grant)
            .await
            .map_err(|e| Reply::bad_request(&e))?;
    }
    created(answer, existed)
}

async fn put_user(api: &Api, req: &Req, snap: &Value, u: &str) -> ApiResult {
    let body = req.json()?;
    let existed = items(snap, "users").any(|x| x["name"] == u);
    let tags = body.get("tags").cloned().unwrap_or(json!(""));
    let answer = match (body["password"].as_str(), body.get("password_hash")) {
        (Some(password), _) => {
            let add = json!({"command": if existed { "change-password" } else { "add-user" },
                "name": u, "password": password});
            ask_text(api, add).await
        }
        (None, Some(_)) => {
            let item = json!({"name": u, "password_hash": body["password_hash"],
                "hashing_algorithm": body["hashing_algorithm"], "tags": tags});
            api.ask(definition(&item, "users")?).await
        }
        (None, None) => return Err(Reply::bad_request("password or password_hash is required")),
    };
    answer.map_err(|e| Reply::bad_request(&e))?;
    let tags = json!({"command": "set-user-tags", "name": u, "tags": tags});
    created(ask_text(api, tags).await, existed)
}

async fn policy(
    api: &Api,
    req: &Req,
    who: &Who,
    snap: &Value,
    s: &[&str],
    operator: bool,
) -> ApiResult {
    let [_, v, name] = s else {
        return Err(Reply::method_not_allowed());
    };
    let allowed = who.is_admin() || (!operator && who.is_policymaker() && who.has_access(snap, v));
    if !allowed {
        return Err(Reply::unauthorised("Not policymaker user"));
    }
    let section = if operator {
        "operator_policies"
    } else {
        "policies"
    };
    let existed = items(snap, section).any(|p| p["vhost"] == *v && p["name"] == *name);
    match req.method {
        Method::PUT => {
            let mut item = with_names(req.json()?, v, name);
            if item.get("apply-to").is_none() {
                if let Some(a) = item.get("apply_to").cloned() {
                    item["apply-to"] = a;
                }
            }
            let what = definition(&item, section)?;
            created(api.ask(what).await, existed)
        }
        Method::DELETE if existed => {
            ask(
                api,
                json!({"command": "clear-policy", "vhost": v, "name": name, "operator": operator}),
            )
            .await
        }
        Method::DELETE => Err(Reply::not_found()),
        _ => Err(Reply::method_not_allowed()),
    }
}

async fn put_limit(
    api: &Api,
    req: &Req,
    snap: &Value,
    kind: &str,
    name: &str,
    key: &str,
) -> ApiResult {
    let body = req.json()?;
    let value = body
        .get("value")
        .cloned()
        .ok_or_else(|| Reply::bad_request("value is required"))?;
    let (scope, mut limits) = if kind == "vhost-limits" {
        let now = items(snap, "vhost_limits")
            .find(|l| l["vhost"] == name)
            .map(|l| l["value"].clone());
        ("vhost", now.unwrap_or(json!({})))
    } else {
        let now = items(snap, "users")
            .find(|u| u["name"] == name)
            .map(|u| u["limits"].clone());
        ("user", now.unwrap_or(json!({})))
    };
    if !limits.is_object() {
        limits = json!({});
    }
    limits[key] = value;
    let request = json!({"command": "set-limits", "scope": scope, "name": name,
        "limits": limits.to_string()});
    match ask_text(api, request).await {
        Ok(_) => Ok(Reply::empty(StatusCode::NO_CONTENT)),
        Err(e) => Err(Reply::bad_request(&e)),
    }
}

/// `POST /api/definitions`: the document loads item by item on a blocking thread (each item
/// waits for shard 0), as `warren ctl import_definitions` does.
async fn import(api: &Api, req: &Req) -> ApiResult {
    let defs = req.json()?;
    let control = api.control();
    let loaded = tokio::task::spawn_blocking(move || ctl::import_document(&defs, &control))
        .await
        .map_err(|e| Reply::bad_request(&e.to_string()))?;
    match loaded {
        Ok(_) => Ok(Reply::empty(StatusCode::NO_CONTENT)),
        Err(e) => Err(Reply::bad_request(&e)),
    }
}
