//! `POST /api/queues/{vhost}/{name}/get` and `POST /api/exchanges/{vhost}/{name}/publish`:
//! messages read and written by an operator, with RabbitMQ's body fields.

use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};

use super::answers::bytes_of;
use super::http::{Reply, Req};
use super::shape::items;
use super::state::Api;
use super::ApiResult;
use crate::protocol::{BasicProperties, FieldTable};
use crate::shard::control::{ApiOp, Control, GetSettle};

pub async fn get(api: &Api, req: &Req, v: &str, name: &str) -> ApiResult {
    let body = req.json()?;
    let field = |key: &str| {
        body[key]
            .as_str()
            .ok_or_else(|| Reply::bad_request(&format!("{key} is required")))
    };
    let count = body["count"].as_u64().unwrap_or(1).min(10_000) as u32;
    let settle = settle_of(field("ackmode")?)?;
    let encoding = field("encoding")?;
    let truncate = body["truncate"].as_u64().map(|t| t as usize);
    let op = ApiOp::Get {
        vhost: bytes_of(v),
        name: bytes_of(name),
        count,
        settle,
    };
    let text = api
        .ask(Control::Api(op))
        .await
        .map_err(|e| Reply::bad_request(&e))?;
    let got: Value = serde_json::from_str(&text).map_err(|e| Reply::bad_request(&e.to_string()))?;
    let messages: Vec<Value> = got
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|m| message(m, encoding, truncate))
        .collect();
    Ok(Reply::json(&Value::Array(messages)))
}

/// One message in the API's shape: the payload as text when `encoding` is `auto` and it is
/// UTF-8, else base64.
fn message(m: &Value, encoding: &str, truncate: Option<usize>) -> Value {
    let engine = base64::engine::general_purpose::STANDARD;
    let body = engine
        .decode(m["payload"].as_str().unwrap_or_default())
        .unwrap_or_default();
    let shown = &body[..truncate.unwrap_or(body.len()).min(body.len())];
    let (payload, payload_encoding) = match std::str::from_utf8(shown) {
        Ok(text) if encoding == "auto" => (text.to_string(), "string"),
        _ => (engine.encode(shown), "base64"),
    };
    let raw = hex_bytes(m["properties"].as_str().unwrap_or_default());
    let properties = crate::server::ctl::properties_json(&raw);
    json!({"payload_bytes": m["payload_bytes"], "redelivered": m["redelivered"],
        "exchange": m["exchange"], "routing_key": m["routing_key"],
        "message_count": m["message_count"], "properties": properties,
        "payload": payload, "payload_encoding": payload_encoding})
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

pub async fn publish(api: &Api, req: &Req, snap: &Value, v: &str, exchange: &str) -> ApiResult {
    let body = req.json()?;
    let key = body["routing_key"]
        .as_str()
        .ok_or_else(|| Reply::bad_request("routing_key is required"))?;
    let payload = body["payload"]
        .as_str()
        .ok_or_else(|| Reply::bad_request("payload is required"))?;
    let payload = match body["payload_encoding"].as_str().unwrap_or("string") {
        "string" => Bytes::copy_from_slice(payload.as_bytes()),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(payload)
            .map(Bytes::from)
            .map_err(|e| Reply::bad_request(&e.to_string()))?,
        other => {
            return Err(Reply::bad_request(&format!(
                "unknown payload_encoding '{other}'"
            )))
        }
    };
    let properties = properties_from(&body["properties"])?;
    let op = ApiOp::Publish {
        vhost: bytes_of(v),
        exchange: bytes_of(exchange),
        routing_key: bytes_of(key),
        properties: Box::new(properties),
        body: payload,
    };
    let text = api
        .ask(Control::Api(op))
        .await
        .map_err(|e| Reply::bad_request(&e))?;
    let mut answer: Value = serde_json::from_str(&text).unwrap_or(json!({"routed": false}));
    if exchange.is_empty() {
        // The default exchange routes to the queue named by the key, if there is one.
        let exists = items(snap, "queues").any(|q| q["vhost"] == v && q["name"] == key);
        answer["routed"] = json!(exists);
    }
    Ok(Reply::json(&answer))
}

/// RabbitMQ's `properties` object: the basic properties by name.
fn properties_from(p: &Value) -> Result<BasicProperties, Reply> {
    let text = |k: &str| p[k].as_str().map(|s| Bytes::copy_from_slice(s.as_bytes()));
    let small = |k: &str| p[k].as_u64().map(|n| n.min(255) as u8);
    let headers = match p.get("headers") {
        Some(h) if h.is_object() => Some(
            crate::broker::policy::definition_from_json(h).map_err(|e| Reply::bad_request(&e))?,
        ),
        _ => None::<FieldTable>,
    };
    Ok(BasicProperties {
        content_type: text("content_type"),
        content_encoding: text("content_encoding"),
        headers,
        delivery_mode: small("delivery_mode"),
        priority: small("priority"),
        correlation_id: text("correlation_id"),
        reply_to: text("reply_to"),
        expiration: text("expiration"),
        message_id: text("message_id"),
        timestamp: p["timestamp"].as_u64(),
        kind: text("type"),
        user_id: text("user_id"),
        app_id: text("app_id"),
        cluster_id: None,
    })
}

/// Which settlement `ackmode` asks for.
fn settle_of(ackmode: &str) -> Result<GetSettle, Reply> {
    match ackmode {
        "ack_requeue_true" | "reject_requeue_true" => Ok(GetSettle::Requeue),
        "ack_requeue_false" => Ok(GetSettle::Ack),
        "reject_requeue_false" => Ok(GetSettle::Reject),
        other => Err(Reply::bad_request(&format!("unknown ackmode '{other}'"))),
    }
}
