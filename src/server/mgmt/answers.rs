//! Small pieces every route uses: single-object answers, the status codes of writes, and
//! request bodies turned into the requests `warren ctl` sends.

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{json, Value};

use super::http::Reply;
use super::shape::items;
use super::ApiResult;
use crate::server::ctl;
use crate::shard::control::Control;

/// 200 with `value()` when `found`, else 404.
pub fn one(found: bool, value: impl FnOnce() -> Value) -> ApiResult {
    if found {
        Ok(Reply::json(&value()))
    } else {
        Err(Reply::not_found())
    }
}

/// The first item `is` picks, or 404.
pub fn find(all: Vec<Value>, is: impl Fn(&Value) -> bool) -> ApiResult {
    all.into_iter()
        .find(|i| is(i))
        .map(|i| Reply::json(&i))
        .ok_or_else(Reply::not_found)
}

pub fn vhost_exists(snap: &Value, vhost: &str) -> bool {
    items(snap, "vhosts").any(|v| v["name"] == vhost)
}

pub fn bytes_of(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// The body with the `vhost` and `name` of the URL, as a definitions item.
pub fn with_names(mut body: Value, vhost: &str, name: &str) -> Value {
    if !body.is_object() {
        body = json!({});
    }
    body["vhost"] = json!(vhost);
    body["name"] = json!(name);
    body
}

/// The request that loads `item` as a definitions section would.
pub fn definition(item: &Value, section: &str) -> Result<Control, Reply> {
    match ctl::definition_request(section, item) {
        Some(Ok(what)) => Ok(what),
        Some(Err(e)) => Err(Reply::bad_request(&e)),
        None => Err(Reply::bad_request("nothing to do")),
    }
}

/// 201 for something new, 204 for something that was there, 400 with the broker's reason.
pub fn created(answer: Result<String, String>, existed: bool) -> ApiResult {
    match answer {
        Ok(_) if existed => Ok(Reply::empty(StatusCode::NO_CONTENT)),
        Ok(_) => Ok(Reply::empty(StatusCode::CREATED)),
        Err(e) => Err(Reply::bad_request(&e)),
    }
}

/// 204, or 400 with the broker's reason.
pub fn done(answer: Result<String, String>) -> ApiResult {
    answer
        .map(|_| Reply::empty(StatusCode::NO_CONTENT))
        .map_err(|e| Reply::bad_request(&e))
}
