//! `warren ctl --api URL`: the same request lines as the control socket, sent to a broker's
//! management API (`POST /api/warren/ctl`, administrators only), for a broker on another
//! host. A small HTTP/1.1 client on std's TCP: one request per connection
//! (`Connection: close`), plain `http://` only (TLS to the API is left to a proxy or a
//! tunnel, and refused here in so many words rather than sent in clear by surprise).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the broker may take to answer (an import of a large file takes a while).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest answer read (an export of many definitions is the largest).
const MAX_ANSWER_BYTES: u64 = 256 << 20;
/// Longest status or header line.
const MAX_LINE_BYTES: u64 = 64 << 10;

/// A management API and the credentials to use on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Api {
    /// `host:port` as given (for connecting and for the `Host` header).
    authority: String,
    host: String,
    port: u16,
    /// Where the endpoint is: the URL's path (without a trailing `/api`), then
    /// `/api/warren/ctl`.
    path: String,
    user: String,
    password: String,
}

impl Api {
    /// Reads `http://HOST[:PORT][/PREFIX]` (port 15672 by default, RabbitMQ's).
    pub fn parse(url: &str, user: &str, password: &str) -> Result<Api, String> {
        if url.starts_with("https://") {
            return Err(format!(
                "{url}: https is not supported by warren ctl --api; use an http:// URL \
                 (through an SSH tunnel or a TLS-terminating proxy when the network is not \
                 trusted), or run warren ctl on the broker's host"
            ));
        }
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!(
                "{url}: expected an http:// URL of the management API, e.g. http://broker:15672"
            )
        })?;
        let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = split_port(authority).ok_or_else(|| format!("{url}: no host"))?;
        let prefix = prefix.trim_end_matches('/');
        let prefix = prefix.strip_suffix("/api").unwrap_or(prefix);
        Ok(Api {
            authority: authority.to_string(),
            host,
            port,
            path: format!("{prefix}/api/warren/ctl"),
            user: user.to_string(),
            password: password.to_string(),
        })
    }

    /// Sends one request line; the answer line as JSON, or why there is none.
    pub fn send(&self, request: &Value) -> Result<Value, String> {
        let body = request.to_string();
        let credentials = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.user, self.password));
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {credentials}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.path,
            self.authority,
            body.len()
        );
        let mut stream = self.connect()?;
        let sent = stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body.as_bytes()));
        sent.map_err(|e| format!("cannot send the request to {}: {e}", self.authority))?;
        let (status, text) = read_response(BufReader::new(stream))
            .map_err(|e| format!("no answer from {}: {e}", self.authority))?;
        self.answer(status, &text)
    }

    fn connect(&self) -> Result<TcpStream, String> {
        let unreachable = |e: &dyn std::fmt::Display| {
            format!(
                "cannot reach the management API at {} ({e})",
                self.authority
            )
        };
        let addresses = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| unreachable(&e))?;
        let mut last = None;
        for address in addresses {
            match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    let _ = stream.set_read_timeout(Some(ANSWER_TIMEOUT));
                    let _ = stream.set_write_timeout(Some(ANSWER_TIMEOUT));
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => unreachable(&e),
            None => unreachable(&"no address"),
        })
    }

    /// The answer line, or what the status says went wrong.
    fn answer(&self, status: u16, text: &str) -> Result<Value, String> {
        let reason = || {
            serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| v["reason"].as_str().map(str::to_string))
                .unwrap_or_else(|| text.trim().to_string())
        };
        match status {
            200 => serde_json::from_str(text).map_err(|_| format!("unexpected answer: {text:?}")),
            401 => Err(format!(
                "the management API refused user '{}': {} (warren ctl --api needs an \
                 administrator; see --username and --password)",
                self.user,
                reason()
            )),
            404 | 405 => Err(format!(
                "{} has no {}: is it a Warren broker's management port?",
                self.authority, self.path
            )),
            other => Err(format!("the management API answered {other}: {}", reason())),
        }
    }
}

