//! The HTTP side of the management API: a request as the routes see it (method, decoded
//! path segments, query, body, credentials) and the answers in RabbitMQ's shapes (JSON
//! bodies, `{"error": ..., "reason": ...}` for failures).

use std::collections::HashMap;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Value};

/// A request, read whole (bodies are bounded by the server).
pub struct Req {
    pub method: Method,
    /// Path segments after `/api`, percent-decoded (`%2F` is the vhost `/`).
    pub segments: Vec<String>,
    pub query: HashMap<String, String>,
    pub body: Bytes,
    /// From the `Authorization: Basic` header.
    pub credentials: Option<(String, String)>,
    pub peer: SocketAddr,
    /// `X-Reason`: why an operator closes a connection.
    pub reason: Option<String>,
    /// Sent by the web UI (`X-Requested-With: XMLHttpRequest`): a 401 then carries no
    /// `WWW-Authenticate`, so the browser leaves the login to the page.
    pub from_script: bool,
}

impl Req {
    pub fn new(parts: &hyper::http::request::Parts, body: Bytes, peer: SocketAddr) -> Req {
        let path = parts.uri.path();
        let segments = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            // The default exchange's name in URLs (no other object may be named amq.*).
            .map(|s| if s == "amq.default" { String::new() } else { s })
            .collect();
        let query = parts.uri.query().map(parse_query).unwrap_or_default();
        let credentials = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(basic_credentials);
        Req {
            method: parts.method.clone(),
            segments,
            query,
            body,
            credentials,
            peer,
            from_script: parts.headers.contains_key("x-requested-with"),
            reason: parts
                .headers
                .get("x-reason")
                .and_then(|v| v.to_str().ok())
                // It ends up in a reply text, a short string.
                .map(|r| r.chars().take(200).collect()),
        }
    }

    /// The segment at `i`, as `&str` (so routes match on slices of them).
    pub fn seg(&self, i: usize) -> Option<&str> {
        self.segments.get(i).map(String::as_str)
    }

    /// The body as JSON; an empty body is an empty object.
    pub fn json(&self) -> Result<Value, Reply> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(json!({}));
        }
        serde_json::from_slice(&self.body).map_err(|e| Reply::bad_request(&e.to_string()))
    }
}

/// `user:password` from `Basic base64`.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    use base64::Engine;
    let encoded = header.strip_prefix("Basic ")?.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let (h, l) = (hex(h).unwrap_or(0), hex(l).unwrap_or(0));
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(&v.replace('+', " "))),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

/// An answer.
pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Bytes,
    /// A `Location` header (a new binding's properties key).
    pub location: Option<String>,
    /// A 401 that asks for credentials (`WWW-Authenticate`): the login failed.
    pub challenge: bool,
}

impl Reply {
    pub fn json(value: &Value) -> Reply {
        Reply::with(StatusCode::OK, value)
    }

    pub fn with(status: StatusCode, value: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: Bytes::from(value.to_string()),
            location: None,
            challenge: false,
        }
    }

    /// 201 Created or 204 No Content, as RabbitMQ answers a PUT, POST or DELETE.
    pub fn empty(status: StatusCode) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: Bytes::new(),
            location: None,
            challenge: false,
        }
    }

    pub fn error(status: StatusCode, error: &str, reason: &str) -> Reply {
        Reply::with(status, &json!({"error": error, "reason": reason}))
    }

    pub fn not_found() -> Reply {
        Reply::error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found")
    }

    pub fn bad_request(reason: &str) -> Reply {
        Reply::error(StatusCode::BAD_REQUEST, "bad_request", reason)
    }

    /// Logged in, but not allowed (RabbitMQ spells this one the British way).
    pub fn unauthorised(reason: &str) -> Reply {
        Reply::error(StatusCode::UNAUTHORIZED, "not_authorised", reason)
    }

    /// Wrong user or password.
    pub fn login_failed() -> Reply {
        let mut reply = Reply::error(StatusCode::UNAUTHORIZED, "not_authorized", "Login failed");
        reply.challenge = true;
        reply
    }

    /// No credentials at all: an empty 401 that asks for them.
    pub fn no_credentials() -> Reply {
        let mut reply = Reply::empty(StatusCode::UNAUTHORIZED);
        reply.challenge = true;
        reply
    }

    /// 404 with RabbitMQ's other spelling, for a queue an action names.
    pub fn no_queue() -> Reply {
        Reply::error(StatusCode::NOT_FOUND, "not_found", "no queue")
    }

    pub fn method_not_allowed() -> Reply {
        Reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed",
            "Method Not Allowed",
        )
    }

    pub fn text(content_type: &'static str, body: impl Into<Bytes>) -> Reply {
        Reply {
            status: StatusCode::OK,
            content_type,
            body: body.into(),
            location: None,
            challenge: false,
        }
    }

    /// The response; `browser_may_ask` lets a failed login carry `WWW-Authenticate` (not to
    /// the web UI's own scripts, which show their login form instead).
    pub fn into_response(self, browser_may_ask: bool) -> Response<Full<Bytes>> {
        let unauthorised = browser_may_ask && self.challenge;
        let mut response = Response::new(Full::new(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        headers.insert("cache-control", HeaderValue::from_static("no-cache"));
        if let Some(location) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(hyper::header::LOCATION, location);
        }
        if unauthorised {
            let realm = HeaderValue::from_static("Basic realm=\"RabbitMQ Management\"");
            headers.insert(WWW_AUTHENTICATE, realm);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_vhost_segments_and_queries() {
        assert_eq!(percent_decode("%2F"), "/");
        assert_eq!(percent_decode("a%2fb+c"), "a/b+c");
        assert_eq!(percent_decode("100%"), "100%");
        let q = parse_query("page=2&columns=name%2Cmessages&flag&name=a+b");
        assert_eq!(q["name"], "a b");
        assert_eq!(q["page"], "2");
        assert_eq!(q["columns"], "name,messages");
        assert_eq!(q["flag"], "");
    }

    #[test]
    fn reads_basic_credentials() {
        assert_eq!(
            basic_credentials("Basic Z3Vlc3Q6Z3Vlc3Q="),
            Some(("guest".to_string(), "guest".to_string()))
        );
        assert_eq!(basic_credentials("Bearer x"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }
}
