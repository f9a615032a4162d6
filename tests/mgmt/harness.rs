//! What `tests/management_api.rs` and `tests/management_clients.rs` share (included by both
//! with `#[path = "mgmt/harness.rs"] mod harness;`): a broker with its management and
//! Prometheus listeners, a small blocking HTTP/1.1 client, and the scripts of `tests/mgmt/`.
//!
//! By default each test starts its own `warren --management-port P1 --prometheus-port P2`.
//! With `WARREN_TEST_AMQP_PORT` set (an external broker, e.g. RabbitMQ from
//! `tests/rabbitmq-node.sh`), `WARREN_TEST_MGMT_PORT` and `WARREN_TEST_PROMETHEUS_PORT` name
//! its management and Prometheus ports; without them the tests skip themselves.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::support::broker::{external_port, free_port};
use crate::support::process::{Output, Process};
use crate::support::Broker;

/// Environment variable: the external broker's management port.
pub const MGMT_PORT_ENV: &str = "WARREN_TEST_MGMT_PORT";
/// Environment variable: the external broker's Prometheus port.
pub const PROMETHEUS_PORT_ENV: &str = "WARREN_TEST_PROMETHEUS_PORT";
/// How long the management listener may take to accept connections after AMQP startup.
const LISTENER_TIMEOUT: Duration = Duration::from_secs(30);
/// Bounds one HTTP exchange.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// A broker with its management and Prometheus listeners on 127.0.0.1.
pub struct MgmtBroker {
    /// The AMQP side (kills a broker of our own on drop).
    pub broker: Broker,
    /// The management HTTP API's port.
    pub mgmt_port: u16,
    /// The Prometheus endpoint's port.
    pub prometheus_port: u16,
}

impl MgmtBroker {
    /// Starts `warren --management-port P1 --prometheus-port P2` on free ports and waits for
    /// both listeners; or, with `WARREN_TEST_AMQP_PORT`, returns the external broker named by
    /// the environment (`None`, after saying so, if its ports are not given).
    pub fn start() -> Option<MgmtBroker> {
        if external_port().is_some() {
            return Self::external();
        }
        let mgmt_port = free_port();
        let prometheus_port = free_port();
        let (mgmt, prometheus) = (mgmt_port.to_string(), prometheus_port.to_string());
        let broker = Broker::start(&["--management-port", &mgmt, "--prometheus-port", &prometheus]);
        wait_for_listener(mgmt_port);
        wait_for_listener(prometheus_port);
        Some(MgmtBroker {
            broker,
            mgmt_port,
            prometheus_port,
        })
    }

    fn external() -> Option<MgmtBroker> {
        let port =
            |name: &str| -> Option<u16> {
                let value = std::env::var(name).ok()?;
                Some(value.trim().parse().unwrap_or_else(|e| {
                    panic!("expected {name} to be a port, got {value:?} ({e})")
                }))
            };
        match (port(MGMT_PORT_ENV), port(PROMETHEUS_PORT_ENV)) {
            (Some(mgmt_port), Some(prometheus_port)) => Some(MgmtBroker {
                broker: Broker::start(&[]),
                mgmt_port,
                prometheus_port,
            }),
            _ => {
                eprintln!(
                    "skipped: external broker without {MGMT_PORT_ENV} and {PROMETHEUS_PORT_ENV}"
                );
                None
            }
        }
    }

    /// `http://127.0.0.1:<management port>`
    pub fn mgmt_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.mgmt_port)
    }

    /// The AMQP port.
    pub fn amqp_port(&self) -> u16 {
        self.broker.port()
    }

    /// A request to the management API as guest/guest.
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> HttpResponse {
        http(self.mgmt_port, method, path, body, Some(("guest", "guest")))
    }

    /// `GET path` on the management API as guest/guest, which must answer 200 with JSON.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let response = self.api("GET", path, None);
        assert_eq!(
            response.status, 200,
            "expected 200 from GET {path}, got {}: {}",
            response.status, response.body
        );
        serde_json::from_str(&response.body)
            .unwrap_or_else(|e| panic!("expected JSON from GET {path}, got {e}: {}", response.body))
    }
}

/// Polls until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_for_listener(port: u16) {
    let deadline = Instant::now() + LISTENER_TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "expected a listener on 127.0.0.1:{port} within {LISTENER_TIMEOUT:?}, got none"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An HTTP answer: status, lower-cased headers and body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// One HTTP/1.1 exchange on its own connection (`Connection: close`), with basic auth when
/// `user` is given; the body, if any, is sent as JSON.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    user: Option<(&str, &str)>,
) -> HttpResponse {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("expected to connect to 127.0.0.1:{port}, got {e}"));
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .expect("timeout");
    let request = request_bytes(port, method, path, body, user);
    stream
        .write_all(&request)
        .unwrap_or_else(|e| panic!("expected to send {method} {path}, got {e}"));
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("expected an answer to {method} {path}, got {e}"));
    parse_response(&raw).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn request_bytes(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    user: Option<(&str, &str)>,
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    head.push_str("Connection: close\r\n");
    if let Some((name, password)) = user {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}"));
        head.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || matches!(method, "PUT" | "POST") {
        head.push_str("Content-Type: application/json\r\n");
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// Parses a whole HTTP/1.1 response (read to EOF): status line, headers, and a body framed by
/// Content-Length, chunked transfer coding, or the end of the connection.
pub fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            format!(
                "expected an HTTP head, got {:?}",
                String::from_utf8_lossy(raw)
            )
        })?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("expected an HTTP status line, got {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else {
        let length = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok());
        rest[..length.unwrap_or(rest.len()).min(rest.len())].to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Decodes a chunked body.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("expected a chunk size line")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|e| format!("expected a hex chunk size, got {size_text:?} ({e})"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size {
            return Err(format!(
                "expected a chunk of {size} bytes, got {}",
                rest.len()
            ));
        }
        body.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
}

/// `tests/mgmt/<name>`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("mgmt")
        .join(name)
}

/// `tests/data/<name>`.
pub fn data_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
        .join(name)
}

/// Runs `program` with `args` to completion within `timeout` (its output captured); does not
/// check the exit status.
pub fn run(mut command: Command, what: &str, timeout: Duration) -> Output {
    command.env("PYTHONDONTWRITEBYTECODE", "1");
    Process::spawn(command, what)
        .unwrap_or_else(|e| panic!("expected to start {what}, got {e}"))
        .finish(timeout)
}

/// `python3 -B tests/mgmt/<name> args...` (system Python, stdlib only).
pub fn python_script(name: &str, args: &[&str], timeout: Duration) -> Output {
    let mut command = Command::new("python3");
    command.arg("-B").arg(script(name)).args(args);
    run(command, name, timeout)
}