/// `host[:port]`, `[v6][:port]`; the port defaults to 15672.
fn split_port(authority: &str) -> Option<(String, u16)> {
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, rest) = v6.split_once(']')?;
        let port = match rest.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if rest.is_empty() => 15672,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().ok()?),
        None => (authority, 15672),
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// The status and the body (by Content-Length, chunked, or up to the close), bounded.
fn read_response(mut input: impl BufRead) -> std::io::Result<(u16, String)> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let status_line = read_line(&mut input)?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| bad("not an HTTP answer"))?;
    let (mut length, mut chunked) = (None, false);
    loop {
        let line = read_line(&mut input)?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<u64>()
                    .map_err(|_| bad("bad Content-Length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let body = if chunked {
        read_chunked(&mut input)?
    } else {
        let limit = length.unwrap_or(MAX_ANSWER_BYTES);
        if limit > MAX_ANSWER_BYTES {
            return Err(bad("the answer is too large"));
        }
        let mut body = Vec::new();
        input.take(limit).read_to_end(&mut body)?;
        body
    };
    let text = String::from_utf8(body).map_err(|_| bad("the answer is not UTF-8"))?;
    Ok((status, text))
}

fn read_chunked(input: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut body = Vec::new();
    loop {
        let line = read_line(input)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
        if size == 0 {
            return Ok(body);
        }
        if body.len() as u64 + size > MAX_ANSWER_BYTES {
            return Err(bad("the answer is too large"));
        }
        input.take(size).read_to_end(&mut body)?;
        read_line(input)?;
    }
}

/// One CRLF-terminated line, without its end.
fn read_line(input: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = Vec::new();
    input.take(MAX_LINE_BYTES).read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the connection ended mid-answer",
        ));
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_host_port_and_prefix() {
        let api = Api::parse("http://broker:15673/", "u", "p").expect("a URL");
        assert_eq!((api.host.as_str(), api.port), ("broker", 15673));
        assert_eq!(api.path, "/api/warren/ctl");
        let api = Api::parse("http://[::1]/rabbit/api", "u", "p").expect("a URL");
        assert_eq!((api.host.as_str(), api.port), ("::1", 15672));
        assert_eq!(api.path, "/rabbit/api/warren/ctl");
        assert_eq!(api.authority, "[::1]");
        let refused = Api::parse("https://broker", "u", "p").expect_err("https refused");
        assert!(refused.contains("https is not supported"), "got {refused}");
        assert!(Api::parse("broker:15672", "u", "p").is_err());
        assert!(Api::parse("http://:15672", "u", "p").is_err());
        assert!(Api::parse("http://broker:x", "u", "p").is_err());
    }

    #[test]
    fn answers_by_length_chunks_or_close() {
        let by_length = "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n{}\r\nextra";
        let got = read_response(by_length.as_bytes()).expect("an answer");
        assert_eq!(got, (200, "{}\r\n".to_string()));
        let chunked =
            "HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n";
        let got = read_response(chunked.as_bytes()).expect("an answer");
        assert_eq!(got, (401, "abcde".to_string()));
        let to_close = "HTTP/1.0 200 OK\r\n\r\n{\"ok\":true}";
        let got = read_response(to_close.as_bytes()).expect("an answer");
        assert_eq!(got.1, "{\"ok\":true}");
        assert!(read_response("SSH-2.0\r\n\r\n".as_bytes()).is_err());
        assert!(read_response("HTTP/1.1 200 OK\r\n".as_bytes()).is_err());
        let huge = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", u64::MAX);
        assert!(read_response(huge.as_bytes()).is_err());
    }

    #[test]
    fn statuses_become_operator_errors() {
        let api = Api::parse("http://h:1", "bob", "p").expect("a URL");
        let unauthorised = r#"{"error":"not_authorised","reason":"Not administrator user"}"#;
        let err = api.answer(401, unauthorised).expect_err("refused");
        assert!(
            err.contains("'bob'") && err.contains("Not administrator user"),
            "{err}"
        );
        let err = api.answer(404, "").expect_err("refused");
        assert!(err.contains("Warren broker"), "{err}");
        let ok = api
            .answer(200, r#"{"ok":true,"output":"x"}"#)
            .expect("an answer");
        assert_eq!(ok["output"], "x");
    }
}
