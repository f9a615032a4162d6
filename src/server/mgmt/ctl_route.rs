//! `POST /api/warren/ctl` (Warren's own, administrators only): the body is one request line
//! of the control socket and the answer is the socket's answer line, `{"ok": true,
//! "output": ...}` or `{"ok": false, "error": ...}`, with 200 either way (a refusal is an
//! answer; HTTP errors are the API's own: 401 for a user who is not an administrator). This
//! is what `warren ctl --api URL` sends, so every verb works the same on a remote broker,
//! served by the very code that serves the socket.

use super::auth::Who;
use super::http::{Reply, Req};
use super::state::Api;
use super::ApiResult;
use crate::server::ctl;

pub async fn ctl(api: &Api, req: &Req, who: &Who) -> ApiResult {
    who.require_admin()?;
    let line = std::str::from_utf8(&req.body)
        .map_err(|_| Reply::bad_request("the request is not UTF-8"))?
        .trim()
        .to_string();
    // The socket's request handling waits on shard 0 with blocking receives.
    let control = api.control();
    let answer = tokio::task::spawn_blocking(move || ctl::remote_reply(&line, &control))
        .await
        .map_err(|e| Reply::bad_request(&e.to_string()))?;
    Ok(Reply::json(&answer))
}
