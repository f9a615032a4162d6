//! `warren ctl trace [-p VHOST]` on the control socket: the request line
//! `{"command": "trace", "vhost": "/"}` is answered with the usual `{"ok": true, ...}` line
//! once tracing is on, then with one JSON line per publish and delivery in the vhost
//! ([`crate::trace`]) until the caller hangs up; then tracing turns off.
//!
//! Each trace runs on a thread of its own (so the control socket keeps serving other
//! requests), which is the only reader of its session's bounded channel: shards never wait
//! for it. When the caller reads too slowly the channel fills, shards drop what does not fit,
//! and this thread reports how many with a `{"type": "dropped", "count": N}` line.

use std::io::{BufWriter, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::protocol::BasicProperties;
use crate::shard::control::{Control, ControlSender};
use crate::trace::{self, Event, Party, Subscription};

/// How often a quiet trace looks whether its caller hung up.
const HANG_UP_CHECK: Duration = Duration::from_millis(200);
/// Events written before the buffer is flushed and the caller checked again.
const EVENTS_PER_FLUSH: usize = 256;
/// A caller that reads nothing for this long is hung up on.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Is `line` a trace request (served by [`start`] rather than as a one-line answer)?
pub fn is_trace(line: &str) -> bool {
    serde_json::from_str::<Value>(line).is_ok_and(|r| r["command"] == "trace")
}

/// Turns tracing on for the request's vhost and streams its events to `out` on a thread of
/// its own; `listen` is the AMQP listener that names connections (`PEER -> LISTENER`, as
/// list_connections names them). A refusal is answered on `out` as any other.
pub fn start(mut out: UnixStream, line: &str, control: &ControlSender, listen: Option<SocketAddr>) {
    let (vhost, subscription) = match subscribe(line, control) {
        Ok(started) => started,
        Err(error) => {
            let _ = writeln!(out, "{}", json!({"ok": false, "error": error}));
            return;
        }
    };
    // Written before the thread starts: events (buffered since the subscription) follow it.
    let output =
        format!("Tracing vhost '{vhost}': one JSON line per publish and delivery; hang up to stop");
    if writeln!(out, "{}", json!({"ok": true, "output": output})).is_err() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("warren-trace".to_string())
        .spawn(move || pump(&subscription, out, listen));
    if let Err(err) = spawned {
        // The caller sees the trace end at once.
        crate::warn!("warren ctl trace not started: {err}");
    }
}

/// The request's vhost, checked to exist, and its new session.
fn subscribe(line: &str, control: &ControlSender) -> Result<(String, Subscription), String> {
    let request: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let vhost = request["vhost"].as_str().unwrap_or("/").to_string();
    let columns = vec!["name".to_string()];
    let vhosts = super::ask(control, Control::ListVhosts { columns })?;
    if !vhosts.lines().skip(1).any(|name| name == vhost) {
        return Err(format!("vhost '{vhost}' does not exist"));
    }
    let subscription = trace::subscribe(vhost.as_bytes(), trace::SESSION_CAPACITY)?;
    crate::info!("Tracing vhost '{vhost}' for warren ctl trace");
    Ok((vhost, subscription))
}

/// Writes events until the caller hangs up; the subscription ends with it.
fn pump(subscription: &Subscription, stream: UnixStream, listen: Option<SocketAddr>) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let Ok(probe) = stream.try_clone() else {
        return;
    };
    let mut out = BufWriter::new(stream);
    loop {
        let first = match subscription.recv_timeout(HANG_UP_CHECK) {
            Ok(event) => Some(event),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let batch = first
            .into_iter()
            .chain(std::iter::from_fn(|| subscription.try_recv()))
            .take(EVENTS_PER_FLUSH);
        let mut lines: Vec<Value> = batch.map(|e| event_json(&e, listen)).collect();
        let dropped = subscription.take_dropped();
        if dropped > 0 {
            lines.push(json!({"type": "dropped", "count": dropped}));
        }
        let written = lines
            .iter()
            .try_for_each(|line| writeln!(out, "{line}"))
            .and_then(|()| out.flush());
        if written.is_err() || hung_up(&probe) {
            break;
        }
    }
    crate::info!("Trace ended: its caller hung up");
}

/// The caller closed its end (or sent something, which it never does otherwise): a peek
/// that does not wait.
fn hung_up(stream: &UnixStream) -> bool {
    let mut byte = [MaybeUninit::<u8>::uninit()];
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
    match socket2::SockRef::from(stream).recv_with_flags(&mut byte, flags) {
        Ok(_) => true,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
        ),
    }
}

fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One event as the line the caller reads.
pub fn event_json(event: &Event, listen: Option<SocketAddr>) -> Value {
    let (mut line, party) = match event {
        Event::Publish(p) => (
            json!({"type": "publish", "vhost": text(&p.vhost), "exchange": text(&p.exchange),
                "routing_key": text(&p.routing_key), "properties": properties_json(&p.properties),
                "body_bytes": p.body_bytes, "routed_queues": p.routed_queues}),
            &p.by,
        ),
        Event::Deliver(d) => {
            let mut line = json!({"type": if d.consumer_tag.is_some() { "deliver" } else { "get" },
                "vhost": text(&d.vhost), "queue": text(&d.queue),
                "redelivered": d.redelivered, "exchange": text(&d.exchange),
                "routing_key": text(&d.routing_key), "properties": properties_json(&d.properties),
                "body_bytes": d.body_bytes});
            if let Some(tag) = &d.consumer_tag {
                line["consumer_tag"] = json!(text(tag));
            }
            (line, &d.to)
        }
    };
    add_party(&mut line, party, listen);
    line
}

/// The connection as list_connections names it, its client's own name, user, channel.
fn add_party(line: &mut Value, party: &Party, listen: Option<SocketAddr>) {
    let connection = match listen {
        Some(local) => format!("{} -> {local}", party.peer),
        None => party.peer.to_string(),
    };
    line["connection"] = json!(connection);
    if let Some(name) = &party.client_name {
        line["connection_name"] = json!(name);
    }
    line["user"] = json!(party.user);
    line["channel"] = json!(party.channel);
}

/// The properties that are set, under RabbitMQ's names (as the management API shows a
/// message's); `{}` for a header that does not decode.
pub(in crate::server) fn properties_json(raw: &[u8]) -> Value {
    let Ok(p) = BasicProperties::decode(raw) else {
        return json!({});
    };
    let mut out = Map::new();
    let texts = [
        ("content_type", &p.content_type),
        ("content_encoding", &p.content_encoding),
        ("correlation_id", &p.correlation_id),
        ("reply_to", &p.reply_to),
        ("expiration", &p.expiration),
        ("message_id", &p.message_id),
        ("type", &p.kind),
        ("user_id", &p.user_id),
        ("app_id", &p.app_id),
    ];
    for (key, value) in texts {
        if let Some(value) = value {
            out.insert(key.to_string(), json!(text(value)));
        }
    }
    if let Some(headers) = &p.headers {
        let headers = crate::broker::policy::definition_to_json(headers);
        out.insert("headers".to_string(), headers);
    }
    let numbers = [
        ("delivery_mode", p.delivery_mode.map(u64::from)),
        ("priority", p.priority.map(u64::from)),
        ("timestamp", p.timestamp),
    ];
    for (key, value) in numbers {
        if let Some(value) = value {
            out.insert(key.to_string(), json!(value));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Deliver, Publish};

    fn party() -> Party {
        Party {
            peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
            client_name: Some("orders".to_string()),
            user: "guest".to_string(),
            channel: 2,
        }
    }

    #[test]
    fn a_publish_names_exchange_key_properties_and_connection() {
        let properties = BasicProperties {
            content_type: Some(Bytes::from_static(b"text/plain")),
            delivery_mode: Some(2),
            ..Default::default()
        };
        let mut raw = bytes::BytesMut::new();
        properties.encode(&mut raw);
        let event = Event::Publish(Box::new(Publish {
            vhost: Bytes::from_static(b"/"),
            exchange: Bytes::from_static(b"amq.direct"),
            routing_key: Bytes::from_static(b"k"),
            properties: raw.freeze(),
            body_bytes: 5,
            routed_queues: 2,
            by: party(),
        }));
        let listen = Some(SocketAddr::from(([0, 0, 0, 0], 5672)));
        let line = event_json(&event, listen);
        assert_eq!(
            line,
            json!({"type": "publish", "vhost": "/", "exchange": "amq.direct",
                "routing_key": "k", "body_bytes": 5, "routed_queues": 2,
                "properties": {"content_type": "text/plain", "delivery_mode": 2},
                "connection": "127.0.0.1:40000 -> 0.0.0.0:5672", "connection_name": "orders",
                "user": "guest", "channel": 2})
        );
    }

    #[test]
    fn a_get_has_no_consumer_tag_and_bad_properties_show_empty() {
        let event = Event::Deliver(Box::new(Deliver {
            vhost: Bytes::from_static(b"v"),
            queue: Bytes::from_static(b"q"),
            consumer_tag: None,
            redelivered: true,
            exchange: Bytes::new(),
            routing_key: Bytes::from_static(b"q"),
            properties: Bytes::from_static(b"\xff"),
            body_bytes: 0,
            to: party(),
        }));
        let line = event_json(&event, None);
        assert_eq!(line["type"], "get");
        assert_eq!(line["queue"], "q");
        assert_eq!(line["redelivered"], true);
        assert_eq!(line["properties"], json!({}));
        assert_eq!(line["connection"], "127.0.0.1:40000");
        assert!(line.get("consumer_tag").is_none(), "got {line}");
    }
}
