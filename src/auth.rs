//! Authentication: SASL PLAIN and AMQPLAIN against the built-in user table.
//!
//! As in RabbitMQ, the default user `guest` (password `guest`) may only log in from a loopback
//! address unless the operator says otherwise.

use std::net::IpAddr;

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::FieldTable;

pub const MECHANISMS: &[u8] = b"PLAIN AMQPLAIN";

#[derive(Debug, PartialEq)]
pub enum AuthError {
    /// Mechanism we do not offer: RabbitMQ closes with 503 COMMAND_INVALID.
    UnknownMechanism(String),
    /// Wrong credentials, malformed response, or guest from a remote address: 403.
    Refused { mechanism: String, reason: String },
}

/// Checks a connection.start-ok response; returns the user name on success.
pub fn authenticate(
    mechanism: &[u8],
    response: &[u8],
    peer: IpAddr,
    allow_remote_guest: bool,
) -> Result<String, AuthError> {
    let mech = String::from_utf8_lossy(mechanism).into_owned();
    let refused = |reason: &str| AuthError::Refused {
        mechanism: mech.clone(),
        reason: reason.to_string(),
    };
    let (user, pass) = match mechanism {
        b"PLAIN" => parse_plain(response).ok_or_else(|| refused("malformed PLAIN response"))?,
        b"AMQPLAIN" => {
            parse_amqplain(response).ok_or_else(|| refused("malformed AMQPLAIN response"))?
        }
        _ => return Err(AuthError::UnknownMechanism(mech)),
    };
    if user != "guest" || pass != "guest" {
        return Err(refused(&format!("user '{user}' - invalid credentials")));
    }
    if !allow_remote_guest && !peer.is_loopback() && !is_mapped_loopback(peer) {
        return Err(refused("user 'guest' can only connect via localhost"));
    }
    Ok(user)
}

fn is_mapped_loopback(peer: IpAddr) -> bool {
    match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        IpAddr::V4(_) => false,
    }
}

/// `[authzid] NUL authcid NUL passwd`
fn parse_plain(response: &[u8]) -> Option<(String, String)> {
    let mut parts = response.split(|&b| b == 0);
    let _authzid = parts.next()?;
    let user = parts.next()?;
    let pass = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    Some((
        String::from_utf8(user.to_vec()).ok()?,
        String::from_utf8(pass.to_vec()).ok()?,
    ))
}

/// A field table without its length prefix, holding LOGIN and PASSWORD.
fn parse_amqplain(response: &[u8]) -> Option<(String, String)> {
    let mut prefixed = BytesMut::with_capacity(response.len() + 4);
    prefixed.put_u32(u32::try_from(response.len()).ok()?);
    prefixed.put_slice(response);
    let mut bytes: Bytes = prefixed.freeze();
    let table = FieldTable::decode(&mut bytes).ok()?;
    let text = |key: &str| {
        table
            .get(key)?
            .as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    Some((text("LOGIN")?, text("PASSWORD")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const REMOTE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    #[test]
    fn plain_guest_from_loopback_is_accepted() {
        assert_eq!(
            authenticate(b"PLAIN", b"\0guest\0guest", LOOPBACK, false),
            Ok("guest".into())
        );
    }

    #[test]
    fn guest_from_remote_is_refused() {
        assert!(matches!(
            authenticate(b"PLAIN", b"\0guest\0guest", REMOTE, false),
            Err(AuthError::Refused { .. })
        ));
        assert!(authenticate(b"PLAIN", b"\0guest\0guest", REMOTE, true).is_ok());
    }

    #[test]
    fn wrong_password_and_unknown_mechanism() {
        assert!(matches!(
            authenticate(b"PLAIN", b"\0guest\0nope", LOOPBACK, false),
            Err(AuthError::Refused { .. })
        ));
        assert!(matches!(
            authenticate(b"EXTERNAL", b"", LOOPBACK, false),
            Err(AuthError::UnknownMechanism(_))
        ));
    }

    #[test]
    fn amqplain_table() {
        let mut table = FieldTable::default();
        table.insert(
            "LOGIN",
            crate::protocol::FieldValue::LongStr(Bytes::from_static(b"guest")),
        );
        table.insert(
            "PASSWORD",
            crate::protocol::FieldValue::LongStr(Bytes::from_static(b"guest")),
        );
        let mut buf = BytesMut::new();
        table.encode(&mut buf);
        assert_eq!(
            authenticate(b"AMQPLAIN", &buf[4..], LOOPBACK, false),
            Ok("guest".into())
        );
    }
}
