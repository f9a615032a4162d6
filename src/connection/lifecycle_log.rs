//! The connection lifecycle in the log, as RabbitMQ logs it: `accepting AMQP connection` once
//! a client opened its vhost, `closing AMQP connection` when it closes at its own request, and
//! `client unexpectedly closed TCP connection` when the socket ends without a close. Each line
//! carries the client's self-description from connection.start-ok (product, version and the
//! `connection_name` an application may set) as fields, so that an operator can tell which
//! application a connection belongs to. Closes the broker decides are logged where they are
//! decided (`Conn::hard_close`, heartbeat and writer timeouts).

use super::Conn;
use crate::protocol::method::ConnectionClose;
use crate::protocol::FieldTable;

/// Longest client-supplied text kept for the log: a client cannot make one line huge.
const MAX_TEXT_CHARS: usize = 128;

/// What the client said about itself in connection.start-ok's client properties.
#[derive(Debug, Default, Clone)]
pub struct ClientInfo {
    product: Option<String>,
    version: Option<String>,
    connection_name: Option<String>,
}

impl ClientInfo {
    /// The properties the log shows; absent or non-text ones are left out.
    pub fn from_properties(properties: &FieldTable) -> ClientInfo {
        let text = |key: &str| {
            let bytes = properties.get(key)?.as_bytes()?;
            Some(bounded(&String::from_utf8_lossy(bytes)))
        };
        ClientInfo {
            product: text("product"),
            version: text("version"),
            connection_name: text("connection_name"),
        }
    }
}

impl ClientInfo {
    /// The `connection_name` the client gave, if any.
    pub fn connection_name(&self) -> Option<&str> {
        self.connection_name.as_deref()
    }
}

/// `text` cut to `MAX_TEXT_CHARS` characters.
fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT_CHARS) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// connection.open succeeded: the connection is in use from now on.
pub fn opened(conn: &Conn, shard_id: usize) {
    let state = conn.state.borrow();
    let client = &state.client;
    crate::info!(
        peer = %conn.peer,
        user = state.user.as_str(),
        vhost = %String::from_utf8_lossy(&state.vhost),
        shard = shard_id as u64,
        client_product = client.product.as_deref(),
        client_version = client.version.as_deref(),
        connection_name = client.connection_name.as_deref(),
        "accepting AMQP connection"
    );
}

/// The client sent connection.close.
pub fn closed_by_client(conn: &Conn, close: &ConnectionClose) {
    let state = conn.state.borrow();
    crate::info!(
        peer = %conn.peer,
        user = state.user.as_str(),
        vhost = %String::from_utf8_lossy(&state.vhost),
        connection_name = state.client.connection_name.as_deref(),
        reply_code = u64::from(close.reply_code),
        reply_text = bounded(&String::from_utf8_lossy(&close.reply_text)).as_str(),
        "closing AMQP connection at the client's request"
    );
}

/// The reader stopped on an open connection that neither side closed (EOF or a socket
/// error): the client went away without connection.close.
pub fn vanished(conn: &Conn) {
    let state = conn.state.borrow();
    crate::warn!(
        peer = %conn.peer,
        user = state.user.as_str(),
        vhost = %String::from_utf8_lossy(&state.vhost),
        connection_name = state.client.connection_name.as_deref(),
        "client unexpectedly closed TCP connection"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FieldValue;

    #[test]
    fn client_properties_are_read_and_bounded() {
        let mut props = FieldTable::default();
        props.insert("product", FieldValue::LongStr("lapin".into()));
        props.insert("version", FieldValue::I32(2));
        props.insert(
            "connection_name",
            FieldValue::LongStr("x".repeat(500).into()),
        );
        let info = ClientInfo::from_properties(&props);
        assert_eq!(info.product.as_deref(), Some("lapin"));
        assert_eq!(info.version, None);
        let name = info.connection_name.expect("a name");
        assert_eq!(name.len(), MAX_TEXT_CHARS + 3);
        assert!(name.ends_with("..."));
        assert_eq!(bounded("é".repeat(200).as_str()).chars().count(), 131);
    }
}
