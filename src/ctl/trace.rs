//! `warren ctl trace [-p VHOST]`: every publish and delivery in the vhost, one JSON line
//! each on standard output, until interrupted (hanging up is what turns tracing off in the
//! broker). The broker's first line says whether tracing started; it goes to standard error,
//! so that standard output holds nothing but events.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde_json::{json, Value};

/// Streams the trace to standard output; the exit code.
pub fn run(socket: &Path, vhost: &str) -> i32 {
    match stream(socket, vhost) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("warren ctl: {err}");
            1
        }
    }
}

fn stream(socket: &Path, vhost: &str) -> Result<(), String> {
    let mut stream = super::connect(socket)?;
    let request = json!({"command": "trace", "vhost": vhost});
    writeln!(stream, "{request}").map_err(|e| format!("cannot send the request: {e}"))?;
    let mut lines = BufReader::new(stream).lines();
    let first = match lines.next() {
        Some(Ok(line)) => line,
        _ => return Err("no answer from the broker".to_string()),
    };
    let reply: Value =
        serde_json::from_str(&first).map_err(|_| format!("unexpected answer: {first:?}"))?;
    if reply["ok"].as_bool() != Some(true) {
        return Err(reply["error"].as_str().unwrap_or("refused").to_string());
    }
    eprintln!("{}", reply["output"].as_str().unwrap_or_default());
    let mut out = std::io::stdout().lock();
    for line in lines {
        let Ok(line) = line else {
            break;
        };
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            // Whoever reads standard output is gone (`| head`): done.
            return Ok(());
        }
    }
    Err("the broker ended the trace (is it stopping?)".to_string())
}

/// The trace is a stream over the control socket; the management API answers one request
/// with one answer.
pub const NOT_OVER_API: &str = "trace works over the control socket only (--api carries one \
     answer per request, not a stream): run `warren ctl trace` on the broker's host";
